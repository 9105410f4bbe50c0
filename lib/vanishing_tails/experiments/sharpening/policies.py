"""Chapter 3's toy, "Sharpening spreads": outcome-reward RL on problems with K candidate answers.

Each problem ``x`` has K candidate final answers, one of them correct. A policy gives
``pi(a | x) = softmax_a(l_{x,a})`` with logits

    l_{x,a} = exp(s) * <phi_x W, e_a> / sqrt(h) + b_a + theta_{x,a},

where the **shared** parameters (the feature map ``W``, the answer embeddings ``e_a``, the
inverse temperature ``exp(s)`` and a global answer prior ``b``) are used by every problem
and the **per-problem** parameters ``theta_x`` by problem ``x`` alone. The base policy is
the initialisation (``theta = 0``, ``b = 0``). Problems are built from it: a *solved*
problem's correct answer is its base mode (a fair pass@1); an *unsolved* problem's correct
answer is a tail answer whose base probability is about ``p_unsolved``. Some problems of
each kind are held out and never trained on.

Training is GRPO-style (Shao et al. 2024): a group of G answers per training problem,
outcome reward 1/0, group-relative advantages (:func:`vanishing_tails.core.rl.group_advantages`),
one on-policy Adam step per batch — batched over seeds, problems and group samples (one
set of tensor ops per step, no loop over problems). Exploration arms add the historical
(UCB count) bonus or the batch repetition penalty of Song, Kempe & Munos 2025
(:func:`vanishing_tails.core.rl.ucb_bonus`, :func:`vanishing_tails.core.rl.batch_repetition_penalty`),
or an entropy bonus; the *tabular* control trains ``theta`` only (no shared parameters).

Every tensor carries a leading seed axis ``S``: independent tasks and policies, trained in
one batch (Adam is elementwise and the loss is a sum over seeds, so the seeds do not
interact). Sizes and coefficients have no defaults here: the chapter's spec
(:mod:`vanishing_tails.experiments.sharpening.spec`) is the only place they are set.
Explained in :ref:`chapter-sharpening-spreads`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from torch import nn

from vanishing_tails.core import metrics
from vanishing_tails.core.lm import resolve_device
from vanishing_tails.core.optim import Adam
from vanishing_tails.core.rl import batch_repetition_penalty, group_advantages, policy_gradient_loss, ucb_bonus

__all__ = [
    "GROUPS",
    "Arm",
    "AnswerTask",
    "AnswerPolicy",
    "AnswerRun",
    "standard_arms",
    "make_answer_task",
    "train_answer_policy",
    "sample_evaluation",
    "exact_pass_at_k",
    "base_sampler_coverage",
    "answer_tail_measures",
    "scale_frozen_arm",
    "scale_only_arm",
    "make_learnable_task",
    "tile_task",
    "sweep_configs",
    "sweep_arm",
    "trajectory",
    "SHARED_PARAMETERS",
]

GROUPS = ("solved", "unsolved", "held-out")


def _check(name: str, ok: bool, allowed: str, value) -> None:
    if not ok:
        raise ValueError(f"{name} must be {allowed}; got {value!r}")


SHARED_PARAMETERS = ("W", "E", "log_scale", "bias")


@dataclass(frozen=True, kw_only=True)
class Arm:
    """One training recipe: outcome reward plus optional exploration terms (0 switches one off).

    ``ucb_c``: historical bonus c * min(1, 1/sqrt(N(x, a))) on the reward;
    ``batch_c``: batch penalty -(batch_c / G) * #{j != i: a_j = a_i} on the reward;
    ``entropy_beta``: loss term -beta * mean_x H(pi(. | x)) over training problems;
    ``shared=False``: the tabular control (only the per-problem logits are trained);
    ``frozen``: names of shared parameters (of :data:`SHARED_PARAMETERS`) kept at their base
    values while the others train — ``("log_scale",)`` is the channel ablation that shares
    everything except the inverse temperature ("trust the mode").
    A scale may also be a tuple with one value per seed slice (a vectorised sweep: see
    :func:`tile_task`). The scales have no defaults: the chapter's spec sets them
    (:func:`standard_arms`). Explained in :ref:`sec-sharpening-bonuses`.
    """

    name: str
    ucb_c: float | tuple[float, ...]
    batch_c: float | tuple[float, ...]
    entropy_beta: float | tuple[float, ...]
    shared: bool = True
    frozen: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for field in ("ucb_c", "batch_c", "entropy_beta"):
            v = getattr(self, field)
            values = v if isinstance(v, tuple) else (v,)
            _check(
                field,
                len(values) > 0
                and all(
                    isinstance(x, (int, float, np.integer, np.floating)) and math.isfinite(x) and x >= 0 for x in values
                ),
                "a finite number >= 0 (a bonus or penalty scale cannot be negative), or a tuple of them",
                v,
            )
        _check(
            "frozen",
            isinstance(self.frozen, tuple) and set(self.frozen) <= set(SHARED_PARAMETERS),
            f"a tuple of names from {SHARED_PARAMETERS}",
            self.frozen,
        )

    def scale(self, field: str, n_seeds: int) -> np.ndarray | None:
        """The scale ``field`` per seed slice, shape [n_seeds] (None when it is 0 everywhere).

        Explained in :ref:`sec-sharpening-sweeps`.
        """
        v = getattr(self, field)
        values = np.asarray(v if isinstance(v, tuple) else (v,), dtype=float)
        if len(values) not in (1, n_seeds):
            raise ValueError(f"{field} must have 1 or n_seeds = {n_seeds} values; got {len(values)}")
        return None if not values.any() else np.broadcast_to(values, (n_seeds,))


def standard_arms(*, ucb_c: float, batch_c: float, entropy_beta: float) -> list[Arm]:
    """The chapter's five arms, in order: outcome only, historical (UCB), batch, entropy bonus,
    and the tabular control (outcome only, no shared parameters).

    Explained in :ref:`sec-sharpening-bonuses`.
    """
    return [
        Arm(name="outcome only", ucb_c=0.0, batch_c=0.0, entropy_beta=0.0),
        Arm(name="historical (UCB)", ucb_c=ucb_c, batch_c=0.0, entropy_beta=0.0),
        Arm(name="batch", ucb_c=0.0, batch_c=batch_c, entropy_beta=0.0),
        Arm(name="entropy bonus", ucb_c=0.0, batch_c=0.0, entropy_beta=entropy_beta),
        Arm(name="tabular control", ucb_c=0.0, batch_c=0.0, entropy_beta=0.0, shared=False),
    ]


def scale_only_arm() -> Arm:
    """The complementary channel ablation: outcome-only GRPO whose only trained shared parameter
    is the inverse temperature exp(s) (W, E and b frozen at the base; theta trains).

    Explained in :ref:`sec-sharpening-channels`.
    """
    return Arm(name="scale only", ucb_c=0.0, batch_c=0.0, entropy_beta=0.0, frozen=("W", "E", "bias"))


def scale_frozen_arm() -> Arm:
    """The channel ablation: outcome-only GRPO with every shared parameter trained except the
    inverse temperature exp(s), frozen at the base ("trust the mode" switched off).

    Explained in :ref:`sec-sharpening-channels`.
    """
    return Arm(name="scale frozen", ucb_c=0.0, batch_c=0.0, entropy_beta=0.0, frozen=("log_scale",))


@dataclass(frozen=True)
class AnswerTask:
    """A batch of ``S`` independent problem sets (one per seed) and their base policies.

    Shapes: ``features`` [S, P, d], ``W0`` [S, d, h], ``E0`` [S, K, h], ``correct`` [S, P, K]
    (bool). ``kind`` [P] is "solved" or "unsolved" (how the correct answer was chosen) and
    ``train`` [P] marks the problems trained on; the layout is the same for every seed.
    Explained in :ref:`sec-sharpening-policy`.
    """

    features: torch.Tensor
    W0: torch.Tensor
    E0: torch.Tensor
    base_scale: float
    correct: torch.Tensor
    kind: np.ndarray
    train: np.ndarray

    @property
    def n_seeds(self) -> int:
        return self.features.shape[0]

    @property
    def n_problems(self) -> int:
        return self.features.shape[1]

    @property
    def n_answers(self) -> int:
        return self.E0.shape[1]

    @property
    def group(self) -> np.ndarray:
        """Per problem: "solved" / "unsolved" for training problems, "held-out" otherwise."""
        return np.where(self.train, self.kind, "held-out")

    def base_logprobs(self) -> torch.Tensor:
        """log pi_0(a | x), shape [S, P, K]."""
        with torch.no_grad():
            return torch.log_softmax(AnswerPolicy(self)(), dim=-1)


def make_answer_task(
    *,
    n_seeds: int,
    n_solved: int,
    n_unsolved: int,
    n_held_out: int,
    n_answers: int,
    n_features: int,
    n_hidden: int,
    base_scale: float,
    p_unsolved: float,
    seed: int,
    device: str | torch.device,
    dtype: torch.dtype = torch.float32,
) -> AnswerTask:
    """Draw ``n_seeds`` independent tasks: random features and base network, then correct answers.

    Features phi_x ~ N(0, I_d), W0 ~ N(0, 1/d), e_a ~ N(0, I_h), so the base scores
    <phi_x W0, e_a>/sqrt(h) are roughly standard normal and ``base_scale`` (the base
    inverse temperature) sets how peaked the base policy is. Solved problems: correct
    answer = base mode. Unsolved problems: the answer whose base log-probability is
    closest to log ``p_unsolved`` (never the mode). Layout: training solved, training
    unsolved, then held-out (solved-type first, unsolved-type last, half of each).
    Random numbers come from a CPU generator seeded with ``seed`` (drawn in float64, then
    cast to ``dtype``), so the task does not depend on ``device``; the base mode is taken
    from the base policy's own logits in ``dtype``. Explained in :ref:`sec-sharpening-policy`.
    """
    for name, v, low in (
        ("n_seeds", n_seeds, 1),
        ("n_solved", n_solved, 1),
        ("n_unsolved", n_unsolved, 1),
        ("n_held_out", n_held_out, 1),
        ("n_answers", n_answers, 2),
        ("n_features", n_features, 1),
        ("n_hidden", n_hidden, 1),
    ):
        _check(name, isinstance(v, (int, np.integer)) and v >= low, f"an integer >= {low}", v)
    _check("base_scale", base_scale > 0, "> 0", base_scale)
    _check("p_unsolved", 0 < p_unsolved < 1, "in (0, 1)", p_unsolved)
    S, K, d, h = n_seeds, n_answers, n_features, n_hidden
    P = n_solved + n_unsolved + n_held_out
    gen = torch.Generator().manual_seed(int(seed))
    features = torch.randn(S, P, d, generator=gen, dtype=torch.float64).to(dtype)
    W0 = (torch.randn(S, d, h, generator=gen, dtype=torch.float64) / math.sqrt(d)).to(dtype)
    E0 = torch.randn(S, K, h, generator=gen, dtype=torch.float64).to(dtype)

    n_held_unsolved = n_held_out // 2
    kind = np.array(
        ["solved"] * n_solved
        + ["unsolved"] * n_unsolved
        + ["solved"] * (n_held_out - n_held_unsolved)
        + ["unsolved"] * n_held_unsolved
    )
    train = np.arange(P) < n_solved + n_unsolved

    unknown = torch.zeros(S, P, K, dtype=torch.bool)
    task = AnswerTask(features, W0, E0, float(base_scale), unknown, kind, train)
    logp0 = task.base_logprobs()
    mode = logp0.argmax(-1)
    dist = (logp0 - math.log(p_unsolved)).abs()
    dist.scatter_(-1, mode.unsqueeze(-1), math.inf)  # the tail answer is never the mode
    tail = dist.argmin(-1)
    unsolved = torch.as_tensor(kind == "unsolved")
    answer = torch.where(unsolved, tail, mode)
    correct = torch.zeros(S, P, K, dtype=torch.bool).scatter_(-1, answer.unsqueeze(-1), True)
    dev = resolve_device(device)
    return replace(task, features=features.to(dev), W0=W0.to(dev), E0=E0.to(dev), correct=correct.to(dev))


def make_learnable_task(
    *,
    n_seeds: int,
    n_solved: int,
    n_unsolved: int,
    n_held_out: int,
    n_answers: int,
    n_features: int,
    n_hidden: int,
    base_scale: float,
    p_unsolved: float,
    teacher_overlap: float,
    seed: int,
    device: str | torch.device,
    dtype: torch.dtype = torch.float32,
) -> AnswerTask:
    """The learnable-answer variant: every problem's correct answer is a fixed function of its
    features that the policy class can represent, so transfer can help as well as hurt.

    A teacher feature map W* = rho W0 + sqrt(1 - rho^2) W1 (rho = ``teacher_overlap``, W1 an
    independent draw like W0) names the correct answer a*(x) = argmax_a <phi_x W*, e_a>; a policy
    with W = W* and any positive scale gets every problem right. From a pool of 8 P candidate
    problems per seed (P the total number of problems), *solved* problems are those whose
    a*(x) is the base mode (taken in pool order) and *unsolved* ones those, among the rest, whose
    a*(x) has base probability closest to ``p_unsolved`` (in log); the layout is that of
    :func:`make_answer_task`. Raises if the pool has too few of a kind (rho near 0 or 1).
    Explained in :ref:`sec-sharpening-learnable`.
    """
    _check("teacher_overlap", 0.0 <= teacher_overlap <= 1.0, "in [0, 1]", teacher_overlap)
    n_held_unsolved = n_held_out // 2
    need_solved, need_unsolved = n_solved + n_held_out - n_held_unsolved, n_unsolved + n_held_unsolved
    P = n_solved + n_unsolved + n_held_out
    pool = make_answer_task(
        n_seeds=n_seeds, n_solved=8 * P, n_unsolved=1, n_held_out=1, n_answers=n_answers,
        n_features=n_features, n_hidden=n_hidden, base_scale=base_scale, p_unsolved=p_unsolved,
        seed=seed, device="cpu", dtype=dtype,
    )  # fmt: skip
    gen = torch.Generator().manual_seed(int(seed) + 1)
    W1 = (torch.randn(pool.W0.shape, generator=gen, dtype=torch.float64) / math.sqrt(n_features)).to(dtype)
    W_star = teacher_overlap * pool.W0 + math.sqrt(1.0 - teacher_overlap**2) * W1
    features = pool.features[:, : 8 * P]
    logp0 = pool.base_logprobs()[:, : 8 * P]
    teacher = (features @ W_star) @ pool.E0.transpose(-1, -2)
    answer = teacher.argmax(-1)  # [S, M]
    agree = answer == logp0.argmax(-1)
    lp_answer = logp0.gather(-1, answer.unsqueeze(-1)).squeeze(-1)
    n_agree, n_other = agree.sum(-1), (~agree).sum(-1)
    if int(n_agree.min()) < need_solved or int(n_other.min()) < need_unsolved:
        raise ValueError(
            f"teacher_overlap = {teacher_overlap} leaves too few problems of a kind in the pool "
            f"(solved {int(n_agree.min())} < {need_solved} or unsolved {int(n_other.min())} < {need_unsolved}); "
            "choose an overlap further from 0 and 1"
        )
    solved_idx = torch.argsort((~agree).to(torch.int8), dim=-1, stable=True)[:, :need_solved]
    dist = torch.where(agree, torch.full_like(lp_answer, math.inf), (lp_answer - math.log(p_unsolved)).abs())
    unsolved_idx = torch.argsort(dist, dim=-1, stable=True)[:, :need_unsolved]
    n_hs = n_held_out - n_held_unsolved
    idx = torch.cat(
        [
            solved_idx[:, :n_solved],
            unsolved_idx[:, :n_unsolved],
            solved_idx[:, n_solved:],
            unsolved_idx[:, n_unsolved:],
        ],
        dim=1,
    )
    assert idx.shape[1] == P and solved_idx[:, n_solved:].shape[1] == n_hs
    feats = features.gather(1, idx.unsqueeze(-1).expand(-1, -1, n_features))
    chosen = answer.gather(1, idx)
    correct = torch.zeros(n_seeds, P, n_answers, dtype=torch.bool).scatter_(-1, chosen.unsqueeze(-1), True)
    kind = np.array(
        ["solved"] * n_solved + ["unsolved"] * n_unsolved + ["solved"] * n_hs + ["unsolved"] * n_held_unsolved
    )
    train = np.arange(P) < n_solved + n_unsolved
    dev = resolve_device(device)
    return AnswerTask(feats.to(dev), pool.W0.to(dev), pool.E0.to(dev), float(base_scale), correct.to(dev), kind, train)


def tile_task(task: AnswerTask, n: int) -> AnswerTask:
    """``n`` copies of every seed's task along the seed axis, copy-major: slice ``c * S + s`` is
    seed ``s`` (for a vectorised sweep, copy ``c`` trains with the ``c``-th coefficient; see
    :class:`Arm`). Explained in :ref:`sec-sharpening-sweeps`.
    """
    _check("n", isinstance(n, (int, np.integer)) and n >= 1, "an integer >= 1", n)
    rep = lambda t: t.repeat(n, *([1] * (t.dim() - 1)))  # noqa: E731
    return replace(task, features=rep(task.features), W0=rep(task.W0), E0=rep(task.E0), correct=rep(task.correct))


def sweep_configs(
    *, ucb_cs: Sequence[float], batch_cs: Sequence[float], entropy_betas: Sequence[float]
) -> pd.DataFrame:
    """The configurations of a one-knob-at-a-time coefficient sweep: outcome only (knob "none",
    value 0) first, then each value of ``ucb_c``, ``batch_c`` and ``entropy_beta`` with the other
    two at 0 (duplicates dropped, values sorted). Columns: knob, value, ucb_c, batch_c, entropy_beta.
    Explained in :ref:`sec-sharpening-sweeps`.
    """
    rows = [("none", 0.0)]
    for knob, values in (("ucb_c", ucb_cs), ("batch_c", batch_cs), ("entropy_beta", entropy_betas)):
        vals = sorted({float(v) for v in values if v > 0})
        _check(knob + " values", len(vals) > 0, "a list with at least one value > 0", list(values))
        rows += [(knob, v) for v in vals]
    frame = pd.DataFrame(rows, columns=["knob", "value"])
    for knob in ("ucb_c", "batch_c", "entropy_beta"):
        frame[knob] = np.where(frame.knob == knob, frame.value, 0.0)
    return frame


def sweep_arm(configs: pd.DataFrame, n_seeds: int, name: str) -> Arm:
    """One :class:`Arm` training every configuration of ``configs`` on every seed at once, for a
    task tiled with :func:`tile_task` (slice ``c * n_seeds + s``: configuration ``c``, seed ``s``).

    Explained in :ref:`sec-sharpening-sweeps`.
    """
    per_slice = {
        k: tuple(np.repeat(configs[k].to_numpy(float), n_seeds).tolist()) for k in ("ucb_c", "batch_c", "entropy_beta")
    }
    return Arm(name=name, **per_slice)


class AnswerPolicy(nn.Module):
    """pi(a | x) = softmax(exp(s) <phi_x W, e_a>/sqrt(h) + b_a + theta_{x,a}), batched over seeds.

    ``theta`` exists for the training problems only (a held-out problem never gets a
    gradient, so its theta would stay 0): ``forward()`` gives the logits of every problem,
    ``forward(train_only=True)`` those of the training problems, in ``task.train`` order,
    which is all a training step needs. ``shared=False`` freezes W, E, s and b at the
    base values (the tabular control): then only ``theta`` learns, and a problem whose
    group rewards are always equal gets an exactly zero gradient and keeps its base
    logits bit for bit. ``frozen`` freezes only the named shared parameters (the channel
    ablations). Explained in :ref:`sec-sharpening-policy`.
    """

    def __init__(self, task: AnswerTask, *, shared: bool = True, frozen: tuple[str, ...] = ()):
        super().__init__()
        S, K = task.n_seeds, task.n_answers
        dtype, dev = task.features.dtype, task.features.device
        train_idx = torch.as_tensor(np.flatnonzero(task.train), device=dev)
        self.register_buffer("features", task.features)
        self.register_buffer("train_idx", train_idx)
        self.register_buffer("features_train", task.features[:, train_idx])
        self.W = nn.Parameter(task.W0.clone())
        self.E = nn.Parameter(task.E0.clone())
        self.log_scale = nn.Parameter(torch.full((S, 1, 1), math.log(task.base_scale), dtype=dtype, device=dev))
        self.bias = nn.Parameter(torch.zeros(S, 1, K, dtype=dtype, device=dev))
        self.theta = nn.Parameter(torch.zeros(S, len(train_idx), K, dtype=dtype, device=dev))
        self.shared = shared
        for name in SHARED_PARAMETERS:
            getattr(self, name).requires_grad_(shared and name not in frozen)
        self._norm = 1.0 / math.sqrt(task.W0.shape[-1])

    def forward(self, train_only: bool = False) -> torch.Tensor:
        features = self.features_train if train_only else self.features
        scores = (features @ self.W) @ self.E.transpose(-1, -2) * self._norm
        logits = self.log_scale.exp() * scores + self.bias
        if train_only:
            return logits + self.theta
        return logits.index_add(1, self.train_idx, self.theta)


@dataclass
class AnswerRun:
    """What :func:`train_answer_policy` returns.

    ``history``: tidy frame (arm, seed, step, group, metric, value) of per-group means (see
    :func:`train_answer_policy`); ``logp0`` / ``logp``: base and final log-probabilities
    [S, P, K]; ``first_found`` [S, P]: the training step whose batch first held a correct
    answer for the problem (-1 if never, and for held-out problems);
    ``never_found_change`` [S]: ``max |log pi - log pi_0|`` over unsolved training problems that
    never sampled a correct answer (exactly 0 for the tabular control; NaN if there are none);
    ``inverse_temperature`` [S]: the shared exp(s) at the end (the base value for the
    tabular control); ``tails``: the common tail measures of the held-out problems per seed
    and recorded step (:func:`answer_tail_measures`; None unless ``tail_q`` was given).
    Explained in :ref:`sec-sharpening-transfer`.
    """

    arm: Arm
    history: pd.DataFrame
    logp0: np.ndarray
    logp: np.ndarray
    first_found: np.ndarray
    never_found_change: np.ndarray
    inverse_temperature: np.ndarray
    tails: pd.DataFrame | None = None

    @property
    def found(self) -> np.ndarray:
        """[S, P] whether a correct answer was ever sampled in training."""
        return self.first_found >= 0


def exact_pass_at_k(p_correct: np.ndarray, k: np.ndarray | int) -> np.ndarray:
    """pass@k of a policy that is correct with probability p on each independent draw: 1 - (1 - p)^k.

    Explained in :ref:`sec-sharpening-passk`.
    """
    p = np.clip(np.asarray(p_correct, dtype=float), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        return -np.expm1(np.asarray(k) * np.log1p(-p))


def base_sampler_coverage(p_correct: np.ndarray, group_size: int, steps: np.ndarray | int) -> np.ndarray:
    """Chance that a policy frozen at the base has sampled a correct answer within ``steps`` batches.

    1 - (1 - p)^(G t) for G = ``group_size`` draws per step. This is *exactly* the tabular
    control's coverage on each problem: until a problem's first correct sample its GRPO
    advantages are all zero, so its logits stay at the base. Broadcasts ``p_correct``
    against ``steps``. Explained in :ref:`sec-sharpening-bonuses`.
    """
    return exact_pass_at_k(p_correct, group_size * np.asarray(steps))


def _masked_stat(values: np.ndarray, mask: np.ndarray, how: str) -> np.ndarray:
    """[S, P] values and [S, P] (or [P]) mask -> [S] mean or max over the masked problems (NaN if none)."""
    mask = np.broadcast_to(mask, values.shape)
    n = mask.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if how == "mean":
            out = np.where(mask, values, 0.0).sum(axis=1) / n
        else:
            out = np.where(mask, values, -np.inf).max(axis=1)
    return np.where(n > 0, out, np.nan)


def train_answer_policy(
    task: AnswerTask,
    arm: Arm,
    *,
    steps: int,
    group_size: int,
    lr: float,
    eval_every: int,
    n_distinct: int,
    k_max: int,
    normalize: bool,
    seed: int,
    tail_q: float | None = None,
) -> AnswerRun:
    """Train the answer policy of every seed with GRPO-style outcome reward, batched.

    Per step, for every training problem x of every seed: draw G = ``group_size`` answers
    from pi(. | x); reward r_i = 1[a_i correct] (+ UCB bonus on the counts before this
    batch, + batch penalty); advantages A = group_advantages(r) (group-mean baseline, std-
    normalised unless ``normalize=False``); loss = -mean A_i log pi(a_i | x) - beta mean_x H;
    one Adam step (:class:`vanishing_tails.core.optim.Adam`, lr ``lr``, no weight decay;
    ``lr = 0`` leaves every policy at the base bit for bit, the chapter's null configuration).
    A group whose rewards are all equal has A = 0 exactly and contributes no gradient.

    Every ``eval_every`` steps (and at the last) it records, per seed, the mean over the
    problems of each group — "solved", "unsolved" (training problems of each kind),
    "held-out", and "not yet solved" (unsolved-kind training problems with no correct answer
    sampled so far), "held-out solved-kind" and "held-out unsolved-kind" — of: "entropy"
    (nats), "entropy_change" (H_t - H_0), "distinct"
    (expected distinct answers in ``n_distinct`` draws, sum_a 1 - (1 - p_a)^n), "pass@1",
    f"pass@{k_max}" (exact, 1 - (1 - p)^k), "coverage" (training groups: share with a correct
    answer sampled so far), and the maximum over the group of "max_logp_change"
    (``max_a |log pi_t - log pi_0|``). With ``tail_q`` it also records the common tail
    measures of the held-out problems (:func:`answer_tail_measures`, quality = mean pass@1
    of the solved training problems) in ``AnswerRun.tails``. Explained in :ref:`sec-sharpening-policy`.
    """
    _check("steps", isinstance(steps, (int, np.integer)) and steps >= 1, "an integer >= 1", steps)
    _check(
        "group_size",
        isinstance(group_size, (int, np.integer)) and group_size >= 2,
        "an integer >= 2 (GRPO needs a group to form a baseline)",
        group_size,
    )
    _check("lr", lr >= 0, ">= 0", lr)
    _check("eval_every", eval_every >= 1, "an integer >= 1", eval_every)
    _check("n_distinct", n_distinct >= 1, "an integer >= 1", n_distinct)
    _check("k_max", k_max >= 1, "an integer >= 1", k_max)
    if not isinstance(arm, Arm):
        raise ValueError(f"arm must be an Arm, got {type(arm).__name__}")

    device = task.features.device
    policy = AnswerPolicy(task, shared=arm.shared, frozen=arm.frozen)
    shared_params = [getattr(policy, n) for n in SHARED_PARAMETERS if getattr(policy, n).requires_grad]
    opt = Adam([policy.theta, *shared_params], lr=lr)  # torch.optim.Adam's arithmetic, without its import cost
    gen = torch.Generator(device=device).manual_seed(int(seed))

    S, P, K, G = task.n_seeds, task.n_problems, task.n_answers, group_size
    per_seed = {f: arm.scale(f, S) for f in ("ucb_c", "batch_c", "entropy_beta")}
    ucb_c, batch_c, entropy_beta = (
        None if v is None else torch.as_tensor(v.copy(), dtype=task.features.dtype, device=device).view(shape)
        for v, shape in zip(per_seed.values(), ((S, 1, 1), (S, 1, 1), (S,)))
    )
    train_np = np.flatnonzero(task.train)
    P_tr = len(train_np)
    dtype = task.features.dtype
    correct_tr = task.correct.to(dtype)[:, policy.train_idx]
    counts = torch.zeros(S, P_tr, K, dtype=dtype, device=device)
    ones = torch.ones(S, P_tr, G, dtype=dtype, device=device)
    first_found = np.full((S, P), -1, dtype=np.int64)

    groups = task.group
    correct_np = task.correct.cpu().numpy()
    records: list[tuple[int, str, str, np.ndarray]] = []
    tail_rows: list[pd.DataFrame] = []
    logp0_np = None
    ent0 = None

    def record(step: int, logp_np: np.ndarray) -> None:
        probs = np.exp(logp_np)
        ent = metrics.entropy(probs)
        p1 = (probs * correct_np).sum(-1)
        per_problem = {
            "entropy": ent,
            "entropy_change": ent - ent0,
            "distinct": metrics.expected_distinct(probs, n_distinct),
            "pass@1": p1,
            f"pass@{k_max}": exact_pass_at_k(p1, k_max),
            "coverage": (first_found >= 0).astype(float),
        }
        change = np.abs(logp_np - logp0_np).max(axis=-1)
        masks = {g: groups == g for g in GROUPS}
        masks["not yet solved"] = (groups == "unsolved")[None, :] & (first_found < 0)
        for k in ("solved", "unsolved"):
            masks[f"held-out {k}-kind"] = (groups == "held-out") & (task.kind == k)
        for g, mask in masks.items():
            for name, v in per_problem.items():
                if name == "coverage" and g.startswith("held-out"):
                    continue
                records.append((step, g, name, _masked_stat(v, mask, "mean")))
            records.append((step, g, "max_logp_change", _masked_stat(change, mask, "max")))
        if tail_q is not None:
            quality = _masked_stat(p1, groups == "solved", "mean")
            m = answer_tail_measures(logp_np, logp0_np, groups == "held-out", q=tail_q, n=n_distinct)
            tail_rows.append(pd.DataFrame({"replicate": np.arange(S), "step": step, **m, "quality": quality}))

    lp = None
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps:  # every problem's logits, for the record
            with torch.no_grad():
                lp = torch.log_softmax(policy(), dim=-1).cpu().numpy()
            if step == 0:
                logp0_np = lp
                ent0 = metrics.entropy(np.exp(logp0_np))
            record(step, lp)
        if step == steps:
            break
        logp_tr = torch.log_softmax(policy(train_only=True), dim=-1)
        with torch.no_grad():
            a = torch.multinomial(logp_tr.exp().reshape(-1, K), G, replacement=True, generator=gen).view(S, P_tr, G)
            r = correct_tr.gather(-1, a)
            hit = (r.amax(-1) > 0).cpu().numpy()
            sub = first_found[:, train_np]
            first_found[:, train_np] = np.where(hit & (sub < 0), step, sub)
            if ucb_c is not None:
                r = r + ucb_c * ucb_bonus(counts, a, 1.0, dtype=dtype)
            counts.scatter_add_(-1, a, ones)
            if batch_c is not None:
                r = r + batch_c * batch_repetition_penalty(a, 1.0, dtype=dtype)
            adv = group_advantages(r, normalize=normalize)
        loss = policy_gradient_loss(logp_tr.gather(-1, a), adv)
        if entropy_beta is not None:
            ent = -(logp_tr.exp() * logp_tr).sum(-1).mean(-1)
            loss = loss - entropy_beta * ent
        opt.zero_grad()
        loss.sum().backward()
        opt.step()

    history = (
        pd.DataFrame(
            {
                "arm": arm.name,
                "seed": np.tile(np.arange(S), len(records)),
                "step": np.repeat([r[0] for r in records], S),
                "group": np.repeat([r[1] for r in records], S),
                "metric": np.repeat([r[2] for r in records], S),
                "value": np.concatenate([r[3] for r in records]),
            }
        )
        .dropna(subset=["value"])
        .reset_index(drop=True)
    )

    never = (groups == "unsolved")[None, :] & (first_found < 0)
    never_change = _masked_stat(np.abs(lp - logp0_np).max(axis=-1), never, "max")
    inv_temp = policy.log_scale.detach().exp().reshape(S).cpu().numpy()
    tails_frame = pd.concat(tail_rows, ignore_index=True) if tail_rows else None
    return AnswerRun(arm, history, logp0_np, lp, first_found, never_change, inv_temp, tails_frame)


def answer_tail_measures(logp: np.ndarray, logp0: np.ndarray, mask: np.ndarray, *, q: float, n: int) -> dict:
    """The common tail measures (:data:`vanishing_tails.core.tails.COLUMNS` but ``quality``) of
    answer policies, per seed, averaged over the problems in ``mask`` [P].

    ``logp``, ``logp0`` [S, P, K]: current and base log-probabilities. The reference ("real")
    distribution of a problem is its base policy pi_0(. | x), which is also the start, so per
    problem (then averaged over the masked problems): ``support`` = sum_a 1 - (1 - pi_a)^n over
    the same for pi_0; ``q_tail_mass`` = pi(T_q) / pi_0(T_q) for T_q the base policy's
    least-probable answers holding at most ``q`` of its mass (:func:`vanishing_tails.core.metrics.tail_set`,
    vectorised); ``error_mass`` = 0 (the base policy gives every answer mass, so there is no
    error region); ``mode_share`` = max_a pi_a; ``kl_from_start`` = KL(pi || pi_0).
    Explained in :ref:`sec-sharpening-transfer`.
    """
    _check("q", 0.0 < q < 1.0, "in (0, 1)", q)
    p, p0 = np.exp(logp[:, mask]), np.exp(logp0[:, mask])
    order = np.argsort(p0, axis=-1, kind="stable")
    in_tail = np.cumsum(np.take_along_axis(p0, order, -1), -1) <= q + 1e-12
    tail = np.zeros(p0.shape, dtype=bool)
    np.put_along_axis(tail, order, in_tail, -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(p > 0, p * (logp[:, mask] - logp0[:, mask]), 0.0).sum(-1)
        per_problem = {
            "support": metrics.expected_distinct(p, n) / metrics.expected_distinct(p0, n),
            "q_tail_mass": (p * tail).sum(-1) / (p0 * tail).sum(-1),
            "error_mass": np.zeros(p.shape[:-1]),
            "mode_share": p.max(-1),
            "kl_from_start": np.maximum(kl, 0.0),
        }
    return {k: v.mean(-1) for k, v in per_problem.items()}


def sample_evaluation(
    logp: np.ndarray,
    correct: np.ndarray,
    *,
    n: int,
    ks: Sequence[int],
    seed: int,
) -> pd.DataFrame:
    """Draw ``n`` answers per problem and estimate pass@k (unbiased, Chen et al. 2021) and distinct answers.

    ``logp`` [S, P, K] log-probabilities, ``correct`` [S, P, K] bool. Returns a tidy frame
    with columns seed, problem, quantity ("pass@k" or "distinct"), k, estimate, theory:
    the unbiased estimator 1 - C(n-c, k)/C(n, k) (``metrics.pass_at_k``) against
    1 - (1 - p)^k, and the number of distinct answers among the n draws against
    sum_a 1 - (1 - p_a)^n (``metrics.expected_distinct``). Requires every k <= n.
    Explained in :ref:`sec-sharpening-passk`.
    """
    ks = [int(k) for k in ks]
    _check("n", isinstance(n, (int, np.integer)) and n >= 1, "an integer >= 1", n)
    if not ks or min(ks) < 1 or max(ks) > n:
        raise ValueError(f"every k must satisfy 1 <= k <= n = {n} (k cannot exceed the samples drawn); got ks = {ks}")
    probs = metrics.as_distribution(np.exp(np.asarray(logp, dtype=float)), name="logp")
    correct = np.asarray(correct, dtype=bool)
    S, P, _ = probs.shape
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, probs)  # [S, P, K]
    c = (counts * correct).sum(-1)
    p1 = (probs * correct).sum(-1)
    karr = np.asarray(ks)
    est = metrics.pass_at_k(n, c[..., None], karr)  # [S, P, len(ks)]
    exact = exact_pass_at_k(p1[..., None], karr)
    seeds, problems = np.meshgrid(np.arange(S), np.arange(P), indexing="ij")
    frame_k = pd.DataFrame(
        {
            "seed": np.repeat(seeds.reshape(-1), len(ks)),
            "problem": np.repeat(problems.reshape(-1), len(ks)),
            "quantity": "pass@k",
            "k": np.tile(karr, S * P),
            "estimate": est.reshape(-1),
            "theory": exact.reshape(-1),
        }
    )
    frame_d = pd.DataFrame(
        {
            "seed": seeds.reshape(-1),
            "problem": problems.reshape(-1),
            "quantity": "distinct",
            "k": n,
            "estimate": (counts > 0).sum(-1).reshape(-1).astype(float),
            "theory": metrics.expected_distinct(probs, n).reshape(-1),
        }
    )
    return pd.concat([frame_k, frame_d], ignore_index=True)


EXPERIMENT = "sharpening"
MECHANISM = "tilt"


def trajectory(
    *,
    n_seeds: int,
    n_solved: int,
    n_unsolved: int,
    n_held_out: int,
    n_answers: int,
    n_features: int,
    n_hidden: int,
    base_scale: float,
    p_unsolved: float,
    group_size: int,
    steps: int,
    lr: float,
    normalize: bool,
    ucb_c: float,
    batch_c: float,
    entropy_beta: float,
    eval_every: int,
    n_distinct: int,
    q: float,
    seed: int,
) -> pd.DataFrame:
    """The common tail measures of every arm, replicate (seed) and recorded step of chapter 3's
    GRPO toy: columns ``experiment, arm, replicate, step, mechanism`` and
    :data:`vanishing_tails.core.tails.COLUMNS`, one row per (arm, replicate, step).

    Arms (all mechanism "tilt": outcome-reward RL is a mode-seeking move): "outcome only"
    (plain GRPO, the baseline), the interventions "historical (UCB)" (``ucb_c``), "batch"
    (``batch_c``) and "entropy bonus" (``entropy_beta``), the "tabular control" (no shared
    parameters: no transfer) and "scale frozen" (shared parameters but the inverse
    temperature, the channel ablation). The tail columns are taken on the **held-out**
    problems, never trained on, against each problem's base policy as the reference
    (:func:`answer_tail_measures`: support = expected distinct answers in ``n_distinct``
    draws relative to the base, q_tail_mass = mass kept on the base's least-probable ``q``,
    error_mass = 0, mode_share, KL from the base); ``quality`` = mean pass@1 of the solved
    training problems. ``replicate`` is the independent task-and-policy index 0..n_seeds-1;
    task and sampling come from ``streams(seed)["trajectory", ...]``; ``lr = 0`` leaves
    every column at its start. Explained in :ref:`sec-sharpening-transfer`.
    """
    from vanishing_tails.core import tails
    from vanishing_tails.core.seeds import streams

    seeds = streams(seed)
    task = make_answer_task(
        n_seeds=n_seeds,
        n_solved=n_solved,
        n_unsolved=n_unsolved,
        n_held_out=n_held_out,
        n_answers=n_answers,
        n_features=n_features,
        n_hidden=n_hidden,
        base_scale=base_scale,
        p_unsolved=p_unsolved,
        seed=seeds["trajectory", "task"],
        device="cpu",
    )
    arms = [*standard_arms(ucb_c=ucb_c, batch_c=batch_c, entropy_beta=entropy_beta), scale_frozen_arm()]
    frames = []
    for arm in arms:
        run = train_answer_policy(
            task,
            arm,
            steps=steps,
            group_size=group_size,
            lr=lr,
            eval_every=eval_every,
            n_distinct=n_distinct,
            k_max=1,
            normalize=normalize,
            seed=seeds["trajectory", "train"],
            tail_q=q,
        )
        frames.append(run.tails.assign(arm=arm.name))
    frame = pd.concat(frames, ignore_index=True).assign(experiment=EXPERIMENT, mechanism=MECHANISM)
    return frame[["experiment", "arm", "replicate", "step", "mechanism", *tails.COLUMNS]]
