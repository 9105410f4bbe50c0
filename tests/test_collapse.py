"""Recursive-training engines against exact theory, on seeds not used anywhere else; and
chapter 1's experiment package (:mod:`vanishing_tails.experiments.tails`)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import numpy as np
import pandas as pd
import pytest

import vanishing_tails.experiments.tails as tails_pkg
from vanishing_tails.core import collapse, data, metrics
from vanishing_tails.experiments.tails.spec import SPEC
from vanishing_tails.experiments.tails.words import frequency_deciles, word_run

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
    lv = np.log(_final(collapse.gaussian_chains(n, t, 20000, regime="replace", fit=fit, seed=FRESH + 1), t)["variance"])
    se = lv.std() / np.sqrt(len(lv))
    assert abs(lv.mean() - collapse.expected_log_variance(n, t, fit)) < 4 * se


def test_expected_gaussian_moments_reduce_to_the_closed_forms():
    t = np.arange(12)
    var, mean_sq = collapse.expected_gaussian_moments(10, t)
    np.testing.assert_allclose(var, collapse.expected_variance_mle(10, t))
    np.testing.assert_allclose(mean_sq[1:], np.cumsum(var[:-1])[:] / 10)  # the mean is a random walk
    var_u, _ = collapse.expected_gaussian_moments(10, t, fit="unbiased")
    np.testing.assert_allclose(var_u, 1.0)
    var_r, mean_sq_r = collapse.expected_gaussian_moments(10, t, fit="unbiased", real_fraction=1.0)
    np.testing.assert_allclose(var_r, 1.0)
    np.testing.assert_allclose(mean_sq_r[1:], 0.1)
    var_t, _ = collapse.expected_gaussian_moments(10, t, temperature=0.5)
    np.testing.assert_allclose(var_t, (0.5 * 0.9) ** t)


@pytest.mark.parametrize(
    "kw", [dict(real_fraction=0.3, fit="unbiased"), dict(real_fraction=0.5, temperature=0.7), dict(real_fraction=0.1)]
)
def test_expected_gaussian_moments_against_simulation(kw):
    n, t = 10, 12
    df = _final(collapse.gaussian_chains(n, t, 40000, regime="mix", seed=FRESH + 11, **kw), t)
    var, mean_sq = collapse.expected_gaussian_moments(n, t, **kw)
    v, m2 = df["variance"], df["mean"] ** 2
    assert abs(v.mean() - var) < 4 * v.std() / np.sqrt(len(v))
    assert abs(m2.mean() - mean_sq) < 4 * m2.std() / np.sqrt(len(m2))


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
    med = {
        r: _final(collapse.gaussian_chains(regime=r, **kw), 40)["variance"].median()
        for r in ("replace", "accumulate", "accumulate-subsample")
    }
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


def test_categorical_shares_are_martingales():
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


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("regime", ["replace", "accumulate"])
def test_a_vanished_word_never_returns_without_real_data(regime, temperature):
    """Formerly the chapter's claim ``lost-never-return``: a multinomial cannot draw a word of
    probability zero (a property of the sampler, not a finding), so under ``replace`` and
    ``accumulate`` a word once lost stays lost. (Under ``accumulate-subsample`` a word missed
    by one subsample can come back from the pool.) Fresh real data (``mix``) brings words back."""
    p0, m, t = _p0(), 300, 12
    paths = list(collapse.categorical_paths(p0, m, t, 200, regime=regime, temperature=temperature, seed=FRESH + 7))
    alive = [p > 0 for _, p in paths]
    assert alive[1].sum() < alive[0].sum()  # some words are lost, so the check has something to check
    assert all(not (a1 & ~a0).any() for a0, a1 in zip(alive, alive[1:]))
    df = collapse.categorical_chains(p0, m, t, 50, regime=regime, temperature=temperature, seed=FRESH + 7)
    assert df["revived"].sum() == 0
    mixed = collapse.categorical_chains(p0, m, t, 50, regime="mix", real_fraction=0.3, seed=FRESH + 7)
    assert mixed["revived"].sum() > 0


def test_drift_variance_factor_closed_forms():
    t = np.arange(50)
    np.testing.assert_allclose(collapse.drift_variance_factor(200, t), 1 - (1 - 1 / 200) ** t)
    np.testing.assert_allclose(collapse.drift_variance_factor(200, t, real_fraction=1.0), np.where(t > 0, 1 / 200, 0))
    v = collapse.drift_variance_factor(200, t, real_fraction=0.25)  # the recursion, step by step
    r, rec = 0.25, [0.0]
    for _ in t[1:]:
        rec.append(1 / 200 + rec[-1] * ((1 - r) ** 2 - (1 - r) / 200))
    np.testing.assert_allclose(v, rec)


@pytest.mark.parametrize("real_fraction", [0.0, 0.2])
def test_the_lumped_tail_mass_is_one_wright_fisher_frequency(real_fraction):
    """Var[Q_t] = q0 (1 - q0) v_t for the mass on the least-probable q (issue 17): the tail's
    words are multinomially dependent, and lumped together they drift as one type."""
    p0, m, t, chains = _p0(), 400, 25, 6000
    *_, (_, final) = collapse.categorical_paths(p0, m, t, chains, regime="mix", real_fraction=real_fraction, seed=FRESH)
    Q = pd.Series(metrics.tail_mass(final, p0, 0.1))
    q0 = float(metrics.tail_mass(p0, p0, 0.1))
    var = float(collapse.tail_mass_variance(q0, m, t, real_fraction=real_fraction))
    assert abs(Q.mean() - q0) < 4 * np.sqrt(var / chains)
    z2 = (Q.to_numpy() - q0) ** 2 / var  # mean 1, exactly
    assert abs(z2.mean() - 1) < 4 * z2.std() / np.sqrt(chains)
    # Had the tail's words drifted independently, the variance would be sum_i p_i (1 - p_i) v_t,
    # larger (their multinomial counts are negatively correlated) and, like q0 (1 - q0) v_t, not
    # reduced by splitting the mass among more words.
    tail = p0[metrics.tail_set(p0, 0.1)]
    independent = float((tail * (1 - tail)).sum()) * collapse.drift_variance_factor(m, t, real_fraction=real_fraction)
    assert var < independent


def test_categorical_gini_simpson_expectation_with_real_data():
    p0, m, t = _p0(), 500, 15
    df = collapse.categorical_chains(p0, m, t, 4000, regime="mix", real_fraction=0.3, seed=FRESH + 13)
    gs = _final(df, t)["gini_simpson"]
    theory = collapse.expected_gini_simpson(p0, m, t, real_fraction=0.3)
    assert abs(gs.mean() - theory) < 4 * gs.std() / np.sqrt(len(gs))
    assert theory > collapse.expected_gini_simpson(p0, m, t)  # real data slows the decay


def test_temperature_below_one_drains_the_expected_tail():
    p0 = _p0()
    df = collapse.categorical_chains(p0, 2000, 10, 100, regime="replace", temperature=0.8, seed=FRESH + 8)
    assert _final(df, 10)["tail_mass"].mean() < 0.5 * metrics.tail_mass(p0, p0, 0.1)


def test_frequency_deciles_rank_most_frequent_first():
    p = np.array([0.05, 0.4, 0.1, 0.3, 0.15])
    np.testing.assert_array_equal(frequency_deciles(p, 5), [5, 1, 4, 2, 3])
    bins = frequency_deciles(_p0(), 10)
    assert np.bincount(bins)[1:].tolist() == [30] * 10
    with pytest.raises(ValueError, match="n_bins"):
        frequency_deciles(p, 6)


def test_word_run_measures_the_same_chains_as_categorical_chains():
    p0 = _p0()
    kw = dict(m=300, generations=10, chains=40, real_fraction=0.1, temperature=1.0, q=0.1, seed=FRESH + 9)
    run = word_run(p0, **kw)
    ref = collapse.categorical_chains(
        p0, 300, 10, 40, regime="mix", real_fraction=0.1, q=0.1, seed=FRESH + 9, temperature=1.0
    )
    for col in ("gini_simpson", "tail_mass"):
        np.testing.assert_allclose(run.chains[col].to_numpy(), ref[col].to_numpy())
    np.testing.assert_allclose(run.chains["vocabulary"].to_numpy(), ref["surviving"].to_numpy() / p0.size)
    s = _final(run.deciles, 10).groupby("decile")["surviving_share"].mean()
    assert s.loc[1] > s.loc[10]  # rare words go first
    assert set(run.deciles.columns) == {"chain", "generation", "decile", "surviving_share"}
    g0 = run.chains[run.chains.generation == 0]
    assert (g0["tail_words"] == 1).all() and np.allclose(g0["tail_word_ratio"], 1)


def _tails_functions():
    for info in pkgutil.iter_modules(tails_pkg.__path__, tails_pkg.__name__ + "."):
        if info.name.endswith(".spec"):
            continue
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if not name.startswith("_") and inspect.isfunction(obj) and obj.__module__ == mod.__name__:
                yield f"{info.name}.{name}", obj


def test_the_spec_is_the_only_place_a_chapter_parameter_has_a_default():
    """One source for every default: no function of the chapter's package gives a default to a
    parameter the spec declares (by name, or by meaning: ``chains`` is ``word_chains``)."""
    declared = set(SPEC.names) | {"chains"}
    functions = list(_tails_functions())
    assert functions, "the package has public functions to check"
    offending = [
        f"{name}({p.name}=...)"
        for name, fn in functions
        for p in inspect.signature(fn).parameters.values()
        if p.name in declared and p.default is not inspect.Parameter.empty
    ]
    assert not offending, f"defaults competing with the spec: {offending}"


def test_recursive_fit_generic_loop_matches_gaussian_engine_shape():
    def fit(x, rng):
        return (x.mean(), x.var())

    def sample(model, n, rng):
        return model[0] + np.sqrt(model[1]) * rng.standard_normal(n)

    def measure(model, t):
        return {"variance": model[1]}

    out = collapse.recursive_fit(
        fit,
        sample,
        measure,
        real_sample=lambda n, rng: rng.standard_normal(n),
        n=10,
        generations=30,
        regime="replace",
        seed=FRESH,
    )
    assert list(out.columns) == ["generation", "quantity", "value"] and len(out) == 31
    acc = collapse.recursive_fit(
        fit,
        sample,
        measure,
        real_sample=lambda n, rng: rng.standard_normal(n),
        n=10,
        generations=30,
        regime="accumulate",
        concat=np.concatenate,
        seed=FRESH,
    )
    assert acc["value"].iloc[-1] > out["value"].iloc[-1]


def test_engines_are_deterministic():
    a = collapse.gaussian_chains(10, 5, 50, regime="accumulate-subsample", seed=3)
    b = collapse.gaussian_chains(10, 5, 50, regime="accumulate-subsample", seed=3)
    c = collapse.gaussian_chains(10, 5, 50, regime="accumulate-subsample", seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    p0 = _p0()
    pd.testing.assert_frame_equal(
        collapse.categorical_chains(p0, 100, 5, 10, regime="mix", real_fraction=0.2, seed=1),
        collapse.categorical_chains(p0, 100, 5, 10, regime="mix", real_fraction=0.2, seed=1),
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(regime="recycle"), "regime must be one of"),
        (dict(regime="mix", real_fraction=1.5), "real_fraction must lie in"),
        (dict(regime="mix", real_fraction=-0.1), "real_fraction must lie in"),
        (dict(regime="replace", real_fraction=0.5), "real_fraction applies to regime 'mix' only"),
        (dict(regime="replace", n=1), "n must be an integer >= 2"),
        (dict(regime="replace", chains=0), "chains must be an integer >= 1"),
        (dict(regime="replace", fit="map"), "fit must be one of"),
        (dict(regime="replace", temperature=0.0), "temperature must be > 0"),
    ],
)
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
