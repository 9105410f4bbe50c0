"""Samplers at an equal budget, the properties of what they produce, and the coverage oracle.

A sampler fills exactly ``budget`` slots (items). It is four knobs, after Simula
(Davidson et al. 2026):

``global_sampler``
    ``naive``: each slot's leaf is drawn from the generator's popularity;
    ``taxonomy``: the leaves are walked round-robin through the tree
    (:func:`vanishing_tails.experiments.coverage.taxonomy.tree_walk`), one leaf at a time,
    optionally restricted to the leaves a taxonomy knows (``allowed``).
``candidates``
    local diversity: the generator proposes ``candidates`` queries for the slot's leaf and the
    one farthest (in its smallest distance) from the queries already kept for that leaf is
    kept (1 = the first proposal).
``complexify``
    the share of slots whose query is hardened: its margin ``w . u`` is replaced by
    ``hardening * zeta``, ``zeta ~ N(0, 1)`` — the query is moved next to the rule's boundary, on
    either side, so that its answer hinges on a small margin.
``critic_rounds``
    a critic — the same model as the teacher, with its rule and its slips — re-answers each
    query and rejects the item when it disagrees with the teacher's answer (it catches slips,
    never the teacher's blind spots); a rejected slot is
    generated again (a fresh leaf for ``naive``, the same leaf otherwise), up to
    ``critic_rounds`` times; what is left after the last round is kept, so the budget stays
    exact. 0 = no critic.

Every random part draws from a stream of its own, derived from the call's ``seed``, so two
samplers that differ in one knob share everything else (paired comparisons).

The **coverage oracle**: ``budget`` i.i.d. draws from ``p`` cover
``E[#leaves] = sum_l 1 - (1 - p_l)^N`` leaves (:func:`expected_coverage`, computed for all
``N`` at once); the walk covers ``min(N, L)`` exactly.
Explained in :ref:`sec-coverage-samplers`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from .generator import World, complexity, teacher_answers
from .taxonomy import tree_walk

__all__ = [
    "GLOBAL_SAMPLERS",
    "Arm",
    "Dataset",
    "standard_arms",
    "draw_leaves",
    "sample_dataset",
    "properties",
    "PROPERTIES",
    "expected_coverage",
    "coverage_curve",
]

GLOBAL_SAMPLERS = ("naive", "taxonomy")
PROPERTIES = ("coverage", "diversity", "complexity", "quality")


@dataclass(frozen=True)
class Arm:
    """One sampler: a name and its four knobs (see the module docstring).

    Explained in :ref:`sec-coverage-samplers`.
    """

    name: str
    global_sampler: str
    candidates: int
    complexify: float
    critic_rounds: int

    def __post_init__(self) -> None:
        if self.global_sampler not in GLOBAL_SAMPLERS:
            raise ValueError(f"global_sampler must be one of {GLOBAL_SAMPLERS}; got {self.global_sampler!r}")
        if self.candidates < 1:
            raise ValueError(f"candidates must be >= 1; got {self.candidates!r}")
        if not 0.0 <= self.complexify <= 1.0:
            raise ValueError(f"complexify must lie in [0, 1]; got {self.complexify!r}")
        if self.critic_rounds < 0:
            raise ValueError(f"critic_rounds must be >= 0; got {self.critic_rounds!r}")


def standard_arms(candidates: int, complexify: float, critic_rounds: int) -> dict[str, Arm]:
    """The chapter's samplers, by name: naive sampling, the taxonomy walk, the walk with one
    refinement at a time, and the refinements added one after another (the Simula-like pipeline).

    Explained in :ref:`sec-coverage-samplers`.
    """
    arms = [
        Arm("naive", "naive", 1, 0.0, 0),
        Arm("taxonomy", "taxonomy", 1, 0.0, 0),
        Arm("taxonomy + local diversity", "taxonomy", candidates, 0.0, 0),
        Arm("taxonomy + complexify", "taxonomy", 1, complexify, 0),
        Arm("taxonomy + critic", "taxonomy", 1, 0.0, critic_rounds),
        Arm("taxonomy + local + complexify", "taxonomy", candidates, complexify, 0),
        Arm("taxonomy + local + complexify + critic", "taxonomy", candidates, complexify, critic_rounds),
    ]
    return {a.name: a for a in arms}


@dataclass(frozen=True)
class Dataset:
    """What a sampler produced for ``rows`` replicates: ``leaf`` ``[rows, N]``, query ``u``
    ``[rows, N, d]``, the teacher's answer ``y`` in {-1, +1}, whether it is ``correct``, the true
    ``margin`` ``w . u``, whether the query was ``hardened``, and the generator ``calls``
    (candidate queries generated, regenerations included) per replicate.

    Explained in :ref:`sec-coverage-samplers`.
    """

    leaf: np.ndarray
    u: np.ndarray
    y: np.ndarray
    correct: np.ndarray
    margin: np.ndarray
    hardened: np.ndarray
    calls: np.ndarray

    @property
    def budget(self) -> int:
        return int(self.leaf.shape[1])


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def draw_leaves(p: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` i.i.d. leaves per row of ``p`` ``[rows, L]`` (inverse CDF); a leaf with ``p = 0`` is
    never drawn.

    Explained in :ref:`sec-coverage-samplers`.
    """
    p = np.asarray(p, dtype=float)
    cdf = np.cumsum(p, axis=1)
    cdf /= cdf[:, -1:]
    u = rng.random((p.shape[0], n))
    out = np.empty((p.shape[0], n), dtype=np.int64)
    for r in range(p.shape[0]):
        out[r] = np.searchsorted(cdf[r], u[r], side="right")
    return np.minimum(out, p.shape[1] - 1)


