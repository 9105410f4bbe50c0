"""How chapter 1's Gaussian collapse time scales with the sample size n: the generation at which
the typical chain's ±3σ tail mass has halved, for several n, with the theory that makes it
linear in n. Explained in :ref:`sec-tails-scaling`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from vanishing_tails.core import collapse
from vanishing_tails.core.seeds import streams


def half_tail_sd() -> float:
    """σ* such that a centred N(0, σ*²) puts half the real mass beyond ±3: 2Φ(−3/σ*) = Φ(−3).

    Explained in :ref:`sec-tails-scaling`.
    """
    return collapse.TAIL_SIGMAS / float(stats.norm.isf(collapse.REAL_GAUSSIAN_TAIL_MASS / 4))


def centred_halving_time(n: np.ndarray) -> np.ndarray:
    """The generation at which the typical chain's variance alone halves the ±3σ tail:
    t = log σ*² / (ψ((n − 1)/2) − log(n/2)), with σ* from :func:`half_tail_sd` and the exact
    drift of E[log σ_t²] under MLE refitting (:func:`vanishing_tails.core.collapse.expected_log_variance`).

    The drift is −2/n + O(1/n²), so t ≈ −n·log(σ*²)/2: linear in n. It ignores the mean's
    random walk (which puts mass beyond ±3 on one side) and the spread of the chains; in
    the diffusion limit both also act on the time scale t/n (each generation's log-variance
    step has mean ≈ −2/n and variance ≈ 2/n, the mean's step variance σ²/n), so *any*
    collapse time of the refit Gaussian grows linearly in n (Shumailov et al. 2024).
    Explained in :ref:`sec-tails-scaling`.
    """
    n = np.asarray(n)
    drift = np.array([collapse.expected_log_variance(int(k), 1, "mle") for k in n.ravel()]).reshape(n.shape)
    return 2 * np.log(half_tail_sd()) / drift


def crossing_time(curve: np.ndarray, level: float) -> np.ndarray:
    """First (fractional) generation at which ``curve`` (shape ``[generations + 1, ...]``,
    positive) falls below ``level``, interpolating linearly in log between generations; NaN
    where it never does. Explained in :ref:`sec-tails-scaling`.
    """
    curve = np.asarray(curve, dtype=float)
    below = curve < level
    hit = below.any(axis=0)
    g = np.argmax(below, axis=0)  # first generation below the level (0 if never)
    g_prev = np.maximum(g - 1, 0)
    hi = np.take_along_axis(curve, g_prev[None], axis=0)[0]
    lo = np.take_along_axis(curve, g[None], axis=0)[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = (np.log(hi) - np.log(level)) / (np.log(hi) - np.log(np.maximum(lo, 1e-300)))
    t = np.where(g == 0, 0.0, g_prev + np.clip(frac, 0.0, 1.0))
    return np.where(hit, t, np.nan)


def halving_times(n_values: Sequence[int], *, groups: int, chains_per_group: int, seed: int) -> pd.DataFrame:
    """Generation at which the median chain's ±3σ tail mass falls to half the real one, for each
    ``n`` and each of ``groups`` independent groups of ``chains_per_group`` chains (the replicates).

    Each ``n`` runs :func:`vanishing_tails.core.collapse.gaussian_chains` (replace, MLE fit)
    for 4·:func:`centred_halving_time` + 5 generations (at least four times the typical
    variance's own halving time) with the seed stream ``("halving", n)`` of ``seed``
    (:func:`vanishing_tails.core.seeds.streams`); the median over a group's
    chains of tail mass / real tail mass gives one curve per group, and its
    :func:`crossing_time` at 1/2 the group's halving time. Returns one row per
    ``n`` x ``group`` with ``n``, ``group``, ``t_half`` (NaN if the curve never crosses
    within the horizon) and ``centred`` (the theory of :func:`centred_halving_time`).
    Explained in :ref:`sec-tails-scaling`.
    """
    for name, value in (("groups", groups), ("chains_per_group", chains_per_group)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    seeds = streams(seed)
    rows = []
    for n in n_values:
        centred = float(centred_halving_time(np.array(n)))
        horizon = int(np.ceil(4 * centred)) + 5
        g = collapse.gaussian_chains(
            n, horizon, groups * chains_per_group, regime="replace", fit="mle", seed=seeds["halving", n]
        )
        ratio = (g["tail_mass"].to_numpy() / collapse.REAL_GAUSSIAN_TAIL_MASS).reshape(horizon + 1, groups, -1)
        t_half = crossing_time(np.median(ratio, axis=2), 0.5)
        rows.append(pd.DataFrame({"n": n, "group": np.arange(groups), "t_half": t_half, "centred": centred}))
    return pd.concat(rows, ignore_index=True)


def loglog_slope(n: np.ndarray, t: np.ndarray) -> float:
    """Least-squares slope of log t on log n (1 = linear scaling). Explained in :ref:`sec-tails-scaling`."""
    return float(np.polyfit(np.log(np.asarray(n, dtype=float)), np.log(np.asarray(t, dtype=float)), 1)[0])
