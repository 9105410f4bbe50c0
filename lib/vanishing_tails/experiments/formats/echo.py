"""Pretraining on a format mixture, then RL with a correctness reward (chapter 4, "One format wins").

After Zhao et al. 2025 (``zhao2025echo``, "Echo Chamber"). The unit of replication is the
pretrained model, so everything here works on a :class:`Stack`: several
:class:`~vanishing_tails.core.lm.TinyTransformer` models of one size held as stacked
weight tensors (one leading axis, one replica per index) and run as one batched model.
Each replica keeps its own weights, optimiser moments, gradient clipping and random
streams, so a replica's numbers do not depend on which others share its stack; the stack
only saves the per-operation overhead of running tiny models one by one.

* :func:`pretrain` trains the models of a list of :class:`PretrainConfig` from scratch on
  :func:`vanishing_tails.experiments.formats.task.pretraining_corpus` (teacher-forced
  next-token cross-entropy, AdamW, as :func:`vanishing_tails.core.lm.train_lm`) and caches
  each one's weights under ``<root>/_build/cache/checkpoints/<hash>.pt``, the hash taken
  over everything that determines them (task, mixture, model size, optimiser settings,
  seed, device type, torch version and the source of ``task.py``, ``vocab.py``, this
  module and ``lm.py``), so a second run of the chapter does not retrain. Writes are
  atomic (:func:`vanishing_tails.core.io.atomic_write`).
* :func:`rl_run` fine-tunes a stack of replicas with a GRPO-style loop: per step,
  ``batch_problems`` held-out problems, ``group_size`` samples each, reward 1 for a
  correct final answer, and a KL penalty to the replica's pretrained model folded into the
  reward,

  .. math:: \\tilde r(x, y) = r(x, y) - \\beta\\,[\\log\\pi_\\theta(y\\mid x) - \\log\\pi_{\\mathrm{ref}}(y\\mid x)],

  with group-centred advantages and the policy-gradient loss of
  :func:`vanishing_tails.core.rl.kl_shaped_advantages` and
  :func:`vanishing_tails.core.rl.policy_gradient_loss`. Its fixed point is the
  KL-regularised optimum :math:`\\pi^*(y\\mid x)\\propto\\pi_{\\mathrm{ref}}(y\\mid x)
  e^{r(x,y)/\\beta}` (``korbak2022kl``), whose format shares
  :func:`vanishing_tails.experiments.formats.analytic.format_optimum` computes.
* :func:`evaluate` samples held-out problems before and after RL (format shares, accuracy
  by format, pass@k, maj@k); :func:`experiment` runs the chapter's grid of sizes, pretrained models, KL strengths
  and RL seeds.

Explained in :ref:`chapter-one-format-wins`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from vanishing_tails.core import io, lm
from vanishing_tails.core.checks import check_beta
from vanishing_tails.core.lm import Stack
from vanishing_tails.core.metrics import pass_at_k
from vanishing_tails.core.optim import Adam, clip_grad_norm_per_replica
from vanishing_tails.core.rl import kl_shaped_advantages, policy_gradient_loss
from vanishing_tails.core.seeds import streams

from . import task as fm
from . import vocab

CACHE_ENV = "VANISHING_TAILS_CACHE"
CACHE_VERSION = 2  # bump when anything that changes the trained weights changes
PRETRAIN_LR = 3e-3  # AdamW learning rate of pretraining (not a chapter parameter)
CLIP = 1.0  # gradient-norm clip of every update, per replica
EVAL_ROWS = 16384  # sequences sampled at once by evaluate (bounds the key/value cache's memory)


# ---------------------------------------------------------------------- sizes and configs
@dataclass(frozen=True)
class ModelSize:
    """A TinyTransformer's shape; ``name`` labels it in frames and figures.

    Explained in :ref:`sec-formats-pretraining`.
    """

    name: str
    d_model: int
    n_layers: int
    n_heads: int

    def __post_init__(self) -> None:
        if self.d_model < 1 or self.n_layers < 1 or self.n_heads < 1:
            raise ValueError(f"model size {self.name!r}: d_model, n_layers and n_heads must be >= 1")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"model size {self.name!r}: d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that determines a pretrained checkpoint (and so its cache key).

    ``n_corpus`` sequences of the mixture ``proportions`` (over :data:`FORMATS`), ``steps``
    AdamW steps of ``batch_size`` sequences at learning rate ``lr``. The initial weights,
    the corpus and the minibatches each come from a stream derived from ``seed``.
    Explained in :ref:`sec-formats-pretraining`.
    """

    task: fm.Task
    proportions: tuple[float, ...]
    size: ModelSize
    n_corpus: int
    steps: int
    batch_size: int
    seed: int
    lr: float = PRETRAIN_LR

    def __post_init__(self) -> None:
        p = fm.check_proportions(self.proportions, formats=fm.FORMATS)
        # rounded, so that a mixture computed another way (0.6 - 0.2) names the same checkpoint
        object.__setattr__(self, "proportions", tuple(round(float(x), 12) for x in p))
        if self.n_corpus < 1 or self.steps < 1 or self.batch_size < 1:
            raise ValueError("n_corpus, steps and batch_size must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    def streams(self) -> tuple[int, int, int]:
        """The seeds of the initial weights, the corpus and the minibatch order."""
        init, corpus, batches = np.random.SeedSequence(self.seed).spawn(3)
        return tuple(int(s.generate_state(1, dtype=np.uint32)[0]) for s in (init, corpus, batches))

    def key(self, device: str = "cpu") -> str:
        """sha256 of the configuration (and the device type and torch version, which change the
        floating-point path): the checkpoint's file name."""
        d = asdict(self)
        d["size"].pop("name")  # a label, not part of the weights
        d.update(version=CACHE_VERSION, device=str(device), torch=torch.__version__.split("+")[0], code=_code_digest())
        blob = json.dumps(d, sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:24]


def _code_files() -> tuple[Path, ...]:
    """The source files that build the corpus and train the model: task.py, vocab.py, this
    module and ``core/lm.py``."""
    return tuple(Path(m.__file__) for m in (fm, vocab, lm)) + (Path(__file__),)


def _code_digest() -> str:
    """sha256 of :func:`_code_files`: editing any of them invalidates every cached checkpoint
    instead of serving a stale one."""
    h = hashlib.sha256()
    for path in _code_files():
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$VANISHING_TAILS_CACHE``, else ``<root>/_build/cache/checkpoints`` with ``<root>``
    the book's root (:func:`vanishing_tails.core.io.repo_root`).

    Explained in :ref:`sec-formats-pretraining`.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return io.repo_root() / "_build" / "cache" / "checkpoints"


# ---------------------------------------------------------------------- a stack of transformers
# :class:`Stack` lives in vanishing_tails.core.lm (shared with chapter 6).


def sequence_logprob(
    stack: Stack, prompts: torch.Tensor, completions: torch.Tensor, group: int, pad_id: int
) -> torch.Tensor:
    """log pi(completion | prompt) ``[M, B*group]`` of ``completions`` ``[M, B*group, L]``
    (``group`` per prompt of ``prompts`` ``[M, B, P]``); PAD never counts; differentiable.

    Explained in :ref:`sec-formats-rl`.
    """
    completions = completions.to(stack.device)
    logp = torch.log_softmax(stack.completion_logits(prompts, completions, group).float(), dim=-1)
    tok = logp.gather(-1, completions.unsqueeze(-1)).squeeze(-1)
    return (tok * (completions != pad_id)).sum(-1)


@torch.no_grad()
def sample(
    stack: Stack,
    prefix: torch.Tensor,
    max_new_tokens: int,
    *,
    generators: Sequence[torch.Generator],
    eos_id: int,
    pad_id: int,
    group: int = 1,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Ancestral sampling from every replica: ``prefix`` ``[M, B, P]`` -> ``[M, B*group, P + new]``.

    Each prefix row is sampled ``group`` times (contiguous rows). Replica ``m`` draws its
    tokens by inverse-CDF sampling from uniforms of its own ``generators[m]`` (CPU), so its
    samples do not depend on the other replicas. After EOS a row is PAD.
    Explained in :ref:`sec-formats-rl`.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    M, B, P = prefix.shape
    if len(generators) != M:
        raise ValueError(f"need one generator per replica ({M}), got {len(generators)}")
    logits, state = stack.init_state(prefix, group, room=max_new_tokens)
    rows = B * group
    out = [prefix.repeat_interleave(group, dim=1).cpu()]
    done = torch.zeros(M, rows, dtype=torch.bool)
    for i in range(max_new_tokens):
        cdf = torch.softmax(logits.double() / temperature, dim=-1).cpu().cumsum(-1)
        u = torch.stack([torch.rand(rows, generator=g, dtype=torch.float64) for g in generators])
        nxt = torch.searchsorted(cdf, (u * cdf[..., -1]).unsqueeze(-1), right=True).squeeze(-1)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt.clamp_(max=cdf.shape[-1] - 1))
        out.append(nxt.unsqueeze(-1))
        done |= nxt == eos_id
        if bool(done.all()):
            break
        if i < max_new_tokens - 1:
            logits, state = stack.step(nxt, state)
    seq = torch.cat(out, dim=-1)
    short = P + max_new_tokens - seq.shape[-1]
    return F.pad(seq, (0, short), value=pad_id) if short else seq


# ---------------------------------------------------------------------- pretraining + cache
def _load(path: Path | None):
    if path is None or not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        return blob["state"], float(blob["loss"])
    except Exception:  # a corrupt or foreign file: retrain and overwrite it
        return None


def _train(
    cfgs: Sequence[PretrainConfig], device: torch.device, snapshots: Sequence[int] = ()
) -> tuple[Stack, list[float], dict[int, tuple[list[dict], list[float]]]]:
    """Pretrain ``cfgs`` (one size and one task; they differ in seed) as one stack; also
    return, for every step count in ``snapshots`` below the budget, each replica's state
    dict and loss after that many steps."""
    c0 = cfgs[0]
    seeds = [c.streams() for c in cfgs]
    V, T = len(c0.task.vocab), c0.task.seq_len
    s = c0.size
    inits = [
        lm.build_model(
            "transformer", V, seed=init, d_model=s.d_model, n_layers=s.n_layers, n_heads=s.n_heads, max_len=T
        ).state_dict()
        for init, _, _ in seeds
    ]
    stack = Stack.from_state_dicts(inits, s, device).take(range(len(cfgs)), trainable=True)
    data = torch.stack(
        [fm.pretraining_corpus(c.task, c.n_corpus, c.proportions, seed=cs)[0] for c, (_, cs, _) in zip(cfgs, seeds)]
    )
    gens = [torch.Generator().manual_seed(bs) for _, _, bs in seeds]
    pad = c0.task.vocab.pad_id
    params = stack.parameters()
    # AdamW without weight decay is Adam; the core Adam is torch's single-tensor arithmetic
    # (elementwise, so a replica's weights do not depend on how many others share its stack)
    opt = Adam(params, lr=c0.lr)
    rows = torch.arange(len(cfgs))[:, None]
    taken = {}
    loss = torch.full((len(cfgs),), float("nan"))  # the last step's loss, per replica
    for step in range(c0.steps):
        if step in snapshots and step > 0:
            taken[step] = ([stack.state_dict(m) for m in range(len(cfgs))], [float(x) for x in loss.detach()])
        idx = torch.stack([torch.randint(c0.n_corpus, (c0.batch_size,), generator=g) for g in gens])
        batch = data[rows, idx].to(device)
        logits = stack.logits(batch[..., :-1])
        target = batch[..., 1:]
        nll = F.cross_entropy(logits.flatten(0, 2), target.flatten(), reduction="none").view(target.shape)
        mask = target != pad
        loss = (nll * mask).sum((1, 2)) / mask.sum((1, 2)).clamp(min=1)
        opt.zero_grad()
        loss.sum().backward()
        clip_grad_norm_per_replica(params, CLIP)
        opt.step()
    return stack.take(range(len(cfgs))), [float(x) for x in loss.detach()], taken


def pretrain(
    cfgs: Sequence[PretrainConfig],
    *,
    cache_dir: str | Path | None | bool = None,
    device="cpu",
    snapshots: Sequence[int] = (),
) -> tuple[Stack, list[dict]]:
    """Pretrain the models of ``cfgs`` (one size and task; typically different seeds), or load
    them from the cache; return them as one :class:`Stack` and one info dict per model
    (``cached``, ``key``, ``loss`` (the last step's), ``n_parameters``).

    The uncached models are trained together as a stack; each has its own initial weights,
    corpus, minibatches, AdamW moments and gradient clipping, so its weights are those a
    training run of its own would give (on the CPU, bit for bit; tested).
    ``cache_dir=None`` uses :func:`default_cache_dir`; ``False`` disables the cache.

    ``snapshots``: step counts below the budget at which every model trained here also
    leaves its weights in the cache, under the key of the same configuration with that many
    steps. The learning rate is constant and the minibatch stream is the seed's, so a
    shorter budget is a prefix of a longer one, bit for bit (tested): a later call for the
    shorter budget (the winner-flip sweep, :mod:`.flip`) is served without training.
    Explained in :ref:`sec-formats-pretraining`.
    """
    cfgs = list(cfgs)
    if not cfgs:
        raise ValueError("pretrain needs at least one configuration")
    shared = {(c.task, c.size.d_model, c.size.n_layers, c.size.n_heads, c.n_corpus, c.steps, c.batch_size, c.lr)
              for c in cfgs}  # fmt: skip
    if len(shared) != 1:
        raise ValueError("pretrain stacks models of one task, size and optimiser setting; got several")
    dev = lm.resolve_device(device)
    keys = [c.key(dev.type) for c in cfgs]
    folder = None if cache_dir is False else (Path(cache_dir) if cache_dir is not None else default_cache_dir())
    paths = [None if folder is None else folder / f"{k}.pt" for k in keys]
    found = [_load(p) for p in paths]
    states: list = [f[0] if f else None for f in found]
    losses: list = [f[1] if f else None for f in found]
    todo = [i for i, f in enumerate(found) if f is None]
    if todo:
        keep = sorted({int(b) for b in snapshots if 0 < int(b) < cfgs[0].steps}) if folder is not None else []
        trained, trained_loss, taken = _train([cfgs[i] for i in todo], dev, keep)
        for j, i in enumerate(todo):
            states[i], losses[i] = trained.state_dict(j), trained_loss[j]
            saves = [(paths[i], states[i], losses[i])]
            for b, (snap_states, snap_losses) in taken.items():
                short = replace(cfgs[i], steps=b)
                saves.append((folder / f"{short.key(dev.type)}.pt", snap_states[j], snap_losses[j]))
            for path, state, loss in saves:
                if path is not None:
                    blob = {"state": state, "loss": loss}
                    io.atomic_write(path, lambda f, blob=blob: torch.save(blob, f))
    stack = Stack.from_state_dicts(states, cfgs[0].size, dev)
    n_par = sum(v[0].numel() for v in stack.params.values())
    return stack, [
        {"cached": i not in todo, "key": keys[i], "loss": losses[i], "n_parameters": n_par} for i in range(len(cfgs))
    ]


# ---------------------------------------------------------------------- reading a policy
@torch.no_grad()
def format_probabilities(task: fm.Task, stack: Stack, prompts: torch.Tensor) -> np.ndarray:
    """Exact probability of each format (and of "other") per replica and prompt,
    ``[M, N, len(FORMATS) + 1]`` for prompts ``[M, N, P]``.

    The format is fixed by the first completion token (:func:`task.classify
    <vanishing_tails.experiments.formats.task.classify>`), so P(format | x) is a sum over
    the next-token distribution after the prompt.
    Explained in :ref:`sec-formats-rl`.
    """
    last, _ = stack._prefix(prompts)
    p = torch.softmax(stack._head(last).double(), -1).cpu().numpy()
    cols = [p[..., task.ids.first[f]].sum(-1) for f in fm.FORMATS]
    cols.append(1.0 - np.sum(cols, axis=0))
    return np.clip(np.stack(cols, -1), 0.0, 1.0)


def _majority_correct(answers: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """maj@G per row of ``answers`` [N, G]: the most frequent well-formed answer (ties: the
    smallest) equals ``truth``. Malformed answers do not vote; a row with none scores 0."""
    valid = answers != fm.MALFORMED
    lo = int(answers[valid].min()) if valid.any() else 0
    hi = int(answers[valid].max()) if valid.any() else 0
    width = hi - lo + 1
    shifted = np.where(valid, answers - lo, width)  # malformed -> an extra bin
    counts = np.zeros((len(answers), width + 1), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(len(answers)), answers.shape[1]), shifted.ravel()), 1)
    counts = counts[:, :width]
    vote = counts.argmax(1) + lo
    return (counts.max(1) > 0) & (vote == truth)