def _walk_leaves(world: World, budget: int, allowed: np.ndarray | None, seed: int) -> np.ndarray:
    order = tree_walk(world.tree, world.rows, seed=seed)
    if allowed is None:
        return np.tile(order, (1, math.ceil(budget / world.tree.n_leaves)))[:, :budget]
    out = np.empty((world.rows, budget), dtype=np.int64)
    for r in range(world.rows):
        known = order[r][allowed[r][order[r]]]
        if known.size == 0:
            raise ValueError(f"row {r}: the taxonomy knows no leaf")
        out[r] = np.resize(known, budget)
    return out


def _candidates(world: World, leaf: np.ndarray, k: int, seed: int, key: tuple[int, ...]) -> np.ndarray:
    rows = np.arange(world.rows)[:, None]
    centre = world.prototypes[rows, leaf]  # [rows, N, d]
    return np.stack(
        [centre + world.local_spread * _rng(seed, *key, j).standard_normal(centre.shape) for j in range(k)],
        axis=2,
    )


def _farthest(cands: np.ndarray, others: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Index of the candidate with the largest smallest distance to the valid ``others``.

    ``cands`` [n, k, d], ``others`` [n, M, d], ``valid`` [n, M]; with no valid other, 0.
    """
    d2 = ((cands[:, :, None, :] - others[:, None, :, :]) ** 2).sum(-1)  # [n, k, M]
    d2 = np.where(valid[:, None, :], d2, np.inf)
    best = np.argmax(d2.min(-1), axis=1)
    return np.where(valid.any(1), best, 0)


def _select_distinct(cands: np.ndarray, leaf: np.ndarray, n_leaves: int) -> np.ndarray:
    """Greedy local diversity over a whole dataset: slots are visited in order within each
    (row, leaf) group, each keeping its candidate farthest from the group's earlier picks."""
    rows, n, k, d = cands.shape
    if k == 1:
        return cands[:, :, 0]
    group = (np.arange(rows)[:, None] * n_leaves + leaf).ravel()
    order = np.argsort(group, kind="stable")
    g_sorted = group[order]
    first = np.searchsorted(g_sorted, g_sorted, side="left")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size) - first
    flat = cands.reshape(rows * n, k, d)
    max_rank = int(rank.max()) + 1
    kept = np.zeros((rows * n_leaves, max_rank, d))
    chosen = np.empty((rows * n, d))
    for r in range(max_rank):
        idx = np.flatnonzero(rank == r)
        g = group[idx]
        if r == 0:
            pick = flat[idx, 0]
        else:
            best = _farthest(flat[idx], kept[g, :r], np.ones((idx.size, r), dtype=bool))
            pick = flat[idx, best]
        kept[g, r] = pick
        chosen[idx] = pick
    return chosen.reshape(rows, n, d)


