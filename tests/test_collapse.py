"""Recursive-training engines against exact theory, on seeds not used anywhere else."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vanishing_tails.core import collapse, data, metrics

FRESH = 90210  # a seed no chapter uses


def _final(df, t):
    return df[df.generation == t]


def test_generation_zero_is_the_real_distribution():
    df = collapse.gaussian_chains(5, 3, 7, regime="replace", seed=FRESH)
    g0 = _final(df, 0)
    assert (g0["mean"] == 0).all() and (g0["variance"] == 1).all()
    assert g0["tail_mass"].iloc[0] == pytest.approx(collapse.REAL_GAUSSIAN_TAIL_MASS)
    assert len(df) == 7 * 4 and set(df.columns) >= {"chain", "generation", "mean", "variance", "tail_mass"}


@pytest.mark.parametrize("n,t", [(10, 8), (100, 20)])
def test_mle_expected_variance(n, t):
    v = _final(collapse.gaussian_chains(n, t, 40000, regime="replace", seed=FRESH + n), t)["variance"]
    se = v.std() / np.sqrt(len(v))
    assert abs(v.mean() - collapse.expected_variance_mle(n, t)) < 4 * se


@pytest.mark.parametrize("fit", collapse.FITS)
def test_expected_log_variance(fit):
    n, t = 10, 30
    lv = np.log(_final(collapse.gaussian_chains(n, t, 20000, regime="replace", fit=fit,
                                                seed=FRESH + 1), t)["variance"])
    se = lv.std() / np.sqrt(len(lv))
    assert abs(lv.mean() - collapse.expected_log_variance(n, t, fit)) < 4 * se
    assert collapse.expected_log_variance_unbiased(n, t) == collapse.expected_log_variance(n, t, "unbiased")


def test_unbiased_fit_keeps_expected_variance_but_the_median_collapses():
    n, t = 20, 6
    v = _final(collapse.gaussian_chains(n, t, 40000, regime="replace", fit="unbiased", seed=FRESH + 2), t)["variance"]
    assert abs(v.mean() - 1.0) < 4 * v.std() / np.sqrt(len(v))
    assert v.median() < 1.0


def test_temperature_scales_the_variance():
    n, t, T = 50, 5, 0.5
    v = _final(collapse.gaussian_chains(n, t, 40000, regime="replace", temperature=T, seed=FRESH + 3), t)["variance"]
    expected = (T * (n - 1) / n) ** t
    assert abs(v.mean() - expected) < 4 * v.std() / np.sqrt(len(v))


def test_all_real_mix_is_a_fresh_fit_every_generation():
    n, t = 10, 25
    v = _final(collapse.gaussian_chains(n, t, 40000, regime="mix", real_fraction=1.0, seed=FRESH + 4), t)["variance"]
    assert abs(v.mean() - (n - 1) / n) < 4 * v.std() / np.sqrt(len(v))


def test_accumulate_keeps_variance_replace_loses_it():
    kw = dict(n=10, generations=40, chains=2000, seed=FRESH + 5)
    med = {r: _final(collapse.gaussian_chains(regime=r, **kw), 40)["variance"].median()
           for r in ("replace", "accumulate", "accumulate-subsample")}
    assert med["accumulate"] > 100 * med["replace"]
    assert med["accumulate-subsample"] > 100 * med["replace"]
    acc = collapse.gaussian_chains(regime="accumulate", **kw)
    assert (acc.groupby("generation")["data_size"].first().to_numpy() == np.arange(41) * 10).all()


def test_distinct_indices_are_distinct_and_uniform():
    rng = np.random.default_rng(FRESH)
    idx = collapse._distinct_indices(rng, 30, 20, 5000)
    s = np.sort(idx, axis=1)
    assert (np.diff(s, axis=1) > 0).all() and s.min() >= 0 and s.max() < 30
    freq = np.bincount(idx.ravel(), minlength=30) / idx.size
    np.testing.assert_allclose(freq, 1 / 30, atol=0.004)


def _p0():
    return np.random.default_rng(FRESH).dirichlet(np.full(300, 0.3))


def test_categorical_gini_simpson_expectation():
    p0, m, t = _p0(), 500, 15
    gs = _final(collapse.categorical_chains(p0, m, t, 4000, regime="replace", seed=FRESH + 6), t)["gini_simpson"]
    assert abs(gs.mean() - collapse.expected_gini_simpson(p0, m, t)) < 4 * gs.std() / np.sqrt(len(gs))


def test_categorical_shares_are_martingales_and_lost_types_never_return():
    p0, m, t = _p0(), 400, 20
    paths = list(collapse.categorical_paths(p0, m, t, 3000, regime="replace", seed=FRESH + 7))
    final = paths[-1][1]
    common = p0 > 5 / m  # types rare enough to be all-zero in every chain make the SE meaningless
    se = final[:, common].std(0) / np.sqrt(final.shape[0])
    z = (final[:, common].mean(0) - p0[common]) / se
    assert np.mean(np.abs(z) < 4) > 0.97  # per-type means agree with p0
    tail = metrics.tail_set(p0, 0.1)  # and so does the rare types' total
    tm = final[:, tail].sum(1)
    assert abs(tm.mean() - p0[tail].sum()) < 4 * tm.std() / np.sqrt(len(tm))
    alive = [p > 0 for _, p in paths]
    assert all(not (a1 & ~a0).any() for a0, a1 in zip(alive, alive[1:]))
    df = collapse.categorical_chains(p0, m, t, 200, regime="replace", seed=FRESH + 7)
    assert df["revived"].sum() == 0
    mixed = collapse.categorical_chains(p0, m, t, 200, regime="mix", real_fraction=0.3, seed=FRESH + 7)
    assert mixed["revived"].sum() > 0


def test_temperature_below_one_drains_the_expected_tail():
    p0 = _p0()
    df = collapse.categorical_chains(p0, 2000, 10, 100, regime="replace", temperature=0.8, seed=FRESH + 8)
    assert _final(df, 10)["tail_mass"].mean() < 0.5 * metrics.tail_mass(p0, p0, 0.1)


def test_survival_by_decile_rare_go_first():
    p0 = np.sort(_p0())[::-1]
    dec = collapse.survival_by_decile(p0, 300, 10, 50, seed=FRESH + 9)
    s = _final(dec, 10).groupby("decile")["surviving_share"].mean()
    assert s.loc[1] > s.loc[10]
    assert set(dec.columns) == {"chain", "generation", "decile", "surviving_share"}


def test_recursive_fit_generic_loop_matches_gaussian_engine_shape():
    def fit(x, rng):
        return (x.mean(), x.var())

    def sample(model, n, rng):
        return model[0] + np.sqrt(model[1]) * rng.standard_normal(n)

    def measure(model, t):
        return {"variance": model[1]}

    out = collapse.recursive_fit(fit, sample, measure, real_sample=lambda n, rng: rng.standard_normal(n),
                                 n=10, generations=30, regime="replace", seed=FRESH)
    assert list(out.columns) == ["generation", "quantity", "value"] and len(out) == 31
    acc = collapse.recursive_fit(fit, sample, measure, real_sample=lambda n, rng: rng.standard_normal(n),
                                 n=10, generations=30, regime="accumulate", concat=np.concatenate, seed=FRESH)
    assert acc["value"].iloc[-1] > out["value"].iloc[-1]


def test_engines_are_deterministic():
    a = collapse.gaussian_chains(10, 5, 50, regime="accumulate-subsample", seed=3)
    b = collapse.gaussian_chains(10, 5, 50, regime="accumulate-subsample", seed=3)
    c = collapse.gaussian_chains(10, 5, 50, regime="accumulate-subsample", seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    p0 = _p0()
    pd.testing.assert_frame_equal(collapse.categorical_chains(p0, 100, 5, 10, regime="mix", real_fraction=0.2, seed=1),
                                  collapse.categorical_chains(p0, 100, 5, 10, regime="mix", real_fraction=0.2, seed=1))


@pytest.mark.parametrize("kwargs,match", [
    (dict(regime="recycle"), "regime must be one of"),
    (dict(regime="mix", real_fraction=1.5), "real_fraction must lie in"),
    (dict(regime="mix", real_fraction=-0.1), "real_fraction must lie in"),
    (dict(regime="replace", real_fraction=0.5), "real_fraction applies to regime 'mix' only"),
    (dict(regime="replace", n=1), "n must be an integer >= 2"),
    (dict(regime="replace", chains=0), "chains must be an integer >= 1"),
    (dict(regime="replace", fit="map"), "fit must be one of"),
    (dict(regime="replace", temperature=0.0), "temperature must be > 0"),
])
def test_gaussian_bad_input(kwargs, match):
    args = dict(n=10, generations=3, chains=4) | kwargs
    with pytest.raises(ValueError, match=match):
        collapse.gaussian_chains(args.pop("n"), args.pop("generations"), args.pop("chains"), **args)


def test_categorical_bad_input():
    with pytest.raises(ValueError, match="p0 must hold finite non-negative"):
        collapse.categorical_chains(np.array([0.5, -0.5]), 10, 2, 2, regime="replace")
    with pytest.raises(ValueError, match="m must be an integer"):
        collapse.categorical_chains(_p0(), 0, 2, 2, regime="replace")
    with pytest.raises(ValueError, match="q must lie in"):
        collapse.categorical_chains(_p0(), 10, 2, 2, regime="replace", q=0)


def test_english_word_frequencies_offline():
    words = data.english_word_frequencies(1000)
    assert len(words) == 1000 and words["word"].iloc[0] == "the"
    assert words["p"].sum() == pytest.approx(1.0)
    assert (np.diff(words["p"].to_numpy()) <= 0).all()
    with pytest.raises(ValueError, match="top_n"):
        data.english_word_frequencies(5)
