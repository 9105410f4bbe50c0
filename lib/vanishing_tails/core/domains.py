"""The two toy domains of chapter 5 ("What the reward pays for"): tiny programs and short lines.

Each domain is a small *enumerable* language of outputs, a set of prompts, and what a
judge or an evaluator needs to know about every (prompt, output) pair:

* **code** — programs in a tiny expression language over one variable ``x``: atoms
  ``x 1 2 3``, binary operators ``+ - *`` (``*`` binds tighter), 1, 3 or 5 tokens
  (4 + 48 + 576 = 628 programs). A prompt ``code in:a out:t`` asks for a program with
  ``f(a) = t``. :func:`run_program` is the interpreter. The *semantic class* of a program
  is the function it computes (its outputs on the probe inputs ``x = 0..4``, which
  identify any polynomial of degree <= 3, the most these programs reach); its *shape*
  (syntactic template) replaces the literals by ``N``.
* **creative** — one-line "poems" ``[ADJ] NOUN VERB [PREP NOUN]`` over a 16-word
  lexicon (5 * 6 * 4 * 13 = 1560 lines). A prompt ``poem <topic>`` asks for a line about
  the topic; a line is on topic when one of its nouns is the topic. The *semantic class*
  is the line's content cluster (the image categories of its subject, verb and second
  noun); its *shape* is its part-of-speech template.

Each domain also carries a *prior* over outputs, ``prior[p, y]``: a Zipf-like
preference for some tokens, clichés (``grey sea``, ``silver moon``, ``x + 1``), and a
length distribution, reweighted so that a chosen share ``valid_share`` of each
prompt's mass is valid. The reference model of chapter 5 is pretrained on a corpus
drawn from it (:func:`vanishing_tails.experiments.preference.tuning.reference_corpus`).

Because the output space is enumerable, every distribution over it — the reference
model's, a tuned model's, the KL-regularised optimum p* ∝ p_ref exp(r/β) — can be
written down exactly, which is what lets chapter 5 draw exact theory curves.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

DOMAINS = ("code", "creative")

# ----------------------------------------------------------------------------- code

ATOMS = ("x", "1", "2", "3")
OPS = ("+", "-", "*")
PROBES = (0, 1, 2, 3, 4)
# Prior preferences of the "pretraining corpus" (a Zipf-like coder who likes x and +).
_ATOM_W = {"x": 0.4, "1": 0.3, "2": 0.2, "3": 0.1}
_OP_W = {"+": 0.5, "*": 0.3, "-": 0.2}
_CODE_LEN_W = {1: 0.1, 3: 0.5, 5: 0.4}


def run_program(program: str | list[str], x: int) -> int | None:
    """Interpret a program of the tiny expression language at input ``x``.

    Grammar (tokens separated by spaces): ``expr := term (('+'|'-') term)*``,
    ``term := atom ('*' atom)*``, ``atom := 'x' | integer``. Returns the integer value,
    or ``None`` when the program does not parse (it "does not run").

    >>> run_program("x * 2 + 1", 2)
    5
    >>> run_program("1 + 2 * x", 3)
    7
    >>> run_program("x +", 1) is None
    True

    Explained in :ref:`sec-preference-setup`.
    """
    toks = program.split() if isinstance(program, str) else list(program)
    if not toks or len(toks) % 2 == 0:
        return None
    values = []
    for t in toks[0::2]:
        if t == "x":
            values.append(int(x))
        elif t.isdigit():
            values.append(int(t))
        else:
            return None
    ops = toks[1::2]
    if any(o not in OPS for o in ops):
        return None
    # multiplication first, then + and - left to right
    terms, signs = [values[0]], []
    for o, v in zip(ops, values[1:]):
        if o == "*":
            terms[-1] = terms[-1] * v
        else:
            terms.append(v)
            signs.append(o)
    total = terms[0]
    for s, v in zip(signs, terms[1:]):
        total = total + v if s == "+" else total - v
    return int(total)


def enumerate_programs() -> list[str]:
    """Every program of 1, 3 or 5 tokens, in a fixed order (628 of them).

    Explained in :ref:`sec-preference-setup`.
    """
    out = list(ATOMS)
    for a, o, b in itertools.product(ATOMS, OPS, ATOMS):
        out.append(f"{a} {o} {b}")
    for a, o, b, o2, c in itertools.product(ATOMS, OPS, ATOMS, OPS, ATOMS):
        out.append(f"{a} {o} {b} {o2} {c}")
    return out


def program_shape(program: str) -> str:
    """Syntactic template: literals replaced by ``N`` (``x * 2 + 1`` -> ``x * N + N``).

    Explained in :ref:`sec-preference-setup`.
    """
    return " ".join("N" if t.isdigit() else t for t in program.split())


# ------------------------------------------------------------------------- creative

ADJS = ("grey", "silver", "quiet", "broken")
NOUNS = ("sea", "moon", "city", "heart", "rain", "stone")
VERBS = ("sleeps", "burns", "sings", "waits")
PREPS = ("under", "beyond")
NOUN_CATEGORY = {"sea": "water", "rain": "water", "moon": "sky", "heart": "body", "city": "built", "stone": "built"}
VERB_CATEGORY = {"sleeps": "still", "waits": "still", "burns": "lively", "sings": "lively"}
# Clichés of the "pretraining corpus": each noun's favourite adjective and verb.
_CLICHE_ADJ = {"sea": "grey", "moon": "silver", "city": "quiet", "heart": "broken", "rain": "grey", "stone": "quiet"}
_CLICHE_VERB = {"sea": "sings", "moon": "sleeps", "city": "sleeps", "heart": "burns", "rain": "sings", "stone": "waits"}
_NOUN_W = {"sea": 0.25, "moon": 0.25, "heart": 0.2, "city": 0.12, "rain": 0.1, "stone": 0.08}
_P_NO_ADJ, _P_CLICHE_ADJ = 0.3, 0.5  # remaining 0.2 spread over the other adjectives
_P_CLICHE_VERB = 0.55  # remaining 0.45 over the other verbs
_P_NO_TAIL = 0.45
_PREP_W = {"under": 0.7, "beyond": 0.3}


def enumerate_lines() -> list[str]:
    """Every line ``[ADJ] NOUN VERB [PREP NOUN]``, in a fixed order (1560 of them).

    Explained in :ref:`sec-preference-setup`.
    """
    out = []
    tails = [""] + [f" {p} {n}" for p in PREPS for n in NOUNS]
    for adj in ("",) + ADJS:
        for noun in NOUNS:
            for verb in VERBS:
                for tail in tails:
                    out.append(f"{adj + ' ' if adj else ''}{noun} {verb}{tail}")
    return out


def parse_line(line: str) -> dict | None:
    """Slots of a well-formed line (``adj``, ``noun``, ``verb``, ``prep``, ``noun2``), else None.

    Explained in :ref:`sec-preference-setup`.
    """
    toks = line.split()
    if toks and toks[0] in ADJS:
        adj, toks = toks[0], toks[1:]
    else:
        adj = None
    if len(toks) not in (2, 4) or toks[0] not in NOUNS or toks[1] not in VERBS:
        return None
    prep = noun2 = None
    if len(toks) == 4:
        if toks[2] not in PREPS or toks[3] not in NOUNS:
            return None
        prep, noun2 = toks[2], toks[3]
    return {"adj": adj, "noun": toks[0], "verb": toks[1], "prep": prep, "noun2": noun2}


def line_shape(line: str) -> str:
    """Part-of-speech template of a well-formed line (``ADJ N V P N``).

    Explained in :ref:`sec-preference-setup`.
    """
    s = parse_line(line)
    if s is None:
        return "malformed"
    return " ".join(
        t
        for t, v in (("ADJ", s["adj"]), ("N", s["noun"]), ("V", s["verb"]), ("P", s["prep"]), ("N", s["noun2"]))
        if v is not None
    )


def line_cluster(line: str) -> str:
    """Content cluster: image categories of the subject, the verb and the second noun.

    Explained in :ref:`sec-preference-setup`.
    """
    s = parse_line(line)
    if s is None:
        return "malformed"
    tail = NOUN_CATEGORY[s["noun2"]] if s["noun2"] else "-"
    return f"{NOUN_CATEGORY[s['noun']]}/{VERB_CATEGORY[s['verb']]}/{tail}"


def _line_prior(line: str) -> float:
    s = parse_line(line)
    n_other_adj = len(ADJS) - 1
    p = _NOUN_W[s["noun"]]
    if s["adj"] is None:
        p *= _P_NO_ADJ
    elif s["adj"] == _CLICHE_ADJ[s["noun"]]:
        p *= _P_CLICHE_ADJ
    else:
        p *= (1 - _P_NO_ADJ - _P_CLICHE_ADJ) / n_other_adj
    p *= _P_CLICHE_VERB if s["verb"] == _CLICHE_VERB[s["noun"]] else (1 - _P_CLICHE_VERB) / (len(VERBS) - 1)
    if s["prep"] is None:
        p *= _P_NO_TAIL
    else:
        p *= (1 - _P_NO_TAIL) * _PREP_W[s["prep"]] * _NOUN_W[s["noun2"]]
    return p


def _program_prior(program: str) -> float:
    toks = program.split()
    p = _CODE_LEN_W[len(toks)]
    for t in toks[0::2]:
        p *= _ATOM_W[t]
    for t in toks[1::2]:
        p *= _OP_W[t]
    return p


# --------------------------------------------------------------------------- domain


@dataclass(frozen=True)
class Domain:
    """An enumerable output space with prompts and per-(prompt, output) attributes.

    Arrays are indexed ``[prompt, output]`` (``valid``, ``prior``) or ``[output]``
    (``semantic``, ``shape``, ``length``); ``semantic``/``shape`` hold integer class ids
    whose names are in ``semantic_names``/``shape_names``. ``valid`` is the domain's
    quality predicate: the program returns the asked value (code) or the line is on topic
    (creative).
    Explained in :ref:`sec-preference-setup`.
    """

    name: str
    prompts: tuple[str, ...]
    outputs: tuple[str, ...]
    valid: np.ndarray
    prior: np.ndarray
    semantic: np.ndarray
    shape: np.ndarray
    length: np.ndarray
    semantic_names: tuple[str, ...]
    shape_names: tuple[str, ...]
    index: dict = field(repr=False, compare=False, default_factory=dict)

    @property
    def n_prompts(self) -> int:
        return len(self.prompts)

    @property
    def n_outputs(self) -> int:
        return len(self.outputs)

    def lookup(self, texts: list[str]) -> np.ndarray:
        """Index of each text in the output space, -1 for text outside it (malformed)."""
        return np.array([self.index.get(" ".join(t.split()), -1) for t in texts], dtype=int)


def _classes(labels: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    names = tuple(sorted(set(labels)))
    ids = {n: i for i, n in enumerate(names)}
    return np.array([ids[label] for label in labels], dtype=int), names


def _reweight(prior: np.ndarray, valid: np.ndarray, valid_share: float) -> np.ndarray:
    """Per prompt, rescale valid and invalid mass so that valid outputs hold ``valid_share``."""
    prior = prior / prior.sum(axis=-1, keepdims=True)
    mv = (prior * valid).sum(axis=-1, keepdims=True)
    w = np.where(valid, valid_share / mv, (1 - valid_share) / (1 - mv))
    out = prior * w
    return out / out.sum(axis=-1, keepdims=True)


def code_prompts(n_prompts: int) -> list[tuple[int, int]]:
    """The ``n_prompts`` (input, target) pairs used as code prompts, in a fixed order.

    Candidates are inputs 2 and 3 with targets whose valid programs make up between 1%
    and 25% of the prior's mass and include at least two distinct functions; they are
    taken in a fixed interleaved order (by prior mass of the valid set), so a larger
    ``n_prompts`` extends a smaller one.
    Explained in :ref:`sec-preference-setup`.
    """
    programs = enumerate_programs()
    prior = np.array([_program_prior(p) for p in programs])
    prior = prior / prior.sum()
    funcs = [tuple(run_program(p, x) for x in PROBES) for p in programs]
    cands = []
    for a in (2, 3):
        vals = np.array([run_program(p, a) for p in programs])
        for t in sorted(set(vals.tolist())):
            ok = vals == t
            mass = float(prior[ok].sum())
            n_funcs = len({funcs[i] for i in np.flatnonzero(ok)})
            if 0.01 <= mass <= 0.25 and n_funcs >= 2:
                cands.append((mass, a, t))
    cands.sort(key=lambda c: (-c[0], c[1], c[2]))
    if n_prompts > len(cands):
        raise ValueError(f"n_prompts must be <= {len(cands)} for the code domain; got {n_prompts}")
    return [(a, t) for _, a, t in cands[:n_prompts]]


def code_domain(n_prompts: int, valid_share: float) -> Domain:
    """The code domain (see the module docstring) with ``n_prompts`` prompts.

    Explained in :ref:`sec-preference-setup`.
    """
    _check_common(n_prompts, valid_share)
    programs = enumerate_programs()
    pairs = code_prompts(n_prompts)
    prompts = tuple(f"code in:{a} out:{t}" for a, t in pairs)
    valid = np.array([[run_program(p, a) == t for p in programs] for a, t in pairs])
    base = np.array([_program_prior(p) for p in programs])
    prior = _reweight(np.broadcast_to(base, valid.shape), valid, valid_share)
    semantic, semantic_names = _classes([",".join(str(run_program(p, x)) for x in PROBES) for p in programs])
    shape, shape_names = _classes([program_shape(p) for p in programs])
    length = np.array([len(p.split()) for p in programs])
    return Domain(
        "code",
        prompts,
        tuple(programs),
        valid,
        prior,
        semantic,
        shape,
        length,
        semantic_names,
        shape_names,
        {p: i for i, p in enumerate(programs)},
    )


def creative_domain(n_prompts: int, valid_share: float) -> Domain:
    """The creative domain (see the module docstring) with ``n_prompts`` topics.

    Explained in :ref:`sec-preference-setup`.
    """
    _check_common(n_prompts, valid_share)
    if n_prompts > len(NOUNS):
        raise ValueError(f"n_prompts must be <= {len(NOUNS)} for the creative domain; got {n_prompts}")
    lines = enumerate_lines()
    topics = NOUNS[:n_prompts]
    prompts = tuple(f"poem {t}" for t in topics)
    parsed = [parse_line(s) for s in lines]
    valid = np.array([[s["noun"] == t or s["noun2"] == t for s in parsed] for t in topics])
    base = np.array([_line_prior(s) for s in lines])
    prior = _reweight(np.broadcast_to(base, valid.shape), valid, valid_share)
    semantic, semantic_names = _classes([line_cluster(s) for s in lines])
    shape, shape_names = _classes([line_shape(s) for s in lines])
    length = np.array([len(s.split()) for s in lines])
    return Domain(
        "creative",
        prompts,
        tuple(lines),
        valid,
        prior,
        semantic,
        shape,
        length,
        semantic_names,
        shape_names,
        {s: i for i, s in enumerate(lines)},
    )


def _check_common(n_prompts: int, valid_share: float) -> None:
    if int(n_prompts) != n_prompts or n_prompts < 1:
        raise ValueError(f"n_prompts must be an integer >= 1 (an empty domain has nothing to tune); got {n_prompts!r}")
    if not 0 < valid_share < 1:
        raise ValueError(f"valid_share must be in (0, 1); got {valid_share!r}")


def make_domain(name: str, n_prompts: int, valid_share: float) -> Domain:
    """Build the domain called ``name`` (one of :data:`DOMAINS`).

    Explained in :ref:`sec-preference-setup`.
    """
    if name not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}; got {name!r}")
    return (code_domain if name == "code" else creative_domain)(n_prompts, valid_share)