def _harden(u: np.ndarray, w: np.ndarray, mask: np.ndarray, hardening: float, zeta: np.ndarray) -> np.ndarray:
    """Replace the margin ``w . u`` of the masked queries by ``hardening * zeta``, ``zeta ~ N(0, 1)``."""
    m = np.einsum("...d,...d->...", u, w)
    return u + (mask * (hardening * zeta - m))[..., None] * w


def sample_dataset(
    world: World, arm: Arm, budget: int, *, hardening: float, seed: int, allowed: np.ndarray | None = None
) -> Dataset:
    """Fill exactly ``budget`` slots per replicate with the sampler ``arm`` (module docstring).

    ``allowed`` ``[rows, L]`` restricts the taxonomy walk to the leaves a taxonomy knows (for
    one recovered from the generator, :func:`vanishing_tails.experiments.coverage.seedless.recover_taxonomy`);
    ``None`` walks the true tree. ``hardening`` in (0, 1] is the share of its margin a
    hardened query keeps.
    Explained in :ref:`sec-coverage-samplers`.
    """
    if budget < 1:
        raise ValueError(f"budget must be >= 1; got {budget!r}")
    if not 0.0 < hardening <= 1.0:
        raise ValueError(f"hardening must lie in (0, 1]; got {hardening!r}")
    rows, n_leaves, k = world.rows, world.tree.n_leaves, arm.candidates
    ridx = np.arange(rows)[:, None]
    if arm.global_sampler == "naive":
        leaf = draw_leaves(world.p_gen, budget, _rng(seed, 0))
    else:
        leaf = _walk_leaves(world, budget, allowed, int(_rng(seed, 0).integers(2**62)))
    u = _select_distinct(_candidates(world, leaf, k, seed, (1,)), leaf, n_leaves)
    hardened = _rng(seed, 2).random((rows, budget)) < arm.complexify
    w = world.rules[ridx, leaf]
    u = _harden(u, w, hardened, hardening, _rng(seed, 2, 1).standard_normal((rows, budget)))
    seen = np.einsum("rnd,rnd->rn", u, world.teacher_rules[ridx, leaf])  # the margin as the teacher sees it
    y = teacher_answers(seen, world.slip_rate, _rng(seed, 3).random((rows, budget)))
    calls = np.full(rows, budget * k, dtype=np.int64)
    fresh = np.ones((rows, budget), dtype=bool)
    for rnd in range(arm.critic_rounds):
        judged = teacher_answers(seen, world.slip_rate, _rng(seed, 4, rnd).random((rows, budget)))
        redo = fresh & (judged != y)
        if not redo.any():
            break
        # regenerate the rejected slots: a fresh leaf (naive) or the same one, fresh candidates
        if arm.global_sampler == "naive":
            leaf = np.where(redo, draw_leaves(world.p_gen, budget, _rng(seed, 5, rnd, 0)), leaf)
        cands = _candidates(world, leaf, k, seed, (5, rnd, 1))
        for r in range(rows):
            s = np.flatnonzero(redo[r])
            if k == 1:
                u[r, s] = cands[r, s, 0]
                continue
            valid = (leaf[r][None, :] == leaf[r, s][:, None]) & ~redo[r][None, :]
            best = _farthest(cands[r, s], np.broadcast_to(u[r], (s.size, *u[r].shape)), valid)
            u[r, s] = cands[r, s, best]
        new_hard = _rng(seed, 5, rnd, 2).random((rows, budget)) < arm.complexify
        hardened = np.where(redo, new_hard, hardened)
        w = world.rules[ridx, leaf]
        zeta = _rng(seed, 5, rnd, 2, 1).standard_normal((rows, budget))
        u = np.where(redo[..., None], _harden(u, w, new_hard, hardening, zeta), u)
        seen = np.einsum("rnd,rnd->rn", u, world.teacher_rules[ridx, leaf])
        y = np.where(redo, teacher_answers(seen, world.slip_rate, _rng(seed, 5, rnd, 3).random((rows, budget))), y)
        calls += redo.sum(1) * k
        fresh = redo
    margin = np.einsum("rnd,rnd->rn", u, world.rules[ridx, leaf])
    correct = y == np.where(margin >= 0, 1, -1)
    return Dataset(leaf, u, y, correct, margin, hardened, calls)


