"""One seaborn theme and the shared figure helpers (contract clause 3).

Figures are seaborn plots of tidy frames with confidence bands over seeds
(``errorbar=("ci", 95)`` by default, bootstrap over seeds), plus theory curves
drawn as dashed black lines labelled "theory".
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

THEORY_STYLE = dict(color="black", linestyle="--", linewidth=1.3, label="theory")
CI = ("ci", 95)


def set_theme() -> None:
    """The book's one theme; also makes notebooks emit both PNG and SVG for every figure."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 120,
            "figure.figsize": (7.0, 4.0),
            "axes.titlesize": "medium",
            "legend.fontsize": "small",
            "legend.title_fontsize": "small",
            "svg.fonttype": "none",
        }
    )
    try:  # only inside a kernel
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png", "svg")
    except Exception:  # pragma: no cover - outside IPython
        pass


def lineplot_ci(
    data: pd.DataFrame,
    x: str,
    y: str,
    *,
    hue: str | None = None,
    style: str | None = None,
    ax=None,
    estimator="mean",
    errorbar=CI,
    n_boot: int = 200,
    seed: int | None = None,
    **kwargs,
):
    """``sns.lineplot`` with the book's defaults: mean with a 95% bootstrap CI over seeds/chains.

    ``estimator="median"`` with ``errorbar=("pi", 50)`` shows the typical chain and its
    interquartile band instead. The bands' bootstrap is seeded by ``seed`` (a named
    stream) or, when none is given, by a hash of the plotted values, so identical data
    always draw identical bands.
    Explained in :ref:`sec-chapter-contract`.
    """
    ax = ax if ax is not None else plt.gca()
    if seed is None:
        seed = _content_seed(data, x, y)
    if isinstance(errorbar, tuple) and errorbar[0] == "ci" and estimator in ("mean", "median"):
        # seaborn's own bootstrap loops in Python over the n_boot resamples of every
        # (x, hue) group; the same percentile bootstrap, drawn as one array per group.
        errorbar = _bootstrap_interval(estimator, float(errorbar[1]), n_boot, np.random.default_rng(seed))
    return sns.lineplot(
        data=data,
        x=x,
        y=y,
        hue=hue,
        style=style,
        ax=ax,
        estimator=estimator,
        errorbar=errorbar,
        n_boot=n_boot,
        seed=seed,
        **kwargs,
    )


def _bootstrap_interval(estimator: str, level: float, n_boot: int, rng: np.random.Generator):
    """seaborn's ``("ci", level)`` band as a callable: the percentile interval of ``n_boot``
    resampled estimates (mean or median; NaN-aware as seaborn is), drawn in one array.

    seaborn calls it once per group, in a fixed order, so one generator gives identical
    bands for identical data.
    """
    edge = (100.0 - level) / 2.0

    def interval(values) -> tuple[float, float]:
        a = np.asarray(values, dtype=float)
        nan = np.isnan(a).any()
        f = {"mean": np.nanmean if nan else np.mean, "median": np.nanmedian if nan else np.median}[estimator]
        boots = f(a[rng.integers(0, a.size, size=(n_boot, a.size))], axis=1)
        lo, hi = np.nanpercentile(boots, [edge, 100.0 - edge])
        return float(lo), float(hi)

    return interval


def _content_seed(data: pd.DataFrame, x: str, y: str) -> int:
    """A seed that depends on the plotted values only (the same data, the same bands)."""
    import hashlib

    h = hashlib.blake2b(digest_size=8)
    for col in (x, y):
        h.update(col.encode())
        h.update(np.ascontiguousarray(pd.to_numeric(data[col], errors="coerce").to_numpy(float)).tobytes())
    return int.from_bytes(h.digest(), "little") >> 1


def theory_line(ax, x: Sequence[float], y: Sequence[float], *, label: str = "theory", **kwargs):
    """Draw a theory curve in the book's theory style."""
    style = {**THEORY_STYLE, "label": label, **kwargs}
    return ax.plot(np.asarray(x), np.asarray(y), **style)


def facet_grid(n_panels: int, *, ncols: int | None = None, panel_size=(3.6, 3.0), **kwargs):
    """A row (or grid) of axes sized for the book's text width."""
    ncols = ncols or n_panels
    nrows = int(np.ceil(n_panels / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows), squeeze=False, **kwargs
    )
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, axes.flat[:n_panels]


def finish(fig, *, legend_outside: bool = False):
    """Tight layout; optionally move the last axis' legend outside the plot."""
    if legend_outside:
        ax = fig.axes[-1]
        if ax.get_legend() is not None:
            sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return fig
