"""What the closing chapter computes from the stacked trajectories of every experiment.

* :func:`endpoints` — each trajectory's change from its first to its last step, per replicate;
* :func:`hierarchical_interval` — a percentile bootstrap that resamples *experiments* and,
  inside each, its replicates (the two levels at which the book's experiments are
  independent; pooling the replicates of different experiments would pretend that the
  experiments are one);
* :func:`rank_correlation` — Spearman's ρ of the changes in support and in q-tail mass
  across trajectories (the test of "one phenomenon");
* :func:`partings` — the trajectories along which support and q-tail mass part, with the
  mechanism that moved them;
* :func:`intervention_effects` — every intervention against its baseline, paired by
  replicate: the q-tail mass it keeps and the quality it costs;
* :func:`real_data_value` — the marginal value of real data per generation, from the
  recursion experiments' arms that differ only in their real fraction.

Explained in :ref:`sec-synthesis-thesis`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from ...core import stats, tails

KEYS = ["experiment", "arm", "mechanism", "replicate"]
MOVED_KL = 1e-6  # nats: a trajectory whose mean KL from start grew by less did not move


def endpoints(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (experiment, arm, mechanism, replicate): every column of
    :data:`~vanishing_tails.core.tails.COLUMNS` and :func:`tail_gap` at the first
    (``<col>_first``) and the last step (``<col>_last``) and its change ``d_<col>`` = last − first.
    Explained in :ref:`sec-synthesis-thesis`.
    """
    cols = [*tails.COLUMNS, "tail_gap"]
    ordered = frame.assign(tail_gap=tail_gap(frame)).sort_values([*KEYS, "step"])
    groups = ordered.groupby(KEYS, sort=True)[cols]
    first, last = groups.first(), groups.last()
    out = pd.concat([first.add_suffix("_first"), last.add_suffix("_last"), (last - first).add_prefix("d_")], axis=1)
    return out.reset_index()


def tail_gap(frame: pd.DataFrame) -> pd.Series:
    """How far the q-tail's mass is from its real value: ``|q_tail_mass − 1|`` (the column is
    relative to the reference, 1 = as real). A tilt empties the tail (below 1), an
    approximation may over-fill it (above 1: chapter 2's mixture); both distort it, and what
    keeps a tail keeps this gap small. Explained in :ref:`sec-synthesis-interventions`.
    """
    return (frame["q_tail_mass"] - 1.0).abs().rename("tail_gap")