@dataclass
class Samples:
    """G samples for each of N prompts of one replica: ``fmt`` [N*G] (index into
    ``FORMATS + (OTHER,)``), ``answer`` [N*G], ``reward`` [N*G] (1 if correct).

    Explained in :ref:`sec-formats-rl`.
    """

    fmt: np.ndarray
    answer: np.ndarray
    reward: np.ndarray
    group: int

    def take(self, rows: np.ndarray) -> Samples:
        return Samples(self.fmt[rows], self.answer[rows], self.reward[rows], self.group)


def _read(task: fm.Task, seq: torch.Tensor, truth: np.ndarray, group: int) -> list[Samples]:
    """Classify and check sampled sequences ``[M, N*G, T]`` against ``truth`` ``[M, N]``."""
    M, R, _ = seq.shape
    comp = seq[..., task.prompt_len :].reshape(M * R, -1)
    fmt = fm.classify(task, comp).reshape(M, R)
    ans = fm.extract_answers(task, comp).reshape(M, R)
    reward = (ans == np.repeat(np.asarray(truth), group, axis=-1)).astype(float)
    return [Samples(fmt[m], ans[m], reward[m], group) for m in range(M)]


def summarise(s: Samples, truth: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """Format shares, accuracy by format, pass@k (unbiased, Chen et al. 2021) and maj@k for
    each k in ``ks`` (majority vote over the first k samples of each prompt).

    Explained in :ref:`sec-formats-cost`.
    """
    G = s.group
    n = len(s.reward) // G
    r = s.reward.reshape(n, G)
    out: dict[str, float] = {}
    for j, f in enumerate((*fm.FORMATS, fm.OTHER)):
        sel = s.fmt == j
        out[f"share_{f}"] = float(sel.mean())
        if f != fm.OTHER:
            out[f"acc_{f}"] = float(s.reward[sel].mean()) if sel.any() else float("nan")
    c = r.sum(1)
    ans = s.answer.reshape(n, G)
    for k in ks:
        out[f"pass@{k}"] = float(np.mean(pass_at_k(G, c, k)))
        out[f"maj@{k}"] = float(_majority_correct(ans[:, :k], np.asarray(truth)).mean())
    return out


# ---------------------------------------------------------------------- evaluation
@dataclass
class Evaluation:
    """What :func:`evaluate` measured for each replica: ``rows`` (one dict of summaries per
    replica), and per prompt the exact format probabilities ``p_format`` ``[M, N, F+1]``
    and the sampled share of each format that is also correct, ``correct_mass``
    ``[M, N, F]`` (an unbiased estimate of P(format, correct | x)).

    Explained in :ref:`sec-formats-analytic`.
    """

    rows: list[dict[str, float]]
    p_format: np.ndarray
    correct_mass: np.ndarray


def evaluate(
    task: fm.Task,
    stack: Stack,
    problems: fm.Problems,
    *,
    samples: int,
    seeds: Sequence[int],
    ks: Sequence[int] | None = None,
    temperature: float = 1.0,
    subsets: Mapping[str, np.ndarray] | None = None,
) -> Evaluation:
    """Sample ``samples`` completions of each of ``problems`` from every replica (replica
    ``m`` with ``seeds[m]``) and summarise them (:func:`summarise`: shares, accuracy by
    format, pass@k and maj@k for ``ks``, default the powers of two up to ``samples``),
    plus the exact format probabilities ``p_<format>`` (mean over problems).

    ``subsets`` maps a name to a boolean mask over ``problems``; each subset's summary is
    added with keys ``<name>/<quantity>`` (from the same samples).
    Explained in :ref:`sec-formats-cost`.
    """
    if len(seeds) != len(stack):
        raise ValueError(f"need one evaluation seed per replica ({len(stack)}), got {len(seeds)}")
    ks = list(ks) if ks is not None else [2**i for i in range(20) if 2**i <= samples]
    N = len(problems)
    masks = {}
    for name, mask in (subsets or {}).items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (N,):
            raise ValueError(f"subset {name!r} must be a mask over the {N} problems")
        masks[name] = mask
    prompts = fm.encode_prompts(task, problems)
    chunk = max(1, EVAL_ROWS // (N * samples))
    rows, pf_all, mass_all = [], [], []
    for lo in range(0, len(stack), chunk):
        part = stack.take(range(lo, min(lo + chunk, len(stack))))
        M = len(part)
        pr = prompts.unsqueeze(0).expand(M, -1, -1)
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds[lo : lo + M]]
        seq = sample(
            part,
            pr,
            task.max_completion_len,
            generators=gens,
            eos_id=task.vocab.eos_id,
            pad_id=task.vocab.pad_id,
            group=samples,
            temperature=temperature,
        )
        pf = format_probabilities(task, part, pr)
        for m, s in enumerate(_read(task, seq, np.broadcast_to(problems.answer, (M, N)), samples)):
            row = summarise(s, problems.answer, ks)
            row.update({f"p_{f}": float(v) for f, v in zip((*fm.FORMATS, fm.OTHER), pf[m].mean(0))})
            for name, mask in masks.items():
                if mask.any():
                    sub = s.take(np.repeat(mask, samples))
                    row.update({f"{name}/{q}": v for q, v in summarise(sub, problems.answer[mask], ks).items()})
            rows.append(row)
            hit = (s.fmt[:, None] == np.arange(len(fm.FORMATS))) & (s.reward[:, None] > 0)
            mass_all.append(hit.reshape(N, samples, -1).mean(1))
        pf_all.append(pf)
    return Evaluation(rows, np.concatenate(pf_all), np.stack(mass_all))


# ---------------------------------------------------------------------- RL
@dataclass(frozen=True)
class RLConfig:
    """The settings every replica of an RL run shares: ``steps`` updates of
    ``batch_problems`` problems x ``group_size`` samples, Adam at learning rate ``lr``
    (0 freezes the policy: the chapter's null control).

    Explained in :ref:`sec-formats-rl`.
    """

    steps: int
    batch_problems: int
    group_size: int
    lr: float
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_problems < 1:
            raise ValueError("steps and batch_problems must be >= 1")
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (GRPO compares samples), got {self.group_size}")
        if not self.lr >= 0:
            raise ValueError(f"lr must be >= 0, got {self.lr}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


def rl_run(
    task: fm.Task,
    refs: Stack,
    problems: fm.Problems,
    cfg: RLConfig,
    *,
    betas: Sequence[float],
    seeds: Sequence[int],
    ks: Sequence[int] = (1, 4),
    probe: fm.Problems | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[pd.DataFrame, Stack]:
    """GRPO-style RL of one policy per replica of ``refs``, started from it and penalised
    towards it with KL strength ``betas[m]``; replica ``m`` visits ``problems`` in the order
    of ``seeds[m]`` and samples with a generator seeded by it.

    Returns ``(steps, policies)``. ``steps`` has one row per replica x step x quantity
    (long form; columns ``replica``, ``step``, ``epoch`` (problems seen before the step /
    len(problems)), ``quantity``, ``value``): on the step's own samples the format shares
    ``share_<format>``, accuracy by format ``acc_<format>``, pass@1 (= mean reward),
    pass@k and maj@k for ``k`` in ``ks`` (k <= group_size), and ``kl``, the mean of
    log pi - log pi_ref (an unbiased estimate of KL(pi || pi_ref) on the step's prompts);
    on the step's prompts the exact format probabilities ``p_<format>``
    (:func:`format_probabilities`); with ``probe`` problems, also the exact format
    probabilities ``probe_p_<format>`` averaged over them (the same prompts at every step).
    Everything is measured *before* the step's update, so step 0 describes the pretrained
    model. ``refs`` is never modified.
    Explained in :ref:`sec-formats-rl`.
    """
    R = len(refs)
    betas = np.array([check_beta(b, "betas") for b in betas])
    if len(betas) != R or len(seeds) != R:
        raise ValueError(f"need one beta and one seed per replica ({R}); got {len(betas)} and {len(seeds)}")
    policy = refs.take(range(R), trainable=True)
    params = policy.parameters()
    opt = Adam(params, lr=cfg.lr)  # see _train
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    n = len(problems)
    G, B, P = cfg.group_size, cfg.batch_problems, task.prompt_len
    passes = cfg.steps * B // n + 1
    order = np.stack(
        [np.concatenate([rng.permutation(n) for _ in range(passes)]) for rng in map(np.random.default_rng, seeds)]
    )
    prompts_all = fm.encode_prompts(task, problems)
    pad = task.vocab.pad_id
    ks = [k for k in ks if k <= G]
    groups = {float(b): torch.as_tensor(np.flatnonzero(betas == b)) for b in np.unique(betas)}
    probe_prompts = None if probe is None else fm.encode_prompts(task, probe).unsqueeze(0).expand(R, -1, -1)
    rows = []
    for step in range(cfg.steps):
        idx = order[:, step * B : (step + 1) * B]
        prompts = prompts_all[torch.as_tensor(idx)]
        truth = problems.answer[idx]
        pf = format_probabilities(task, policy, prompts).mean(1)
        pp = None if probe_prompts is None else format_probabilities(task, policy, probe_prompts).mean(1)
        seq = sample(
            policy,
            prompts,
            task.max_completion_len,
            generators=gens,
            eos_id=task.vocab.eos_id,
            pad_id=pad,
            group=G,
            temperature=cfg.temperature,
        )
        got = _read(task, seq, truth, G)
        comp = seq[..., P:]
        logp = sequence_logprob(policy, prompts, comp, G, pad).view(R, B, G)
        with torch.no_grad():
            logp_ref = sequence_logprob(refs, prompts, comp, G, pad).view(R, B, G)
        reward = torch.as_tensor(np.stack([s.reward for s in got]), dtype=logp.dtype, device=logp.device).view(R, B, G)
        adv = torch.zeros_like(logp)
        log_ratio = torch.zeros_like(logp)
        for b, sel in groups.items():
            adv[sel], log_ratio[sel] = kl_shaped_advantages(logp[sel], logp_ref[sel], reward[sel], b)
        loss = policy_gradient_loss(logp, adv).sum()
        opt.zero_grad()
        loss.backward()
        clip_grad_norm_per_replica(params, CLIP)
        opt.step()
        kl = log_ratio.mean((1, 2)).tolist()
        epoch = step * B / n
        for m, s in enumerate(got):
            row = summarise(s, truth[m], ks)
            row.update({f"p_{f}": float(v) for f, v in zip((*fm.FORMATS, fm.OTHER), pf[m])})
            if pp is not None:
                row.update({f"probe_p_{f}": float(v) for f, v in zip((*fm.FORMATS, fm.OTHER), pp[m])})
            row["kl"] = kl[m]
            rows.extend({"replica": m, "step": step, "epoch": epoch, "quantity": q, "value": v} for q, v in row.items())
        if progress:
            progress(step)
    return pd.DataFrame(rows), policy.take(range(R))


# ---------------------------------------------------------------------- the chapter's experiment
def problem_sets(task: fm.Task, *, n_rl: int, n_eval: int, seed: int) -> tuple[fm.Problems, fm.Problems, np.ndarray]:
    """The RL problems and a balanced evaluation set, both from the held-out split:
    ``(rl_set, ev_set, misread)`` with ``n_rl`` RL problems, ``n_eval`` evaluation problems
    of which half (when ``task.code_misreads``) contain a verb the code corpus drops, and
    ``misread``, the boolean mask of those. The same ``seed`` gives the same sets.

    Explained in :ref:`sec-formats-rl`.
    """
    probs = fm.generate_problems(task, n_rl + 8 * n_eval, seed=seed, split="heldout")
    rl_set = probs.take(np.arange(n_rl))
    pool = probs.take(np.arange(n_rl, len(probs)))
    # a balanced evaluation set: half the problems contain a verb the code corpus drops
    # (only another format, or a repaired translation, can solve them), half do not
    bad = np.isin(pool.verb_words(), task.code_misreads).any(axis=1)
    n_bad = min(n_eval // 2, int(bad.sum())) if task.code_misreads else 0
    ev_set = pool.take(np.sort(np.concatenate([np.flatnonzero(bad)[:n_bad], np.flatnonzero(~bad)[: n_eval - n_bad]])))
    misread = np.isin(ev_set.verb_words(), task.code_misreads).any(axis=1)
    return rl_set, ev_set, misread


def experiment(
    task: fm.Task,
    proportions,
    sizes: Sequence[ModelSize],
    betas: Sequence[float],
    *,
    n_pretrain: int,
    n_seeds: int,
    seed: int,
    pretrain_steps: int,
    pretrain_batch: int,
    n_corpus: int,
    n_rl: int,
    n_eval: int,
    eval_samples: int,
    rl_steps: int,
    batch_problems: int,
    group_size: int,
    rl_lr: float,
    cache_dir=None,
    device="cpu",
    snapshots: Sequence[int] = (),
    also_pretrain: Sequence[PretrainConfig] = (),
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Chapter 4's grid: for each size, ``n_pretrain`` pretrained models (cached), and from
    each, ``n_seeds`` RL runs for every KL strength in ``betas``; evaluation before/after.

    Every stream comes from :func:`vanishing_tails.core.seeds.streams` of ``seed`` by name:
    ``("pretrain", size, j)`` for the j-th model of a size, ``("rl", size, j, i)`` for its
    i-th RL run (the same for every beta: common random numbers, so the KL comparison is
    paired within a pretrained model), ``("eval", size, j)`` for its evaluation (the same
    before and after RL), ``"problems"`` for the RL and evaluation problems, which come
    from the held-out split and are the same for every model. Half of the ``n_eval``
    evaluation problems (when ``task.code_misreads``) contain a verb the code corpus drops.
    All models of a size are pretrained as one stack and all their RL runs are one stack;
    ``snapshots`` (step counts, e.g. the winner-flip sweep's budgets) are passed to
    :func:`pretrain`, which leaves the weights at those steps in the cache.
    ``also_pretrain``: configurations another experiment will ask for (the winner-flip
    sweep's, :func:`.flip.pretrain_configs`); those with a size's shape and this budget are
    trained in that size's stack and left in the cache, because one stack of eight models
    costs less than a stack of five and one of three. A model's weights do not depend on
    its stack-mates (:func:`pretrain`), so this changes no number of either experiment.
    Ignored without a cache.

    Returns a dict of long frames and arrays:

    * ``steps``: size, pretrain, seed, run, beta, step, epoch, quantity, value (:func:`rl_run`);
    * ``evals``: size, pretrain, seed, run, beta, when ("before" | "after"), quantity, value;
      quantities prefixed ``misread/`` (``clean/``) are measured on the evaluation problems
      that do (do not) contain a verb the code corpus drops;
    * ``models``: size, pretrain, d_model, n_layers, n_heads, n_parameters, cached, pretrain_loss;
    * ``per_prompt``: ``{size: {"p_format": [n_pretrain, N, F+1], "correct_mass":
      [n_pretrain, N, F]}}`` of the pretrained models (:class:`Evaluation`), and
      ``{(size, "after"): ...}`` for the RL policies (replicas in the order of ``steps``);
    * ``config``: the arguments that determine the numbers above (the winner-flip sweep
      reads its cells at the chapter's budget and mixture from here when they match,
      :func:`.flip.winner_flip`).

    Explained in :ref:`sec-formats-rl`.
    """
    proportions = fm.check_proportions(proportions, formats=fm.FORMATS)
    betas = [check_beta(b, "betas") for b in betas]
    if n_seeds < 1 or n_pretrain < 1:
        raise ValueError(f"n_seeds and n_pretrain must be >= 1, got {n_seeds}, {n_pretrain}")
    s = streams(seed)
    rl_set, ev_set, misread = problem_sets(task, n_rl=n_rl, n_eval=n_eval, seed=s["problems"])
    subsets = {"misread": misread, "clean": ~misread}
    rl_cfg = RLConfig(steps=rl_steps, batch_problems=batch_problems, group_size=group_size, lr=rl_lr)
    steps, evals, models, per_prompt = [], [], [], {}
    for size in sizes:
        cfgs = [
            PretrainConfig(
                task,
                tuple(proportions),
                size,
                n_corpus=n_corpus,
                steps=pretrain_steps,
                batch_size=pretrain_batch,
                seed=s["pretrain", size.name, j],
            )
            for j in range(n_pretrain)
        ]
        keys, extra = {c.key() for c in cfgs}, []
        for c in also_pretrain if cache_dir is not False else ():
            # joins the stack when only its seed and mixture differ from this size's models
            if replace(c, seed=cfgs[0].seed, proportions=cfgs[0].proportions) == cfgs[0] and c.key() not in keys:
                keys.add(c.key())
                extra.append(c)
        refs, infos = pretrain(cfgs + extra, cache_dir=cache_dir, device=device, snapshots=snapshots)
        if extra:
            refs, infos = refs.take(range(n_pretrain)), infos[:n_pretrain]
        if progress:
            progress(f"{size.name}: pretrained {n_pretrain} models")
        for j, info in enumerate(infos):
            models.append(
                {
                    "size": size.name,
                    "pretrain": j,
                    "d_model": size.d_model,
                    "n_layers": size.n_layers,
                    "n_heads": size.n_heads,
                    "n_parameters": info["n_parameters"],
                    "cached": info["cached"],
                    "pretrain_loss": info["loss"],
                }
            )
        eval_seeds = [s["eval", size.name, j] for j in range(n_pretrain)]
        before = evaluate(task, refs, ev_set, samples=eval_samples, seeds=eval_seeds, subsets=subsets)
        per_prompt[size.name] = {"p_format": before.p_format, "correct_mass": before.correct_mass}
        reps = [(j, i, b) for j in range(n_pretrain) for i in range(n_seeds) for b in betas]
        st, policies = rl_run(
            task,
            refs.take([j for j, _, _ in reps]),
            rl_set,
            rl_cfg,
            betas=[b for _, _, b in reps],
            seeds=[s["rl", size.name, j, i] for j, i, _ in reps],
        )
        if progress:
            progress(f"{size.name}: {len(reps)} RL runs")
        after = evaluate(
            task, policies, ev_set, samples=eval_samples, seeds=[eval_seeds[j] for j, _, _ in reps], subsets=subsets
        )
        per_prompt[size.name, "after"] = {"p_format": after.p_format, "correct_mass": after.correct_mass}
        ids = pd.DataFrame([dict(size=size.name, pretrain=j, seed=i, run=j * n_seeds + i, beta=b) for j, i, b in reps])
        steps.append(ids.iloc[st["replica"].to_numpy()].reset_index(drop=True).join(st.drop(columns="replica")))
        for m, (j, _, _) in enumerate(reps):
            for when, row in (("before", before.rows[j]), ("after", after.rows[m])):
                evals.append(
                    pd.DataFrame(
                        {**ids.iloc[m].to_dict(), "when": when, "quantity": list(row), "value": list(row.values())}
                    )
                )
    cols = ["size", "pretrain", "seed", "run", "beta"]
    steps_df = pd.concat(steps, ignore_index=True)
    evals_df = pd.concat(evals, ignore_index=True)
    return {
        "steps": steps_df[cols + [c for c in steps_df.columns if c not in cols]],
        "evals": evals_df[cols + [c for c in evals_df.columns if c not in cols]],
        "models": pd.DataFrame(models),
        "per_prompt": per_prompt,
        "config": {
            "task": task,
            "proportions": tuple(round(float(x), 12) for x in proportions),  # as PretrainConfig keeps them
            "sizes": tuple(sizes),
            "betas": tuple(betas),
            "n_pretrain": n_pretrain,
            "n_seeds": n_seeds,
            "seed": seed,
            "pretrain_steps": pretrain_steps,
            "pretrain_batch": pretrain_batch,
            "n_corpus": n_corpus,
            "n_rl": n_rl,
            "n_eval": n_eval,
            "eval_samples": eval_samples,
            "rl_steps": rl_steps,
            "batch_problems": batch_problems,
            "group_size": group_size,
            "rl_lr": rl_lr,
            "device": lm.resolve_device(device).type,
        },
    }


def wide(frame: pd.DataFrame, index: Sequence[str]) -> pd.DataFrame:
    """Long ``quantity``/``value`` frame -> one column per quantity (for plotting and claims).

    Explained in :ref:`sec-formats-rl`.
    """
    return frame.pivot(index=list(index), columns="quantity", values="value").reset_index().rename_axis(columns=None)
