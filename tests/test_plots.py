"""The shared figure helpers: the vectorised bootstrap band is seaborn's band, drawn faster."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from vanishing_tails.book import plots  # noqa: E402


def _band(ax) -> np.ndarray:
    return ax.collections[0].get_paths()[0].vertices


def _frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"step": np.repeat(np.arange(6), 30), "y": rng.gamma(2.0, size=180)})


def test_band_matches_seaborn_bootstrap_and_is_deterministic():
    df = _frame(2027)
    fig, (a, b, c) = plt.subplots(1, 3)
    sns.lineplot(data=df, x="step", y="y", ax=a, errorbar=("ci", 95), n_boot=4000, seed=5)
    plots.lineplot_ci(df, "step", "y", ax=b, n_boot=4000)
    plots.lineplot_ci(df, "step", "y", ax=c, n_boot=4000)
    ours, theirs = _band(b), _band(a)
    assert np.array_equal(ours, _band(c))  # identical data, identical bands
    # Two independent bootstraps of the same percentile interval agree to Monte Carlo error.
    width = np.ptp(theirs[:, 1])
    assert np.allclose(ours, theirs, atol=0.05 * width)
    plt.close(fig)


def test_band_median_and_missing_values():
    df = _frame(2028)
    df.loc[::7, "y"] = np.nan
    fig, ax = plt.subplots()
    plots.lineplot_ci(df, "step", "y", ax=ax, estimator="median")
    band = _band(ax)
    assert np.isfinite(band).all()
    med = df.groupby("step")["y"].median().to_numpy()
    lo, hi = band[1 : 1 + len(med), 1], band[-len(med) :, 1][::-1]
    assert np.all((np.minimum(lo, hi) <= med + 1e-12) & (med <= np.maximum(lo, hi) + 1e-12))
    plt.close(fig)
