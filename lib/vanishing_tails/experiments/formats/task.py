"""Arithmetic word problems whose solutions come in three formats (chapter 4, "One format wins").

The corpus imitates the set-up of Zhao et al. 2025 ("Echo Chamber: RL Post-training
Amplifies Behaviors Learned in Pretraining", ``zhao2025echo``): a pretraining mixture in
which the same kind of problem is solved in different styles, so that after RL one can
read off which style the model settled on. A problem is a starting amount and ``n_ops``
additions or subtractions told with verbs::

    has 7 finds 5 eats 3 ?

and a solution is written in one of three formats (word-level tokens, one token per
number):

=========  ================================  =============================================
format     completion                        what the model must do
=========  ================================  =============================================
``bare``   ``answer 9``                      all ``n_ops`` operations in one forward pass
``steps``  ``7 plus 5 is 12 minus 3 is 9``   one operation per step, in words (a chain of
                                             thought); the last number is the answer
``code``   ``x = 7 + 5 - 3``                 translate the story into a program; an
                                             interpreter computes the answer
=========  ================================  =============================================

So the formats put the arithmetic in different places: ``bare`` needs the whole
computation in one step (capacity), ``steps`` one small table look-up per step, ``code``
none at all — only copying. Two kinds of corpus error make the formats differ in quality:

* every written operation slips with probability ``slip`` (an off-by-one result in
  ``steps``, operand in ``code``, answer in ``bare``): random noise, which RL sharpens away;
* the code corpus was produced by a translator that does not know the verbs in
  ``code_misreads`` and silently drops those operations (``x = 7 + 5`` above): a
  *systematic* error. A model that imitates the code corpus is capped at the share of
  problems without such a verb (:meth:`Task.corpus_accuracy`), however large it is, while
  the arithmetic formats are capped only by what the model can compute.

Which format is the most accurate therefore depends on the model's size; which one RL
amplifies is what chapter 4 measures.

Everything is vectorised over problems: solutions are fixed templates (up to the dropped
operations), so a batch is a column stack of token ids, and the format classifier and
the answer checker work on token-id tensors (:func:`classify`, :func:`extract_answers`);
the string helpers (:func:`classify_text`, :func:`extract_answer_text`) encode and call
them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from vanishing_tails.core.lm import Vocab

from .vocab import (  # noqa: F401 - re-exported: the task's vocabulary
    ADD_VERBS,
    FORMATS,
    MALFORMED,
    OTHER,
    SUB_VERBS,
    VERBS,
    WORDS,
    check_formats,
    check_proportions,
)


# ---------------------------------------------------------------------- the task
@dataclass(frozen=True)
class Task:
    """The problem family and its corpus (see the module docstring).

    ``n_ops`` operations per problem; running amounts stay in ``[0, max_value]``;
    operands lie in ``[1, max_operand]``; each written operation slips with probability
    ``slip``; the code translator drops operations told with a verb in ``code_misreads``.
    Explained in :ref:`sec-formats-three-ways`.
    """

    n_ops: int
    max_value: int
    max_operand: int
    slip: float
    code_misreads: tuple[str, ...]

    def __post_init__(self) -> None:
        if isinstance(self.n_ops, bool) or not 1 <= int(self.n_ops) <= 6:
            raise ValueError(f"n_ops must be an integer in [1, 6], got {self.n_ops!r}")
        if not 1 <= self.max_operand:
            raise ValueError(f"max_operand must be >= 1, got {self.max_operand}")
        if self.max_value < 2 * self.max_operand:
            raise ValueError(
                f"max_value must be >= 2 * max_operand ({2 * self.max_operand}) so "
                f"that every step has a legal operation; got {self.max_value}"
            )
        if not 0.0 <= float(self.slip) < 1.0:
            raise ValueError(f"slip must be in [0, 1), got {self.slip}")
        misreads = (self.code_misreads,) if isinstance(self.code_misreads, str) else self.code_misreads
        object.__setattr__(self, "code_misreads", tuple(misreads))
        bad = [v for v in self.code_misreads if v not in VERBS]
        if bad:
            raise ValueError(f"code_misreads: unknown verb(s) {bad}; allowed: {list(VERBS)}")

    @cached_property
    def vocab(self) -> Vocab:
        """Word vocabulary: PAD/BOS/EOS, the numbers 0..max_value+1 (a slip may overshoot
        by one), the verbs and the format words."""
        nums = [str(i) for i in range(self.max_value + 2)]
        return Vocab([*nums, *VERBS, *WORDS], level="word")

    @property
    def prompt_len(self) -> int:
        """BOS has a (verb b) * n_ops ? — every prompt has this length."""
        return 1 + 2 + 2 * self.n_ops + 1

    def completion_len(self, fmt: str) -> int:
        """Longest completion in format ``fmt``, EOS included."""
        check_formats([fmt], name="fmt")
        return {"bare": 2, "steps": 1 + 4 * self.n_ops, "code": 3 + 2 * self.n_ops}[fmt] + 1

    @property
    def max_completion_len(self) -> int:
        return max(self.completion_len(f) for f in FORMATS)

    @property
    def seq_len(self) -> int:
        return self.prompt_len + self.max_completion_len

    def corpus_accuracy(self, problems: Problems | None = None) -> dict[str, float]:
        """Accuracy of a model that imitates each format's corpus perfectly.

        bare: 1 - slip; steps: (1 - slip)^n_ops; code: (1 - slip)^n_ops times the share
        of ``problems`` with no verb in ``code_misreads`` (for ``problems=None``, the
        probability under the generator's verb choice, ignoring the range clipping).
        """
        ok = (1 - self.slip) ** self.n_ops
        if problems is None:
            p_mis = 0.5 * (
                sum(v in self.code_misreads for v in ADD_VERBS) / len(ADD_VERBS)
                + sum(v in self.code_misreads for v in SUB_VERBS) / len(SUB_VERBS)
            )
            clean = (1 - p_mis) ** self.n_ops
        else:
            clean = float((~np.isin(problems.verb_words(), self.code_misreads).any(axis=1)).mean())
        return {"bare": 1 - self.slip, "steps": ok, "code": ok * clean}

    @cached_property
    def ids(self) -> _Ids:
        return _Ids(self)


@dataclass
class Problems:
    """A batch of problems: ``start`` [N], ``signs`` [N, n_ops] (+1 / -1), ``operands``
    [N, n_ops] and ``verbs`` [N, n_ops] (which verb of the add / sub list tells each
    operation). ``answer`` [N] is the true result.

    Explained in :ref:`sec-formats-three-ways`.
    """

    start: np.ndarray
    signs: np.ndarray
    operands: np.ndarray
    verbs: np.ndarray

    @property
    def answer(self) -> np.ndarray:
        return self.start + (self.signs * self.operands).sum(axis=1)

    def __len__(self) -> int:
        return len(self.start)

    def take(self, idx) -> Problems:
        return Problems(self.start[idx], self.signs[idx], self.operands[idx], self.verbs[idx])

    def verb_words(self) -> np.ndarray:
        """``[N, n_ops]`` array of the verbs as strings."""
        add, sub = np.array(ADD_VERBS), np.array(SUB_VERBS)
        return np.where(self.signs > 0, add[self.verbs], sub[self.verbs])

    def key(self) -> np.ndarray:
        """An integer naming the arithmetic of each problem (start, signs, operands; not the
        verbs), used to keep RL problems out of the pretraining corpus."""
        k = self.start.astype(np.int64)
        for j in range(self.signs.shape[1]):
            k = k * 64 + (self.signs[:, j] > 0) * 32 + self.operands[:, j]
        return k


def generate_problems(task: Task, n: int, *, seed: int, split: str = "all", holdout_mod: int = 7) -> Problems:
    """``n`` random problems of ``task`` drawn with ``np.random.default_rng(seed)``.

    Each step picks + or - with equal chance, an operand in [1, max_operand] and one of
    the three verbs; where the step would leave [0, max_value] the sign is flipped
    (always legal, see :class:`Task`). ``split="pretrain"`` keeps the problems whose
    arithmetic :meth:`~Problems.key` is not 0 modulo ``holdout_mod``, ``"heldout"`` those
    that are: RL and evaluation problems use the held-out split, so no model has seen
    their arithmetic in pretraining.
    Explained in :ref:`sec-formats-three-ways`.
    """
    if split not in ("all", "pretrain", "heldout"):
        raise ValueError(f"split must be 'all', 'pretrain' or 'heldout', got {split!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    out: list[Problems] = []
    have = 0
    while have < n:
        m = max(64, 2 * (n - have) * (holdout_mod if split == "heldout" else 1))
        start = rng.integers(0, task.max_value + 1, m)
        ops = rng.integers(1, task.max_operand + 1, (m, task.n_ops))
        signs = np.empty((m, task.n_ops), dtype=np.int64)
        total = start.copy()
        for j in range(task.n_ops):  # a loop over the few steps, vectorised over problems
            s = np.where(rng.random(m) < 0.5, 1, -1)
            s = np.where(total + s * ops[:, j] > task.max_value, -1, s)
            s = np.where(total + s * ops[:, j] < 0, 1, s)
            signs[:, j] = s
            total = total + s * ops[:, j]
        verbs = rng.integers(0, len(ADD_VERBS), (m, task.n_ops))
        p = Problems(start, signs, ops, verbs)
        if split != "all":
            held = p.key() % holdout_mod == 0
            p = p.take(held if split == "heldout" else ~held)
        out.append(p)
        have += len(p)
    fields = ("start", "signs", "operands", "verbs")
    return Problems(*(np.concatenate([getattr(p, f) for p in out])[:n] for f in fields))


# ---------------------------------------------------------------------- encoding
class _Ids:
    """Token ids of a task's vocabulary, looked up once."""

    def __init__(self, task: Task):
        v = task.vocab
        self.bos, self.eos, self.pad = v.bos_id, v.eos_id, v.pad_id
        self.num = np.array([v.stoi[str(i)] for i in range(task.max_value + 2)])
        self.add = np.array([v.stoi[s] for s in ADD_VERBS])
        self.sub = np.array([v.stoi[s] for s in SUB_VERBS])
        names = {"?": "q", "=": "eq", "+": "plus_sym", "-": "minus_sym", "is": "is_"}
        for w in WORDS:
            setattr(self, names.get(w, w), v.stoi[w])
        self.value = np.full(len(v), -1)  # token id -> number, -1 for words
        self.value[self.num] = np.arange(task.max_value + 2)
        # the first completion token that commits to each format
        self.first = {"bare": np.array([self.answer]), "steps": self.num, "code": np.array([self.x])}


def encode_prompts(task: Task, problems: Problems) -> torch.Tensor:
    """``[N, prompt_len]`` token ids: BOS has a (verb b)* ?.

    Explained in :ref:`sec-formats-three-ways`.
    """
    I = task.ids
    n = len(problems)
    cols = [np.full(n, I.bos), np.full(n, I.has), I.num[problems.start]]
    for j in range(task.n_ops):
        verb = np.where(problems.signs[:, j] > 0, I.add[problems.verbs[:, j]], I.sub[problems.verbs[:, j]])
        cols += [verb, I.num[problems.operands[:, j]]]
    cols.append(np.full(n, I.q))
    return torch.as_tensor(np.stack(cols, axis=1), dtype=torch.long)


def _slipped(value: np.ndarray, slipped: np.ndarray, rng: np.random.Generator, hi: int) -> np.ndarray:
    """Off by one where ``slipped`` (+1 or -1 at random), kept inside [0, hi + 1]."""
    d = np.where(rng.random(value.shape) < 0.5, 1, -1)
    d = np.where(value + d < 0, 1, d)
    d = np.where(value + d > hi + 1, -1, d)
    return np.where(slipped, value + d, value)


def encode_solutions(task: Task, problems: Problems, fmt: str, *, rng: np.random.Generator) -> torch.Tensor:
    """``[N, completion_len(fmt)]`` ids of the corpus' solutions in format ``fmt`` (EOS
    included, PAD after it), with the corpus errors of the module docstring drawn from
    ``rng``. In ``steps`` a slipped result is carried into the next step.

    Explained in :ref:`sec-formats-three-ways`.
    """
    check_formats([fmt], name="fmt")
    I = task.ids
    n = len(problems)
    eos = np.full(n, I.eos)
    if fmt == "bare":
        ans = _slipped(problems.answer, rng.random(n) < task.slip, rng, task.max_value)
        return torch.as_tensor(np.stack([np.full(n, I.answer), I.num[ans], eos], axis=1))
    if fmt == "steps":
        total = problems.start.copy()
        cols = [I.num[total]]
        for j in range(task.n_ops):
            total = total + problems.signs[:, j] * problems.operands[:, j]
            total = _slipped(total, rng.random(n) < task.slip, rng, task.max_value)
            total = np.clip(total, 0, task.max_value + 1)  # after a slip, stay in the number range
            word = np.where(problems.signs[:, j] > 0, I.plus, I.minus)
            cols += [word, I.num[problems.operands[:, j]], np.full(n, I.is_), I.num[total]]
        cols.append(eos)
        return torch.as_tensor(np.stack(cols, axis=1))
    # code: the translator drops the operations told with a verb it does not know
    cols = [np.full(n, I.x), np.full(n, I.eq), I.num[problems.start]]
    keep = [np.ones(n, bool)] * 3
    dropped = np.isin(problems.verb_words(), task.code_misreads)
    for j in range(task.n_ops):
        sym = np.where(problems.signs[:, j] > 0, I.plus_sym, I.minus_sym)
        op = _slipped(problems.operands[:, j], rng.random(n) < task.slip, rng, task.max_value)
        cols += [sym, I.num[op]]
        keep += [~dropped[:, j], ~dropped[:, j]]
    cols.append(eos)
    keep.append(np.ones(n, bool))
    ids, keep = np.stack(cols, axis=1), np.stack(keep, axis=1)
    order = np.argsort(~keep, axis=1, kind="stable")  # kept tokens first, in their order
    ids = np.take_along_axis(ids, order, axis=1)
    ids[~np.take_along_axis(keep, order, axis=1)] = I.pad
    return torch.as_tensor(ids)


def pretraining_corpus(task: Task, n: int, proportions, *, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """``n`` pretraining sequences (prompt + solution, PAD-padded to ``task.seq_len``) and
    the index into :data:`FORMATS` of each one's format, drawn with ``proportions``
    (see :func:`check_proportions`, over all of :data:`FORMATS`). Problems come from the
    ``"pretrain"`` split. Explained in :ref:`sec-formats-pretraining`.
    """
    p = check_proportions(proportions, formats=FORMATS)
    rng = np.random.default_rng(seed)
    probs = generate_problems(task, n, seed=int(rng.integers(2**63)), split="pretrain")
    fmt = rng.choice(len(FORMATS), size=n, p=p)
    data = torch.full((n, task.seq_len), task.vocab.pad_id, dtype=torch.long)
    data[:, : task.prompt_len] = encode_prompts(task, probs)
    for j, f in enumerate(FORMATS):  # a loop over the three formats, not over samples
        idx = np.flatnonzero(fmt == j)
        if idx.size:
            sol = encode_solutions(task, probs.take(idx), f, rng=rng)
            data[torch.as_tensor(idx), task.prompt_len : task.prompt_len + sol.shape[1]] = sol
    return data, fmt


# ---------------------------------------------------------------------- reading completions
def classify(task: Task, completions: torch.Tensor) -> np.ndarray:
    """Format of each completion ``[B, L]`` (the token ids after the prompt), as an index
    into :data:`FORMATS`, or ``len(FORMATS)`` for :data:`OTHER`.

    The first token commits: ``answer`` -> bare, a number -> steps, ``x`` -> code;
    anything else (EOS, a verb, ...) is "other". Whether the rest is well formed is the
    answer checker's business (:func:`extract_answers`).
    Explained in :ref:`sec-formats-three-ways`.
    """
    I = task.ids
    if completions.ndim != 2 or completions.shape[1] < 1:
        raise ValueError(f"completions must be [B, L] with L >= 1, got {tuple(completions.shape)}")
    first = completions[:, 0].cpu().numpy()
    out = np.full(len(first), len(FORMATS))
    for j, f in enumerate(FORMATS):
        out[np.isin(first, I.first[f])] = j
    return out


def _tok_is(c: np.ndarray, pos: int, ids) -> np.ndarray:
    if pos >= c.shape[1]:
        return np.zeros(c.shape[0], dtype=bool)
    return np.isin(c[:, pos], np.atleast_1d(ids))


def extract_answers(task: Task, completions: torch.Tensor) -> np.ndarray:
    """The answer each completion ``[B, L]`` gives, or :data:`MALFORMED` when it is not a
    well-formed solution in the format it starts with (see :func:`classify`).

    bare: ``answer N EOS`` -> N. steps: ``a (plus|minus b is s) * n_ops EOS`` -> the last
    s (what the earlier steps say does not matter: an outcome reward). code: ``x = a
    (+|- b)* EOS`` with any number of terms -> the interpreter's value of the expression.
    Explained in :ref:`sec-formats-three-ways`.
    """
    I = task.ids
    fmt = classify(task, completions)
    c = completions.cpu().numpy()
    val = I.value[np.clip(c, 0, len(I.value) - 1)]
    out = np.full(len(c), MALFORMED, dtype=np.int64)
    num, eos = I.num, I.eos
    # bare
    ok = (fmt == 0) & _tok_is(c, 1, num) & _tok_is(c, 2, eos)
    if ok.any():
        out[ok] = val[ok, 1]
    # steps
    k = task.n_ops
    ok = fmt == 1
    for j in range(k):
        base = 1 + 4 * j
        ok &= _tok_is(c, base, [I.plus, I.minus]) & _tok_is(c, base + 1, num)
        ok &= _tok_is(c, base + 2, I.is_) & _tok_is(c, base + 3, num)
    ok &= _tok_is(c, 1 + 4 * k, eos)
    if ok.any():
        out[ok] = val[ok, 4 * k]
    # code: read "+|- b" terms left to right until EOS
    alive = (fmt == 2) & _tok_is(c, 1, I.eq) & _tok_is(c, 2, num)
    ended = np.zeros(len(c), dtype=bool)
    v = np.where(alive, val[:, min(2, c.shape[1] - 1)], 0)
    pos = 3
    while alive.any():
        stop = alive & _tok_is(c, pos, eos)
        ended |= stop
        alive &= ~stop & _tok_is(c, pos, [I.plus_sym, I.minus_sym]) & _tok_is(c, pos + 1, num)
        if alive.any():
            sign = np.where(c[:, pos] == I.plus_sym, 1, -1)
            v = np.where(alive, v + sign * val[:, pos + 1], v)
        pos += 2
    out[ended] = v[ended]
    return out


def check_answers(task: Task, completions: torch.Tensor, answers: np.ndarray) -> np.ndarray:
    """The reward: 1.0 where the completion's answer equals ``answers`` (the true results).

    Explained in :ref:`sec-formats-rl`.
    """
    return (extract_answers(task, completions) == np.asarray(answers)).astype(float)


# ---------------------------------------------------------------------- strings
def encode_completions(task: Task, texts: Sequence[str]) -> torch.Tensor:
    """Completion strings to ids (EOS appended, PAD-padded; unknown words become PAD,
    which no well-formed solution contains). For hand-written examples and display.

    Explained in :ref:`sec-formats-three-ways`.
    """
    v = task.vocab
    rows = [[v.stoi.get(w, v.pad_id) for w in t.split()] + [v.eos_id] for t in texts]
    out = torch.full((len(rows), max(len(r) for r in rows)), v.pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


def classify_text(task: Task, texts: Sequence[str]) -> list[str]:
    """:func:`classify` for completion strings: one of :data:`FORMATS` or :data:`OTHER`.

    Explained in :ref:`sec-formats-three-ways`.
    """
    return [(FORMATS + (OTHER,))[i] for i in classify(task, encode_completions(task, texts))]


def extract_answer_text(task: Task, texts: Sequence[str]) -> list[int | None]:
    """:func:`extract_answers` for completion strings; None where malformed.

    Explained in :ref:`sec-formats-three-ways`.
    """
    got = extract_answers(task, encode_completions(task, texts))
    return [None if g == MALFORMED else int(g) for g in got]


def render(task: Task, ids: torch.Tensor) -> list[str]:
    """Token ids to text (stops at EOS), for display.

    Explained in :ref:`sec-formats-three-ways`.
    """
    return task.vocab.decode_batch(ids)