def _real_pair_distance(dim: int) -> float:
    """E|u - u'| for independent u, u' ~ N(0, I_dim): 2 Gamma((d+1)/2) / Gamma(d/2)."""
    return float(2.0 * np.exp(special.gammaln((dim + 1) / 2) - special.gammaln(dim / 2)))


def properties(world: World, data: Dataset) -> pd.DataFrame:
    """The four properties of a dataset, one row per replicate, each in [0, 1]-like units:

    * ``coverage`` — the share of the taxonomy's leaves with at least one item;
    * ``diversity`` — local diversity: the mean distance between two queries of the same
      leaf, relative to two real queries (1 = as spread as real queries), averaged over the
      leaves with at least two items;
    * ``complexity`` — the mean complexity ``c = 2 Phi(-|w . u|)`` of the items (1/2 for real queries);
    * ``quality`` — the share of items whose answer is correct.

    Explained in :ref:`sec-coverage-samplers`.
    """
    rows, n = data.leaf.shape
    n_leaves = world.tree.n_leaves
    cov = np.array([np.unique(data.leaf[r]).size for r in range(rows)]) / n_leaves
    div = np.full(rows, np.nan)
    ref = _real_pair_distance(world.dim)
    for r in range(rows):
        u = data.u[r]
        sq = (u**2).sum(1)
        dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * u @ u.T, 0.0))
        same = data.leaf[r][:, None] == data.leaf[r][None, :]
        np.fill_diagonal(same, False)
        li, _ = np.nonzero(same)
        total = np.bincount(data.leaf[r][li], weights=dist[same], minlength=n_leaves)
        pairs = np.bincount(data.leaf[r][li], minlength=n_leaves)
        ok = pairs > 0
        if ok.any():
            div[r] = float(np.mean(total[ok] / pairs[ok])) / ref
    return pd.DataFrame(
        {
            "replicate": np.arange(rows),
            "coverage": cov,
            "diversity": div,
            "complexity": complexity(data.margin).mean(1),
            "quality": data.correct.mean(1),
        }
    )


def expected_coverage(p: np.ndarray, n_values: np.ndarray) -> np.ndarray:
    """Expected number of leaves covered by ``N`` i.i.d. draws from ``p``, for every ``N`` at once.

    ``E[#covered] = sum_l 1 - (1 - p_l)^N``; ``p`` ``[..., L]``, ``n_values`` ``[K]``; returns
    ``[..., K]``. One broadcast ``exp(N log(1 - p))``, no loop over ``N``.
    Explained in :ref:`sec-coverage-oracle`.
    """
    p = np.asarray(p, dtype=float)
    n = np.asarray(n_values, dtype=float)
    with np.errstate(divide="ignore"):
        log_miss = np.log1p(-np.minimum(p, 1.0))  # [..., L]
    return -np.expm1(n[:, None] * log_miss[..., None, :]).sum(-1)


def coverage_curve(leaves: np.ndarray, n_leaves: int, n_values: np.ndarray) -> np.ndarray:
    """Leaves covered by the first ``N`` items of each row of ``leaves`` ``[rows, M]``, for
    every ``N`` in ``n_values`` at once (``N <= M``): ``[rows, K]``.

    Each leaf's first occurrence is found once (an unbuffered minimum scatter), and
    ``covered(N) = #{l : first_l < N}`` for all ``N`` by one sorted search per row.
    Explained in :ref:`sec-coverage-oracle`.
    """
    leaves = np.asarray(leaves)
    rows, m = leaves.shape
    n = np.asarray(n_values)
    if n.size and (n.max() > m or n.min() < 0):
        raise ValueError(f"n_values must lie in [0, {m}]; got {n.min()}..{n.max()}")
    first = np.full((rows, n_leaves), m, dtype=np.int64)
    np.minimum.at(first, (np.repeat(np.arange(rows), m), leaves.ravel()), np.tile(np.arange(m), rows))
    first.sort(axis=1)
    return np.stack([np.searchsorted(first[i], n, side="left") for i in range(rows)])
