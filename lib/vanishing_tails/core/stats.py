"""Intervals over independent replicates: the statistics behind every claim of the book.

A replicate is the real unit of repetition of an experiment — a chain, a seed, a
pretrained model — never a pooled sample inside one of them. Each function takes one
value per replicate and returns an :class:`Interval` (estimate, 95% interval, standard
error, number of replicates, method):

* :func:`mean_interval` — Student's t interval of a mean;
* :func:`difference_interval` — a paired (same replicates) or Welch (independent
  replicates) interval of a difference of means;
* :func:`bootstrap_interval` — a percentile bootstrap interval of any statistic
  (a median, a correlation, a ratio), resampling whole replicates
  (:func:`scipy.stats.bootstrap`).

Explained in :ref:`sec-claims`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval over ``n`` independent replicates.

    Explained in :ref:`sec-claims`.
    """

    estimate: float
    low: float
    high: float
    se: float
    n: int
    method: str

    def __post_init__(self) -> None:
        for name in ("estimate", "low", "high", "se"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "n", int(self.n))


def _replicates(x, name: str = "replicates") -> np.ndarray:
    a = np.asarray(x, dtype=float).ravel()
    if a.size == 0:
        raise ValueError(f"{name}: need at least one replicate")
    return a[np.isfinite(a)]


def mean_interval(x, *, level: float = LEVEL) -> Interval:
    """Mean of ``x`` (one value per replicate) with its Student-t interval.

    ``mean ± t_{n-1, (1+level)/2} · s/√n``; with fewer than two finite replicates the
    interval is undefined (NaN), and every claim built on it is inconclusive; so it is
    when every replicate gives the same value (no spread, e.g. all at a floor of 0). That
    rule is deliberate: a measure that sits at its floor or ceiling in every replicate says
    nothing about how far the effect could move, and a t interval of width 0 would claim
    certainty that the data do not give (the README's "Choices" records it).
    Explained in :ref:`sec-claims`.
    """
    a = _replicates(x)
    n = a.size
    if n < 2:
        est = float(a.mean()) if n else math.nan
        return Interval(est, math.nan, math.nan, math.nan, n, "t")
    est, se = float(a.mean()), float(a.std(ddof=1) / math.sqrt(n))
    if se == 0.0:  # every replicate identical (e.g. all at a floor): the t interval is undefined
        return Interval(est, math.nan, math.nan, 0.0, n, "t")
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    return Interval(est, est - half, est + half, se, n, "t")


def difference_interval(a, b, *, paired: bool, level: float = LEVEL) -> Interval:
    """``mean(a) − mean(b)`` with a paired-t (``paired=True``: ``a[i]`` and ``b[i]`` come
    from the same replicate) or Welch-t interval (independent replicates).

    Explained in :ref:`sec-claims`.
    """
    if paired:
        a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
        if a.shape != b.shape:
            raise ValueError(f"paired replicates need equal lengths; got {a.size} and {b.size}")
        iv = mean_interval(a - b, level=level)
        return Interval(iv.estimate, iv.low, iv.high, iv.se, iv.n, "paired t")
    a, b = _replicates(a, "a"), _replicates(b, "b")
    est = float(a.mean() - b.mean()) if a.size and b.size else math.nan
    if a.size < 2 or b.size < 2:
        return Interval(est, math.nan, math.nan, math.nan, min(a.size, b.size), "Welch t")
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0.0:  # no spread in either group: undefined, as in mean_interval
        return Interval(est, math.nan, math.nan, 0.0, min(a.size, b.size), "Welch t")
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return Interval(est, est - half, est + half, se, min(a.size, b.size), "Welch t")


def bootstrap_interval(
    data,
    statistic: Callable[..., float],
    *,
    seed: int,
    paired: bool = True,
    n_resamples: int = 2000,
    level: float = LEVEL,
) -> Interval:
    """``statistic(*data)`` with a percentile bootstrap interval that resamples replicates.

    ``data`` is one array of replicates or a tuple of them; ``paired=True`` resamples the
    same replicate indices in every array (their rows belong together). ``seed`` makes
    the interval reproducible (pass a named stream). The standard error is the
    bootstrap distribution's standard deviation.
    Explained in :ref:`sec-claims`.
    """
    arrays = tuple(np.asarray(d, dtype=float) for d in (data if isinstance(data, tuple) else (data,)))
    n = min(len(a) for a in arrays)
    est = float(statistic(*arrays))
    if n < 2:
        return Interval(est, math.nan, math.nan, math.nan, n, "bootstrap")
    res = stats.bootstrap(
        arrays,
        lambda *a: statistic(*a),
        paired=paired,
        vectorized=False,
        n_resamples=n_resamples,
        confidence_level=level,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    dist = np.asarray(res.bootstrap_distribution, dtype=float)
    se = float(np.nanstd(dist, ddof=1))
    return Interval(est, float(res.confidence_interval.low), float(res.confidence_interval.high), se, n, "bootstrap")
