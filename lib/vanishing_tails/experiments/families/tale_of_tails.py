"""Cut tails stop scaling: the Hutter memoriser of Dohmatob et al. 2024 ("A Tale of Tails"): chapter 2, section 4.

The data are items i = 1..N with Zipf probabilities p_i proportional to i^(-beta)
(:func:`zipf`). The learner is Hutter's (2021) memoriser: it answers item i correctly
iff it has seen i at least once in its T training samples. If the training samples
are i.i.d. from q while the test distribution is p, the expected test error is exactly

    E[err_T] = sum_i p_i (1 - q_i)^T                                        (1)

(:func:`expected_error`). With clean data (q = p) and beta > 1 this falls like
T^(-(1 - 1/beta)) (the scaling law). If an earlier model generated the training data
and cut the tail at rank k — q = p restricted to i <= k and renormalised
(:func:`cut_tail`) — every item beyond k is unseeable and the error plateaus at the cut
tail's mass sum_{i>k} p_i: more data stops helping (Dohmatob et al. 2024).
Mixing a fraction pi of clean data, q = pi p + (1 - pi) q_cut (:func:`mix_clean`),
restores the fall, with T effectively replaced by pi T for the tail.

:func:`simulate_error` checks (1) by simulation (counts grow by multinomial increments
along the T grid, vectorised over chains). :func:`hutter_chains` runs the memoriser
through the book's recursive loop (:func:`vanishing_tails.core.collapse.recursive_fit`):
each generation's model generates from its own empirical distribution with the tail
cut at its ``k`` most frequent items, and the next memoriser trains on that.

Explained in :ref:`sec-families-tale`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vanishing_tails.core import collapse


def zipf(n_items: int, beta: float) -> np.ndarray:
    """p_i = i^(-beta) / sum_{j<=N} j^(-beta), i = 1..N (rank order: p is decreasing).

    Explained in :ref:`sec-families-tale`.
    """
    collapse._check_sizes(n_items=(n_items, 2))
    if not beta > 1:
        raise ValueError(f"beta must be > 1 (a normalisable Zipf tail); got {beta!r}")
    w = np.arange(1, n_items + 1, dtype=float) ** -float(beta)
    return w / w.sum()


def cut_tail(p: np.ndarray, k: int) -> np.ndarray:
    """The tail-cut distribution q_i = p_i 1{i <= k} / sum_{j<=k} p_j (p in rank order).

    Explained in :ref:`sec-families-tale`.
    """
    p = np.asarray(p, dtype=float)
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= p.size:
        raise ValueError(f"k must be an integer in [1, {p.size}]; got {k!r}")
    q = np.zeros_like(p)
    q[:k] = p[:k] / p[:k].sum()
    return q


def mix_clean(q: np.ndarray, p: np.ndarray, pi: float) -> np.ndarray:
    """pi p + (1 - pi) q: a fraction ``pi`` of clean data mixed into the training distribution.

    Explained in :ref:`sec-families-tale`.
    """
    if not 0.0 <= pi <= 1.0:
        raise ValueError(f"pi must lie in [0, 1]; got {pi!r}")
    return pi * np.asarray(p, dtype=float) + (1 - pi) * np.asarray(q, dtype=float)


def expected_error(p: np.ndarray, q: np.ndarray, T) -> np.ndarray:
    """E[err_T] = sum_i p_i (1 - q_i)^T, exactly, for every T in ``T`` (same shape as ``T``).

    Explained in :ref:`sec-families-tale`.
    """
    T = np.asarray(T, dtype=float)
    if np.any(T < 0):
        raise ValueError("T must be >= 0")
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    with np.errstate(divide="ignore"):
        log1mq = np.log1p(-np.minimum(q, 1.0))  # -inf where q = 1
    out = np.exp(np.multiply.outer(T, log1mq)) @ p
    return out


def tail_mass_beyond(p: np.ndarray, k: int) -> float:
    """sum_{i>k} p_i: the plateau of the error under a tail cut at rank k.

    Explained in :ref:`sec-families-tale`.
    """
    return float(np.asarray(p)[k:].sum())


def simulate_error(p: np.ndarray, q: np.ndarray, T_grid, chains: int, *, seed: int) -> pd.DataFrame:
    """Test error of the memoriser trained on T i.i.d. samples from q, for each T in ``T_grid``.

    One chain is one growing training set: its counts grow by
    ``multinomial(T_j - T_{j-1}, q)`` increments along the sorted grid, so the curve of
    a chain is a real learning curve. The error is sum_i p_i 1{count_i = 0}.
    Returns one row per chain x T: ``chain``, ``T``, ``error``.
    Explained in :ref:`sec-families-tale`.
    """
    collapse._check_sizes(chains=(chains, 1))
    T_grid = np.asarray(T_grid)
    if T_grid.ndim != 1 or T_grid.size == 0 or np.any(np.diff(T_grid) <= 0) or T_grid[0] < 1:
        raise ValueError("T_grid must be a strictly increasing list of integers >= 1")
    rng = np.random.default_rng(seed)
    q = np.asarray(q, dtype=float) / np.sum(q)
    counts = np.zeros((chains, q.size), dtype=np.int64)
    prev, rows = 0, []
    for T in T_grid.astype(np.int64):
        counts += rng.multinomial(T - prev, q, size=chains)
        prev = T
        rows.append((counts == 0) @ p)
    err = np.stack(rows, axis=1)  # [chains, len(T_grid)]
    return pd.DataFrame(
        {
            "chain": np.repeat(np.arange(chains), T_grid.size),
            "T": np.tile(T_grid, chains),
            "error": err.ravel(),
        }
    )


def hutter_chains(
    p: np.ndarray,
    n: int,
    generations: int,
    chains: int,
    *,
    k: int,
    regime: str,
    real_fraction: float,
    seed: int,
) -> pd.DataFrame:
    """The memoriser retrained on its own tail-cut output, generation after generation.

    Data are count vectors ``[chains, N]`` (joining data sets adds counts). Generation 0
    memorises ``n`` real draws from ``p``; each model generates ``n`` items from its
    empirical distribution restricted to its ``k`` most frequent items (a top-k
    generator: the tail cut of Dohmatob et al.), and the next memoriser trains on them
    per the ``regime`` (``"mix"`` with ``real_fraction = 0`` is ``replace``). Quantities
    (one value per chain): ``error`` = sum_i p_i 1{item i unseen} and ``support`` = number
    of items known.
    Explained in :ref:`sec-families-tale`.
    """
    p = np.asarray(p, dtype=float)
    collapse._check_sizes(n=(n, 1), generations=(generations, 0), chains=(chains, 1))
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= p.size:
        raise ValueError(f"k must be an integer in [1, {p.size}]; got {k!r}")

    def real_sample(m, rng):
        return rng.multinomial(m, p, size=chains)

    def fit(counts, rng):
        return counts

    def sample(counts, m, rng):
        top = np.argsort(-counts, axis=1, kind="stable")[:, :k]
        kept = np.zeros(counts.shape, dtype=float)
        np.put_along_axis(kept, top, np.take_along_axis(counts, top, axis=1), axis=1)
        return np.stack([rng.multinomial(m, row / row.sum()) for row in kept])

    def measure(counts, t):
        seen = counts > 0
        return {"error": (~seen) @ p, "support": seen.sum(1)}

    def subsample(counts, m, rng):
        return np.stack([rng.multivariate_hypergeometric(row, m) for row in counts])

    return collapse.recursive_fit(
        fit,
        sample,
        measure,
        real_sample=real_sample,
        n=n,
        generations=generations,
        regime=regime,
        real_fraction=real_fraction,
        concat=lambda parts: sum(parts),
        subsample=subsample,
        seed=seed,
    )