def moved(ends: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`endpoints` whose trajectory moved: mean (over replicates) KL from the
    start grew by more than :data:`MOVED_KL`. A trajectory under no pressure has nothing to
    say about how the tails move. Explained in :ref:`sec-synthesis-thesis`.
    """
    grew = ends.groupby(["experiment", "arm"])["d_kl_from_start"].transform("mean") > MOVED_KL
    return ends[grew]


@dataclass(frozen=True)
class Clusters:
    """Per experiment (cluster): its row labels (arms) and values ``[rows, replicates, columns]``.

    Explained in :ref:`sec-synthesis-thesis`.
    """

    names: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    values: tuple[np.ndarray, ...]
    columns: tuple[str, ...]


def clusters(table: pd.DataFrame, columns: Sequence[str], *, row: str = "arm") -> Clusters:
    """Arrange a long table (``experiment``, ``row``, ``replicate`` and ``columns``) as
    :class:`Clusters`; a replicate missing for some row is NaN. Explained in :ref:`sec-synthesis-thesis`.
    """
    names, rows, values = [], [], []
    for name, sub in table.groupby("experiment", sort=True):
        wide = sub.pivot_table(index=row, columns="replicate", values=list(columns), aggfunc="mean", dropna=False)
        labels = tuple(wide.index.astype(str))
        reps = sorted(sub["replicate"].unique())
        arr = np.stack([wide[c].reindex(columns=reps).to_numpy(float) for c in columns], axis=-1)
        names.append(str(name))
        rows.append(labels)
        values.append(arr)
    return Clusters(tuple(names), tuple(rows), tuple(values), tuple(columns))


Statistic = Callable[[list[np.ndarray], list[tuple[str, ...]]], float]


def _means(values: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
    v = values if idx is None else values[:, idx]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row with no finite replicate: NaN
        return np.nanmean(v, axis=1)


def hierarchical_interval(cl: Clusters, statistic: Statistic, *, seed: int, n_resamples: int) -> stats.Interval:
    """``statistic`` of the per-row means (over replicates) with a two-level percentile bootstrap.

    ``statistic(means, rows)`` gets one ``[rows, columns]`` array of replicate means per
    experiment. Each resample draws experiments with replacement and, inside each drawn
    experiment, its replicates with replacement (the same replicate indices for all its rows:
    arms of one replicate share seeds, so their differences stay paired), and recomputes the
    statistic; the interval is the 2.5 and 97.5 percentiles, the standard error the
    resamples' standard deviation, ``n`` the number of experiments. Resamples whose statistic
    is undefined (NaN) are dropped; if more than half are, the interval is NaN.
    Explained in :ref:`sec-synthesis-thesis`.
    """
    k = len(cl.names)
    if k == 0:
        return stats.Interval(math.nan, math.nan, math.nan, math.nan, 0, "hierarchical bootstrap")
    est = float(statistic([_means(v) for v in cl.values], list(cl.rows)))
    rng = np.random.default_rng(seed)
    dist = np.full(n_resamples, np.nan)
    for b in range(n_resamples):
        pick = rng.integers(k, size=k)
        means = [_means(cl.values[c], rng.integers(cl.values[c].shape[1], size=cl.values[c].shape[1])) for c in pick]
        dist[b] = statistic(means, [cl.rows[c] for c in pick])
    ok = dist[np.isfinite(dist)]
    if not math.isfinite(est) or ok.size < n_resamples / 2 or np.ptp(ok) == 0:
        return stats.Interval(est, math.nan, math.nan, math.nan, k, "hierarchical bootstrap")
    low, high = np.percentile(ok, [2.5, 97.5])
    return stats.Interval(est, low, high, float(ok.std(ddof=1)), k, "hierarchical bootstrap")


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's ρ of ``x`` and ``y`` (finite pairs only); NaN with fewer than three pairs or
    a constant variable. Explained in :ref:`sec-synthesis-thesis`.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return math.nan
    return float(sps.spearmanr(x[ok], y[ok]).statistic)


def correlation_statistic(means: list[np.ndarray], rows: list[tuple[str, ...]]) -> float:
    """Spearman's ρ between the first and second column of every row of every experiment
    (for :func:`hierarchical_interval`). Explained in :ref:`sec-synthesis-thesis`.
    """
    allrows = np.concatenate(means, axis=0)
    return rank_correlation(allrows[:, 0], allrows[:, 1])


def mean_of_means(means: list[np.ndarray], rows: list[tuple[str, ...]]) -> float:
    """Mean over experiments of the mean over an experiment's rows of the first column
    (for :func:`hierarchical_interval`). Explained in :ref:`sec-synthesis-thesis`.
    """
    per = [np.nanmean(m[:, 0]) if np.isfinite(m[:, 0]).any() else np.nan for m in means]
    per = np.asarray(per, float)
    return float(per[np.isfinite(per)].mean()) if np.isfinite(per).any() else math.nan


def mean_of_abs_means(means: list[np.ndarray], rows: list[tuple[str, ...]]) -> float:
    """Mean over experiments of the absolute value of the mean over an experiment's rows of the
    first column: how far, in either direction (for :func:`hierarchical_interval`).
    Explained in :ref:`sec-synthesis-thesis`.
    """
    return mean_of_means([np.abs(_means(m[:, :1].T)[:, None]) for m in means], rows)


def baseline_rows(ends: pd.DataFrame, baselines: dict[str, Sequence[str]], mechanism: str) -> pd.DataFrame:
    """The rows of :func:`endpoints` on each experiment's baseline arms (``baselines``:
    experiment -> arms) whose mechanism is ``mechanism``. Explained in :ref:`sec-synthesis-thesis`.
    """
    keep = [ends["experiment"].eq(e) & ends["arm"].isin(list(a)) for e, a in baselines.items()]
    mask = np.logical_or.reduce(keep) if keep else np.zeros(len(ends), bool)
    return ends[mask & ends["mechanism"].eq(mechanism)]


def summarise(table: pd.DataFrame, by: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """Mean and 95% Student-t interval over replicates of ``columns`` per group ``by``
    (columns ``<col>``, ``<col>_low``, ``<col>_high``, and ``n``). Explained in :ref:`sec-synthesis-thesis`.
    """
    rows = []
    for key, sub in table.groupby(list(by), sort=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        for c in columns:
            iv = stats.mean_interval(sub[c].to_numpy(float))
            row |= {c: iv.estimate, f"{c}_low": iv.low, f"{c}_high": iv.high}
        row["n"] = sub["replicate"].nunique()
        rows.append(row)
    return pd.DataFrame(rows)


PATTERNS = {  # (support, q-tail mass) -> what the book's mechanisms predict
    ("falls", "falls"): "together: outcomes and mass leave",
    ("falls", "stays"): "part: outcomes vanish, mass stays",
    ("stays", "falls"): "part: mass leaves, outcomes stay",
    ("stays", "stays"): "neither moves",
    ("rises", "rises"): "together: both grow",
    ("falls", "rises"): "part: fewer outcomes, more tail mass",
    ("rises", "falls"): "part: more outcomes, less tail mass",
    ("rises", "stays"): "part: outcomes grow, mass stays",
    ("stays", "rises"): "part: mass grows, outcomes stay",
}


def _direction(value: float, delta: float) -> str:
    return "falls" if value < -delta else ("rises" if value > delta else "stays")


def partings(ends: pd.DataFrame, *, delta_support: float, delta_mass: float) -> pd.DataFrame:
    """Each moved trajectory's mean change in support and in q-tail mass (with 95% intervals
    over replicates) and its pattern (:data:`PATTERNS`): a change counts when its mean exceeds
    the declared δ (``delta_support``, ``delta_mass``); ``part`` is true when the two differ.
    Explained in :ref:`sec-synthesis-thesis`.
    """
    cols = ["d_support", "d_q_tail_mass", "d_error_mass", "d_kl_from_start"]
    out = summarise(moved(ends), ["experiment", "arm", "mechanism"], cols)
    if out.empty:
        return out.assign(pattern=pd.Series(dtype=str), part=pd.Series(dtype=bool))
    support = [_direction(v, delta_support) for v in out["d_support"]]
    mass = [_direction(v, delta_mass) for v in out["d_q_tail_mass"]]
    out["pattern"] = [PATTERNS[(s, m)] for s, m in zip(support, mass, strict=True)]
    out["part"] = [s != m for s, m in zip(support, mass, strict=True)]
    return out


def intervention_effects(ends: pd.DataFrame, interventions: dict[str, Sequence[tuple[str, str, str]]]) -> pd.DataFrame:
    """Every intervention against its baseline, paired by replicate. ``retained`` is the part of
    the baseline's drift of the q-tail's mass (last minus first step) that the intervention
    prevents: ``s · (Δq_base − Δq_int)`` with ``s`` the sign of the baseline's mean drift — a
    tilt usually drains the tail (``s = −1``: the intervention's extra mass counts), an
    approximation or a reward for a rare outcome fills it (``s = +1``: its smaller rise counts).
    ``support_kept`` = the change in support of the intervention minus the baseline's, and
    ``cost`` = change in quality of the baseline minus that of the intervention (negative: the
    intervention gains quality). ``interventions``: experiment -> ``(arm, baseline, label)``.
    Explained in :ref:`sec-synthesis-interventions`.
    """
    rows = []
    for exp, items in interventions.items():
        sub = ends[ends["experiment"] == exp].set_index(["arm", "replicate"])
        for arm, base, label in items:
            if arm not in sub.index.get_level_values(0) or base not in sub.index.get_level_values(0):
                continue
            a, b = sub.loc[arm], sub.loc[base]
            reps = a.index.intersection(b.index)
            a, b = a.loc[reps], b.loc[reps]
            sign = 1.0 if b["d_q_tail_mass"].mean() > 0 else -1.0
            rows.append(
                pd.DataFrame(
                    {
                        "experiment": exp,
                        "intervention": label,
                        "arm": arm,
                        "baseline": base,
                        "replicate": reps,
                        "retained": (sign * (b["d_q_tail_mass"] - a["d_q_tail_mass"])).to_numpy(),
                        "support_kept": (a["d_support"] - b["d_support"]).to_numpy(),
                        "cost": (b["d_quality"] - a["d_quality"]).to_numpy(),
                    }
                )
            )
    cols = ["experiment", "intervention", "arm", "baseline", "replicate", "retained", "support_kept", "cost"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=cols)


def real_data_value(
    frame: pd.DataFrame, fractions: dict[str, dict[str, float]], samples: dict[str, int]
) -> pd.DataFrame:
    """The marginal value of real data per generation, per recursion experiment and replicate.

    ``fractions``: experiment -> {arm: real fraction}. At each step minus the least-squares
    slope of the arms' :func:`tail_gap` against their real fraction, paired by replicate:
    ``value`` = −Δ(gap) / Δ(real fraction) — how much nearer its real value the q-tail's mass
    stays when the whole of a generation's data is real instead of synthetic — likewise
    ``support_value`` for support (its plain slope), and ``per_sample`` = ``value / samples``,
    what one real sample keeps over one synthetic sample in a generation of ``samples``
    (``samples[exp]``).
    NaN where every arm has the same fraction. Explained in :ref:`sec-synthesis-human-data`.
    """
    rows = []
    for exp, arms in fractions.items():
        sub = frame[(frame["experiment"] == exp) & frame["arm"].isin(list(arms))]
        if sub.empty:
            continue
        f = sub["arm"].map(arms).astype(float)
        sub = sub.assign(f=f)
        for (rep, step), g in sub.groupby(["replicate", "step"], sort=True):
            x = g["f"].to_numpy(float)
            var = ((x - x.mean()) ** 2).sum()
            out = {"experiment": exp, "replicate": rep, "step": step}
            for y, name in ((-tail_gap(g).to_numpy(float), "value"), (g["support"].to_numpy(float), "support_value")):
                out[name] = float(((x - x.mean()) * (y - y.mean())).sum() / var) if var > 0 else math.nan
            out["per_sample"] = out["value"] / samples[exp]
            rows.append(out)
    cols = ["experiment", "replicate", "step", "value", "support_value", "per_sample"]
    return pd.DataFrame(rows, columns=cols)
