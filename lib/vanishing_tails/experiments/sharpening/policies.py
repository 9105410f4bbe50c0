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
]

GROUPS = ("solved", "unsolved", "held-out")


def _check(name: str, ok: bool, allowed: str, value) -> None:
    if not ok:
        raise ValueError(f"{name} must be {allowed}; got {value!r}")


@dataclass(frozen=True, kw_only=True)
class Arm:
    """One training recipe: outcome reward plus optional exploration terms (0 switches one off).

    ``ucb_c``: historical bonus c * min(1, 1/sqrt(N(x, a))) on the reward;
    ``batch_c``: batch penalty -(batch_c / G) * #{j != i: a_j = a_i} on the reward;
    ``entropy_beta``: loss term -beta * mean_x H(pi(. | x)) over training problems;
    ``shared=False``: the tabular control (only the per-problem logits are trained).
    The scales have no defaults: the chapter's spec sets them (:func:`standard_arms`).
    Explained in :ref:`sec-sharpening-bonuses`.
    """

    name: str
    ucb_c: float
    batch_c: float
    entropy_beta: float
    shared: bool = True

    def __post_init__(self) -> None:
        for field in ("ucb_c", "batch_c", "entropy_beta"):
            v = getattr(self, field)
            _check(
                field,
                isinstance(v, (int, float)) and math.isfinite(v) and v >= 0,
                "a finite number >= 0 (a bonus or penalty scale cannot be negative)",
                v,
            )


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


class AnswerPolicy(nn.Module):
    """pi(a | x) = softmax(exp(s) <phi_x W, e_a>/sqrt(h) + b_a + theta_{x,a}), batched over seeds.

    ``theta`` exists for the training problems only (a held-out problem never gets a
    gradient, so its theta would stay 0): ``forward()`` gives the logits of every problem,
    ``forward(train_only=True)`` those of the training problems, in ``task.train`` order,
    which is all a training step needs. ``shared=False`` freezes W, E, s and b at the
    base values (the tabular control): then only ``theta`` learns, and a problem whose
    group rewards are always equal gets an exactly zero gradient and keeps its base
    logits bit for bit. Explained in :ref:`sec-sharpening-policy`.
    """

    def __init__(self, task: AnswerTask, *, shared: bool = True):
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
        for p in (self.W, self.E, self.log_scale, self.bias):
            p.requires_grad_(shared)
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
    tabular control). Explained in :ref:`sec-sharpening-transfer`.
    """

    arm: Arm
    history: pd.DataFrame
    logp0: np.ndarray
    logp: np.ndarray
    first_found: np.ndarray
    never_found_change: np.ndarray
    inverse_temperature: np.ndarray

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
) -> AnswerRun:
    """Train the answer policy of every seed with GRPO-style outcome reward, batched.

    Per step, for every training problem x of every seed: draw G = ``group_size`` answers
    from pi(. | x); reward r_i = 1[a_i correct] (+ UCB bonus on the counts before this
    batch, + batch penalty); advantages A = group_advantages(r) (group-mean baseline, std-
    normalised unless ``normalize=False``); loss = -mean A_i log pi(a_i | x) - beta mean_x H;
    one Adam step (lr ``lr``, no weight decay; ``lr = 0`` leaves every policy at the base
    bit for bit, the chapter's null configuration). A group whose rewards are all equal has
    A = 0 exactly and contributes no gradient.

    Every ``eval_every`` steps (and at the last) it records, per seed, the mean over the
    problems of each group — "solved", "unsolved" (training problems of each kind),
    "held-out", and "not yet solved" (unsolved-kind training problems with no correct answer
    sampled so far) — of: "entropy" (nats), "entropy_change" (H_t - H_0), "distinct"
    (expected distinct answers in ``n_distinct`` draws, sum_a 1 - (1 - p_a)^n), "pass@1",
    f"pass@{k_max}" (exact, 1 - (1 - p)^k), "coverage" (training groups: share with a correct
    answer sampled so far), and the maximum over the group of "max_logp_change"
    (``max_a |log pi_t - log pi_0|``). Explained in :ref:`sec-sharpening-policy`.
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
    policy = AnswerPolicy(task, shared=arm.shared)
    shared_params = [p for p in (policy.W, policy.E, policy.log_scale, policy.bias) if p.requires_grad]
    opt = torch.optim.Adam([policy.theta, *shared_params], lr=lr)
    gen = torch.Generator(device=device).manual_seed(int(seed))

    S, P, K, G = task.n_seeds, task.n_problems, task.n_answers, group_size
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
        for g, mask in masks.items():
            for name, v in per_problem.items():
                if name == "coverage" and g == "held-out":
                    continue
                records.append((step, g, name, _masked_stat(v, mask, "mean")))
            records.append((step, g, "max_logp_change", _masked_stat(change, mask, "max")))

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
            if arm.ucb_c > 0:
                r = r + ucb_bonus(counts, a, arm.ucb_c, dtype=dtype)
            counts.scatter_add_(-1, a, ones)
            if arm.batch_c > 0:
                r = r + batch_repetition_penalty(a, arm.batch_c, dtype=dtype)
            adv = group_advantages(r, normalize=normalize)
        loss = policy_gradient_loss(logp_tr.gather(-1, a), adv)
        if arm.entropy_beta > 0:
            ent = -(logp_tr.exp() * logp_tr).sum(-1).mean(-1)
            loss = loss - arm.entropy_beta * ent
        opt.zero_grad(set_to_none=True)
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
    return AnswerRun(arm, history, logp0_np, lp, first_found, never_change, inv_temp)


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
