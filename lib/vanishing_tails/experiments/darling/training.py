"""GRPO on tabular policies under DARLING's reward and its rivals (chapter 8).

The policy of one (seed, prompt) is a softmax over the domain's whole output space,
``pi(y | x) = softmax(theta_x)_y``, started at the domain's prior (the "pretrained"
reference of :mod:`vanishing_tails.core.domains`). Every arm of every seed is one slice of
one logits tensor ``[arms * seeds, prompts, outputs]``, so a training step is a handful of
tensor operations for all of them:

1. draw ``n_groups`` groups of G outputs per (arm, seed, prompt);
2. score each sample: its quality q (1 when valid), its partition diversity d under the
   arm's partition (:func:`vanishing_tails.experiments.darling.partition.partition_diversity`)
   and the arm's reward — ``q`` (quality only), ``q * d`` (DARLING, multiplicative) or
   ``q + lam * d`` (additive);
3. advantages of the KL-shaped reward ``r - beta (log pi - log pi_ref)`` centred in each
   group *without* the standard-deviation normalisation, as DARLING does
   (:func:`vanishing_tails.core.rl.kl_shaped_advantages`; ``beta = 0``:
   :func:`vanishing_tails.core.rl.group_advantages` with ``normalize=False``);
4. one SGD step on the GRPO surrogate (:func:`vanishing_tails.core.rl.policy_gradient_loss`).

Every arm of a seed draws its groups from the same uniforms (common random numbers), so
arm differences are paired within a seed. Sizes and coefficients have no defaults here:
the chapter's spec (:mod:`vanishing_tails.experiments.darling.spec`) sets them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from vanishing_tails.core import tails
from vanishing_tails.core.domains import DOMAINS, Domain, make_domain
from vanishing_tails.core.rl import group_advantages, kl_shaped_advantages, policy_gradient_loss
from vanishing_tails.core.seeds import streams

from . import partition as pt
from . import theory

PARTITIONS = ("none", "oracle", "learned", "lexical")
EXPERIMENT = "darling"
MECHANISM = "tilt"


@dataclass(frozen=True)
class Arm:
    """One reward: which partition the diversity uses and how it meets quality.

    ``combine``: ``"quality"`` (r = q), ``"multiply"`` (r = q d, DARLING) or ``"add"``
    (r = q + lam d); ``partition``: ``"oracle"`` (the toy's semantic classes),
    ``"learned"`` (the pair classifier), ``"lexical"`` (n-gram overlap) or ``"none"``.
    Explained in :ref:`sec-darling-arms`.
    """

    name: str
    partition: str
    combine: str

    def __post_init__(self) -> None:
        if self.partition not in PARTITIONS or self.combine not in theory.COMBINES:
            raise ValueError(f"an arm needs partition in {PARTITIONS} and combine in {theory.COMBINES}; got {self!r}")
        if (self.partition == "none") != (self.combine == "quality"):
            raise ValueError(f"arm {self.name!r}: the quality-only arm, and only it, has no partition")


QUALITY = Arm("quality only", "none", "quality")
DARLING = Arm("DARLING (oracle)", "oracle", "multiply")
LEARNED = Arm("DARLING (learned)", "learned", "multiply")
ADDITIVE = Arm("additive (oracle)", "oracle", "add")
LEXICAL = Arm("lexical ×", "lexical", "multiply")
ARMS = (QUALITY, DARLING, LEARNED, ADDITIVE, LEXICAL)


def rewards(arm: Arm, quality: torch.Tensor, diversity: torch.Tensor | None, additive_weight: float) -> torch.Tensor:
    """The arm's reward from per-sample quality and diversity (both ``[..., G]``).

    Explained in :ref:`sec-darling-arms`.
    """
    if arm.combine == "quality":
        return quality
    if arm.combine == "multiply":
        return quality * diversity
    return quality + additive_weight * diversity


def relations_for(domain: Domain, *, views, classifiers, lexical_threshold: float) -> dict[str, torch.Tensor]:
    """The three partitions' pairwise relations over the whole output space: ``oracle`` and
    ``lexical`` ``[N, N]`` bool, ``learned`` ``[S, N, N]`` (one classifier per seed);
    ``views`` from :func:`vanishing_tails.experiments.darling.partition.output_views`.

    Explained in :ref:`sec-darling-partitions`.
    """
    words, overlap = views
    return {
        "oracle": pt.class_relation(domain),
        "learned": torch.stack([c.relation(words, overlap) for c in classifiers]),
        "lexical": pt.lexical_relation(overlap, lexical_threshold),
    }


def judges(domain: Domain, *, n_seeds: int, n_pairs: int, ridge: float, lexical_threshold: float,
           seed: int) -> tuple[list, dict[str, torch.Tensor]]:  # fmt: skip
    """One pair classifier per seed (each on its own labelled pairs, from a named stream of
    ``seed``) and the relations of :func:`relations_for`.

    Explained in :ref:`sec-darling-partitions`.
    """
    seeds = streams(seed)
    views = pt.output_views(domain)
    clfs = [pt.train_classifier(domain, n_pairs, seed=seeds["pairs", s], ridge=ridge, views=views)
            for s in range(n_seeds)]  # fmt: skip
    return clfs, relations_for(domain, views=views, classifiers=clfs, lexical_threshold=lexical_threshold)


def exact_measures(domain: Domain, probs: torch.Tensor, relations: dict, n_distinct: int) -> dict[str, torch.Tensor]:
    """Exact quantities of policies ``probs[..., prompt, output]``: one value per leading index and prompt.

    ``pass@1`` the valid mass; ``pass@n`` = 1 - (1 - pass@1)^n; ``distinct correct`` the
    expected number of distinct semantic classes among the valid outputs of ``n_distinct``
    draws, sum_c 1 - (1 - V_c)^n (V_c the valid mass of class c); ``semantic`` /
    ``lexical`` the chance that two draws are in different classes / are lexically
    different (the relation itself); ``gamed pairs`` the chance that two draws are
    lexically different but semantically the same.
    Explained in :ref:`sec-darling-arms`.
    """
    valid = torch.as_tensor(domain.valid, dtype=probs.dtype)
    onehot = torch.nn.functional.one_hot(torch.as_tensor(domain.semantic), len(domain.semantic_names)).to(probs.dtype)
    V = (probs * valid) @ onehot
    mass = probs @ onehot
    p32 = probs.to(torch.float32)

    def pair_chance(relation: torch.Tensor) -> torch.Tensor:
        return ((p32 @ relation.to(torch.float32)) * p32).sum(-1).to(probs.dtype)

    pass1 = V.sum(-1)
    return {
        "pass@1": pass1,
        "pass@n": 1 - (1 - pass1) ** n_distinct,
        "distinct correct": (1 - (1 - V) ** n_distinct).sum(-1),
        "semantic": 1 - (mass**2).sum(-1),
        "lexical": 1 - pair_chance(relations["lexical"]),
        "gamed pairs": pair_chance(relations["oracle"] & ~relations["lexical"]),
    }


def misjudged(probs: np.ndarray, learned: torch.Tensor, oracle: torch.Tensor) -> np.ndarray:
    """The chance that a seed's classifier misjudges a pair of draws from that seed's policy:
    ``probs[arm, seed, prompt, N]``, ``learned[seed, N, N]`` -> ``[arm, seed, prompt]``.

    Explained in :ref:`sec-darling-partitions`.
    """
    out = np.empty(probs.shape[:-1])
    for s in range(probs.shape[1]):
        wrong = (learned[s] != oracle).to(torch.float32).numpy()
        p = probs[:, s].astype(np.float32)
        out[:, s] = ((p @ wrong) * p).sum(-1)
    return out


def tail_reference(domain: Domain) -> np.ndarray:
    """The "real" distribution of each prompt for the common tail measures: the prior restricted
    to the valid outputs (invalid outputs are the error region), ``[P, N]``.

    Explained in :ref:`sec-darling-tails`.
    """
    ref = domain.prior * domain.valid
    return ref / ref.sum(-1, keepdims=True)


@dataclass
class Run:
    """One domain's training of every arm and seed: ``history`` (tidy: arm, seed, prompt,
    step, metric, value), ``tails`` (the common tail measures per arm, seed, step),
    ``probs[arm, seed, prompt, output]`` at the end, and the arms.

    Explained in :ref:`sec-darling-arms`.
    """

    domain: Domain
    arms: tuple[Arm, ...]
    history: pd.DataFrame
    tails: pd.DataFrame
    probs: np.ndarray


def train_arms(
    domain: Domain,
    relations: dict[str, torch.Tensor],
    arms,
    *,
    n_seeds: int,
    steps: int,
    group_size: int,
    n_groups: int,
    lr: float,
    beta: float,
    additive_weight: float,
    eval_every: int,
    n_distinct: int,
    q: float,
    null_partition: bool,
    seed: int,
) -> Run:
    """Train every arm on ``n_seeds`` independent copies of the tabular policy (module docstring).

    ``null_partition=True`` gives every sample its own class, so every diversity is 1 and
    every reward collapses to quality (plus a constant): the chapter's null configuration.
    The history has one row per (arm, seed, prompt, step, metric) of :func:`exact_measures`
    at step 0, every ``eval_every`` steps and the last step.
    Explained in :ref:`sec-darling-arms`.
    """
    arms = tuple(arms)
    A, S, P, N, G, R = len(arms), n_seeds, domain.n_prompts, domain.n_outputs, group_size, n_groups
    for name, value, low in (("n_seeds", S, 1), ("steps", steps, 0), ("group_size", G, 2), ("n_groups", R, 1),
                             ("eval_every", eval_every, 1)):  # fmt: skip
        if int(value) != value or value < low:
            raise ValueError(f"parameter {name!r} must be an integer >= {low}; got {value!r}")
    for name, value in (("lr", lr), ("beta", beta), ("additive_weight", additive_weight)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"parameter {name!r} must be a finite number >= 0; got {value!r}")
    log_ref = torch.log(torch.as_tensor(domain.prior, dtype=torch.float64))
    theta = log_ref.expand(A * S, P, N).clone().requires_grad_(True)
    valid = torch.as_tensor(domain.valid, dtype=torch.float64)
    prompt_ix = torch.arange(P).repeat_interleave(R)[None, :, None]  # the R groups of a prompt are adjacent
    gen = torch.Generator().manual_seed(int(seed))
    real, start = tail_reference(domain), domain.prior
    rows, tail_rows = [], []
    names = np.array([a.name for a in arms])

    def record(step: int) -> None:
        with torch.no_grad():
            probs = torch.softmax(theta, -1)
            m = exact_measures(domain, probs, relations, n_distinct)
        for metric, value in m.items():
            rows.append(pd.DataFrame({
                "arm": np.repeat(names, S * P), "seed": np.tile(np.repeat(np.arange(S), P), A),
                "prompt": np.tile(np.arange(P), A * S), "step": step, "metric": metric,
                "value": value.reshape(-1).numpy(),
            }))  # fmt: skip
        p = probs.numpy()
        per_prompt = [
            tails.categorical_measures(p[:, k], real[k], start[k], q=q, n=n_distinct, quality=m["pass@1"][:, k].numpy())
            for k in range(P)
        ]
        mean = sum(f.to_numpy() for f in per_prompt) / P
        tail_rows.append(pd.DataFrame(mean, columns=per_prompt[0].columns).assign(
            arm=np.repeat(names, S), replicate=np.tile(np.arange(S), A), step=step))  # fmt: skip

    record(0)
    for step in range(1, steps + 1):
        logp_all = torch.log_softmax(theta, -1)
        with torch.no_grad():
            u = torch.rand((S, P, R * G), generator=gen, dtype=torch.float64).repeat(A, 1, 1)
            cdf = torch.cumsum(torch.exp(logp_all), -1)
            y = torch.searchsorted(cdf, u * cdf[..., -1:]).clamp_max(N - 1).reshape(A * S, P * R, G)
            quality = valid[prompt_ix, y]
            r = torch.empty_like(quality)
            for a, arm in enumerate(arms):
                rows_a = slice(a * S, (a + 1) * S)
                d = None
                if arm.partition != "none":
                    if null_partition:
                        d = torch.ones_like(quality[rows_a])
                    else:
                        same = pt.group_relation(relations[arm.partition], y[rows_a])  # [S, P R, G, G]
                        d = pt.partition_diversity(same, transitive=arm.partition == "oracle")
                r[rows_a] = rewards(arm, quality[rows_a], d, additive_weight)
        logp = logp_all.gather(-1, y.reshape(A * S, P, R * G)).reshape(A * S, P * R, G)
        if beta > 0:
            adv, _ = kl_shaped_advantages(logp, log_ref[prompt_ix, y], r, beta)
        else:
            adv = group_advantages(r, normalize=False)
        loss = policy_gradient_loss(logp, adv).sum() * P  # per prompt: the mean over its R groups
        (grad,) = torch.autograd.grad(loss, theta)
        with torch.no_grad():
            theta -= lr * grad
        if step % eval_every == 0 or step == steps:
            record(step)
    with torch.no_grad():
        probs = torch.softmax(theta, -1).reshape(A, S, P, N).numpy()
    tails_frame = pd.concat(tail_rows, ignore_index=True).assign(experiment=EXPERIMENT, mechanism=MECHANISM)
    return Run(domain, arms, pd.concat(rows, ignore_index=True), tails_frame, probs)


def mean_field(domain: Domain, relations: dict, arm: Arm, *, steps: int, lr: float, beta: float, group_size: int,
               additive_weight: float, eval_every: int, n_distinct: int) -> pd.DataFrame:  # fmt: skip
    """The expected dynamics: ``theta <- theta + lr * E[update]`` (:func:`theory.expected_update`)
    from the prior, for an arm with the oracle partition (or none): the infinite-seed average
    the GRPO runs would follow if their noise did not matter. Tidy frame like a run's history
    (prompt, step, metric, value).
    Explained in :ref:`sec-darling-theory`.
    """
    if arm.partition not in ("none", "oracle"):
        raise ValueError(f"the mean field is derived for the oracle partition only; got arm {arm.name!r}")
    ref = domain.prior
    quality = domain.valid.astype(float)
    theta = np.log(ref).copy()
    rows = []
    for step in range(steps + 1):
        pi = np.exp(theta - theta.max(-1, keepdims=True))
        pi /= pi.sum(-1, keepdims=True)
        if step % eval_every == 0 or step == steps:
            m = exact_measures(domain, torch.as_tensor(pi), relations, n_distinct)
            rows += [pd.DataFrame({"prompt": np.arange(domain.n_prompts), "step": step, "metric": k,
                                   "value": v.numpy()}) for k, v in m.items()]  # fmt: skip
        if step < steps:
            theta += lr * theory.expected_update(
                pi, ref, quality, domain.semantic, combine=arm.combine, group_size=group_size,
                additive_weight=additive_weight, beta=beta,
            )  # fmt: skip
    return pd.concat(rows, ignore_index=True).assign(arm=arm.name)


def run_experiment(
    *,
    n_seeds: int,
    n_prompts: int,
    valid_share: float,
    group_size: int,
    steps: int,
    lr: float,
    beta: float,
    additive_weight: float,
    lexical_threshold: float,
    n_pairs: int,
    ridge: float,
    n_distinct: int,
    eval_every: int,
    q: float,
    oracle_beta: float,
    oracle_lr: float,
    oracle_steps: int,
    oracle_groups: int,
    null_partition: bool,
    seed: int,
    domains=DOMAINS,
    arms=ARMS,
) -> dict:
    """The whole chapter's experiment, per domain: a pair classifier, the five arms trained at
    ``beta`` (one group of G per prompt and step, as DARLING samples), their mean-field
    trajectories, and the oracle runs — quality only and DARLING (oracle partition) trained at
    ``oracle_beta`` on the code domain, with their fixed points.

    Returns ``{"domains", "classifiers", "relations", "runs", "mean_field", "oracle",
    "fixed_points"}``; every random stream is a named stream of ``seed``.
    Explained in :ref:`sec-darling-arms`.
    """
    seeds = streams(seed)
    out = {k: {} for k in ("domains", "classifiers", "relations", "runs", "mean_field", "oracle", "fixed_points")}
    common = dict(group_size=group_size, additive_weight=additive_weight, n_distinct=n_distinct)
    for name in domains:
        dom = make_domain(name, n_prompts, valid_share)
        clfs, rel = judges(dom, n_seeds=n_seeds, n_pairs=n_pairs, ridge=ridge, lexical_threshold=lexical_threshold,
                           seed=seeds["classifiers", name])  # fmt: skip
        out["domains"][name], out["classifiers"][name], out["relations"][name] = dom, clfs, rel
        out["runs"][name] = train_arms(
            dom, rel, arms, n_seeds=n_seeds, steps=steps, n_groups=1, lr=lr, beta=beta, eval_every=eval_every,
            q=q, null_partition=null_partition, seed=seeds["train", name], **common,
        )  # fmt: skip
        theory_arms = [a for a in arms if a.partition in ("none", "oracle")]
        out["mean_field"][name] = pd.concat([
            mean_field(dom, rel, QUALITY if null_partition else a, steps=steps, lr=lr, beta=beta,
                       eval_every=eval_every, **common).assign(arm=a.name)
            for a in theory_arms
        ], ignore_index=True)  # fmt: skip
    dom, rel = out["domains"]["code"], out["relations"]["code"]  # the oracle runs use no learned partition
    out["oracle"] = train_arms(
        dom, rel, (QUALITY, DARLING), n_seeds=n_seeds, steps=oracle_steps, n_groups=oracle_groups, lr=oracle_lr,
        beta=oracle_beta, eval_every=oracle_steps, q=q, null_partition=null_partition, seed=seeds["oracle"], **common,
    )  # fmt: skip
    quality = dom.valid.astype(float)
    for arm in (QUALITY, DARLING):
        combine = "quality" if null_partition else arm.combine
        out["fixed_points"][arm.name] = theory.fixed_point(
            dom.prior, quality, dom.semantic, combine=combine, group_size=group_size,
            additive_weight=additive_weight, beta=oracle_beta,
        )  # fmt: skip
    return out


def trajectory(
    *,
    n_seeds: int,
    n_prompts: int,
    valid_share: float,
    group_size: int,
    steps: int,
    lr: float,
    beta: float,
    additive_weight: float,
    lexical_threshold: float,
    n_pairs: int,
    ridge: float,
    n_distinct: int,
    eval_every: int,
    q: float,
    null_partition: bool,
    seed: int,
) -> pd.DataFrame:
    """The common tail measures of every arm, replicate (seed) and recorded step, both domains:
    the columns ``experiment, arm, replicate, step, mechanism`` and
    :data:`vanishing_tails.core.tails.COLUMNS` (``quality`` is pass@1; the "real" distribution
    is the prior restricted to valid outputs, :func:`tail_reference`; means over prompts), with
    the arm named ``<domain>: <arm>``. Sizes are explicit (the spec's presets).
    Explained in :ref:`sec-darling-tails`.
    """
    seeds = streams(seed)
    frames = []
    for name in DOMAINS:
        dom = make_domain(name, n_prompts, valid_share)
        _, rel = judges(dom, n_seeds=n_seeds, n_pairs=n_pairs, ridge=ridge, lexical_threshold=lexical_threshold,
                        seed=seeds["classifiers", name])  # fmt: skip
        run = train_arms(
            dom, rel, ARMS, n_seeds=n_seeds, steps=steps, group_size=group_size, n_groups=1, lr=lr, beta=beta,
            additive_weight=additive_weight, eval_every=eval_every, n_distinct=n_distinct, q=q,
            null_partition=null_partition, seed=seeds["train", name],
        )  # fmt: skip
        frames.append(run.tails.assign(arm=name + ": " + run.tails["arm"]))
    frame = pd.concat(frames, ignore_index=True)
    return frame[["experiment", "arm", "replicate", "step", "mechanism", *tails.COLUMNS]]
