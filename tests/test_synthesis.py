"""Chapter 10: the common interface tested on every experiment, and the synthesis' statistics
against exact answers on fresh seeds (never the chapter's dev seeds 0/1 nor the test seeds)."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from vanishing_tails.core import tails
from vanishing_tails.experiments.synthesis import analysis, collect
from vanishing_tails.experiments.synthesis.spec import ENTRIES, SPEC

FRESH = 5150
MODULES = (collect, analysis)


# ----------------------------------------------------------------------------- the spec's entries
@pytest.mark.parametrize("name", list(ENTRIES))
def test_every_entry_fills_its_interface_exactly(name):
    """Each entry's presets, replicates, q and seed are exactly the interface's arguments."""
    entry = ENTRIES[name]
    keys = {"chapter", "module", "replicates", "kwargs", "scales", "null", "baselines", "interventions", "real_data"}
    assert keys <= set(entry)
    params = inspect.signature(collect.trajectory_function(name)).parameters
    required = {k for k, p in params.items() if p.default is inspect.Parameter.empty} - {"seed"}
    for scale in ("smoke", "book", "full"):
        kw = collect.entry_kwargs(name, scale, n_seeds=3, q=0.1, null=False)
        assert required <= set(kw) <= set(params) - {"seed"}, (scale, required - set(kw), set(kw) - set(params))
    assert set(entry["null"]) <= set(params)
    for arm, base, label in entry["interventions"]:
        assert base in entry["baselines"] and arm != base and label


@pytest.mark.parametrize("name", list(ENTRIES))
def test_every_size_is_written_once(name):
    """A size the same at every scale lives in ``kwargs``; a scale's override only where it differs."""
    entry = ENTRIES[name]
    assert set(entry["scales"]) == {"smoke", "book"}
    smoke, book = entry["scales"]["smoke"], entry["scales"]["book"]
    assert not (set(smoke) | set(book)) & set(entry["kwargs"]), "a scale repeats a common size"
    assert not [k for k in set(smoke) & set(book) if smoke[k] == book[k]], "both scales repeat a size"


def test_replicates_follow_n_seeds_and_null_overrides_apply():
    kw = collect.entry_kwargs("tails", "smoke", n_seeds=3, q=0.05, null=True)
    assert kw["word_chains"] == 9 and kw["n_seeds"] == 30 and kw["q"] == 0.05 and kw["real_fraction"] == 1.0
    kw = collect.entry_kwargs("formats", "book", n_seeds=1, q=0.05, null=False)
    assert kw["n_pretrain"] == 2 and kw["q"] == 0.2  # at least two replicates; the entry's own q wins
    with pytest.raises(ValueError, match="unknown experiment"):
        collect.trajectory_function("nope")


def test_spec_presets_null_and_checks():
    for scale in ("smoke", "book", "full"):
        SPEC.resolve(scale=scale)
    P = SPEC.resolve(scale="smoke", **SPEC.null)
    assert P["null_experiments"] is True
    assert all(c.kind != "direction" or c.delta > 0 for c in SPEC.claims)  # a zero effect can never hold
    assert any(c.kind == "equivalence" for c in SPEC.claims), "a claim that could refute the restated thesis"
    with pytest.raises(ValueError, match="experiments"):
        SPEC.resolve(scale="smoke", experiments=["coverage", "coverage"])
    with pytest.raises(ValueError, match="experiments"):
        SPEC.resolve(scale="smoke", experiments=["nope"])


def test_no_engine_default_for_a_spec_parameter():
    names = set(SPEC.names)
    offenders = []
    for module in MODULES:
        for fname, fn in inspect.getmembers(module, inspect.isfunction):
            if fname.startswith("_") or fn.__module__ != module.__name__:
                continue
            offenders += [f"{module.__name__}.{fname}({p.name})" for p in inspect.signature(fn).parameters.values()
                          if p.name in names and p.default is not inspect.Parameter.empty]  # fmt: skip
    assert not offenders, offenders


# ----------------------------------------------------------------------------- the interface, every experiment
@pytest.mark.parametrize("name", list(ENTRIES))
def test_every_experiment_meets_the_common_interface(name):
    frame = collect.collect([name], "smoke", n_seeds=2, q=0.1, null=False, seed=FRESH)  # checks columns and ranges
    assert list(frame.columns[:5]) == list(collect.ID_COLUMNS)
    assert set(tails.COLUMNS) <= set(frame.columns)
    assert set(frame.mechanism) <= set(tails.MECHANISMS)
    assert (frame.groupby(["experiment", "arm"]).step.min() == 0).all()
    assert frame.support.ge(0).all() and frame.q_tail_mass.ge(0).all() and frame.kl_from_start.ge(-1e-9).all()
    assert frame.error_mass.between(0, 1 + 1e-9).all() and frame.mode_share.between(0, 1 + 1e-9).all()
    arms = set(frame.arm)
    entry = ENTRIES[name]
    assert set(entry["baselines"]) <= arms
    assert {a for a, _, _ in entry["interventions"]} <= arms
    kw = collect.entry_kwargs(name, "smoke", n_seeds=2, q=0.1, null=False)
    assert set(collect.real_fractions(name, kw)) <= arms
    moved = frame[frame.arm.isin(entry["baselines"])].groupby("arm").kl_from_start.max()
    assert (moved > 0).all(), f"{name}: a baseline arm did not move"


@pytest.mark.parametrize("name", list(ENTRIES))
def test_on_the_null_the_tail_measures_do_not_move(name):
    frame = collect.collect([name], "smoke", n_seeds=2, q=0.1, null=True, seed=FRESH + 1)
    ends = analysis.endpoints(frame)
    change = ends.groupby(["experiment", "arm"])[["d_support", "d_q_tail_mass", "d_error_mass"]].mean().abs()
    assert (change["d_support"] < 0.05).all(), change
    assert (change["d_error_mass"] < 0.05).all(), change
    assert (change["d_q_tail_mass"] < 0.35).all(), change  # a finite sample of real data still wanders


def test_collect_is_reproducible_and_splits_experiments():
    a = collect.collect(["tails", "coverage"], "smoke", n_seeds=2, q=0.1, null=False, seed=FRESH + 2)
    b = collect.collect(["tails", "coverage"], "smoke", n_seeds=2, q=0.1, null=False, seed=FRESH + 2)
    pd.testing.assert_frame_equal(a, b)
    assert set(a.experiment) == {"tails-words", "tails-gauss", "coverage"}
    assert (a[a.experiment == "tails-words"].arm.str.startswith("words-")).all()
    assert set(a.attrs["cpu_s"]) == {"tails", "coverage"}


def test_check_interface_names_the_experiment():
    good = pd.DataFrame({"experiment": "x", "arm": "a", "replicate": 0, "step": [0, 1], "mechanism": "tilt",
                         **{c: 0.5 for c in tails.COLUMNS}})  # fmt: skip
    collect.check_interface(good, "x")
    with pytest.raises(ValueError, match="x: trajectory breaks.*error_mass"):
        collect.check_interface(good.assign(error_mass=1.5), "x")
    with pytest.raises(ValueError, match="x: trajectory lacks"):
        collect.check_interface(good.drop(columns="support"), "x")
    with pytest.raises(ValueError, match="mechanism"):
        collect.check_interface(good.assign(mechanism="magic"), "x")


def test_real_fractions_apply_lists_and_floors():
    kw = collect.entry_kwargs("tails", "smoke", n_seeds=2, q=0.1, null=False)
    f = collect.real_fractions("tails", kw)
    assert f["words-replace"] == 0.0 and f["gauss-mix-0.5"] == 0.5 and f["words-mix-0.02"] == 0.02
    assert set(collect.real_fractions("tails", {**kw, "real_fraction": 1.0}).values()) == {1.0}
    assert collect.real_fractions("quality", collect.entry_kwargs("quality", "smoke", n_seeds=2, q=0.1, null=False)) \
        == {"self-trained": 0.0, "real-mixed": 0.5}  # fmt: skip
    assert collect.samples_per_generation("tails", "tails-gauss", kw) == kw["n"]
    assert collect.real_fractions("search", {}) == {}


# ----------------------------------------------------------------------------- statistics, against exact answers
def _frame(values: dict, steps=(0, 1)) -> pd.DataFrame:
    """A trajectory frame from {(experiment, arm, mechanism): [[q_tail per step] per replicate]}."""
    rows = []
    for (exp, arm, mech), reps in values.items():
        for r, qs in enumerate(reps):
            for s, qv in zip(steps, qs, strict=True):
                rows.append({"experiment": exp, "arm": arm, "replicate": r, "step": s, "mechanism": mech,
                             "support": 1 - 0.1 * s, "q_tail_mass": qv, "error_mass": 0.0, "mode_share": 0.2,
                             "kl_from_start": 0.1 * s, "quality": 0.5 + 0.01 * s * (arm == "base")})  # fmt: skip
    return pd.DataFrame(rows)


def test_endpoints_take_first_and_last_step_per_replicate():
    fr = _frame({("e", "a", "tilt"): [[1.0, 0.4, 0.2], [1.0, 0.5, 0.3]]}, steps=(0, 1, 2))
    ends = analysis.endpoints(fr.sample(frac=1.0, random_state=FRESH))  # row order must not matter
    np.testing.assert_allclose(ends.d_q_tail_mass, [-0.8, -0.7])
    np.testing.assert_allclose(ends.d_tail_gap, [0.8, 0.7])
    np.testing.assert_allclose(ends.d_support, [-0.2, -0.2])


def test_rank_correlation_is_spearman_and_undefined_when_degenerate():
    rng = np.random.default_rng(FRESH)
    x, y = rng.normal(size=20), rng.normal(size=20)
    assert analysis.rank_correlation(x, y) == pytest.approx(sps.spearmanr(x, y).statistic)
    assert np.isnan(analysis.rank_correlation(x[:2], y[:2]))
    assert np.isnan(analysis.rank_correlation(np.ones(5), y[:5]))


def test_hierarchical_interval_of_constant_clusters_is_exact():
    table = pd.DataFrame({"experiment": np.repeat(["a", "b", "c"], 4), "arm": "x", "replicate": np.tile(range(4), 3),
                          "v": np.repeat([1.0, 2.0, 3.0], 4)})  # fmt: skip
    iv = analysis.hierarchical_interval(analysis.clusters(table, ["v"]), analysis.mean_of_means, seed=FRESH,
                                        n_resamples=200)  # fmt: skip
    assert iv.estimate == pytest.approx(2.0) and iv.n == 3
    assert 1.0 <= iv.low <= 2.0 <= iv.high <= 3.0


def test_hierarchical_interval_covers_the_mean_of_experiments():
    """Experiments with their own means (spread 0.3) and noisy replicates: the two-level
    bootstrap's 95% interval covers the grand mean in most of 40 fresh worlds."""
    rng = np.random.default_rng(FRESH + 3)
    hits = 0
    for w in range(40):
        mu = 0.5 + 0.3 * rng.normal(size=10)
        table = pd.DataFrame({"experiment": np.repeat(np.arange(10), 6), "arm": "x", "replicate": np.tile(range(6), 10),
                              "v": np.repeat(mu, 6) + rng.normal(size=60)})  # fmt: skip
        cl = analysis.clusters(table, ["v"])
        iv = analysis.hierarchical_interval(cl, analysis.mean_of_means, seed=FRESH + w, n_resamples=300)
        hits += iv.low <= 0.5 <= iv.high
    assert hits >= 32  # nominal 38; the percentile bootstrap over 10 clusters is a little narrow


def test_correlation_statistic_reads_every_row_of_every_experiment():
    fr = _frame({("e1", "a", "tilt"): [[1.0, 0.2]] * 2, ("e1", "b", "tilt"): [[1.0, 0.6]] * 2,
                 ("e2", "c", "tilt"): [[1.0, 0.9]] * 2})  # fmt: skip
    ends = analysis.endpoints(fr)
    ends["d_support"] = ends["d_q_tail_mass"] * 2  # a monotone relation: ρ = 1
    cl = analysis.clusters(ends, ["d_support", "d_q_tail_mass"])
    assert analysis.correlation_statistic([analysis._means(v) for v in cl.values], list(cl.rows)) == pytest.approx(1)


def test_intervention_effects_are_paired_differences():
    fr = _frame({("e", "base", "tilt"): [[1.0, 0.3], [1.0, 0.5]], ("e", "kept", "tilt"): [[1.0, 0.8], [1.0, 0.7]]})
    eff = analysis.intervention_effects(analysis.endpoints(fr), {"e": [("kept", "base", "bonus")]})
    np.testing.assert_allclose(eff.retained, [0.5, 0.2])
    np.testing.assert_allclose(eff.cost, [0.01, 0.01])  # the baseline's quality grew by 0.01 more
    over = _frame({("e", "base", "error"): [[1.0, 1.6]], ("e", "kept", "error"): [[1.0, 1.1]]})
    eff = analysis.intervention_effects(analysis.endpoints(over), {"e": [("kept", "base", "x")]})
    np.testing.assert_allclose(eff.retained, [0.5])  # a baseline that fills the tail: its smaller rise counts
    assert analysis.intervention_effects(analysis.endpoints(fr), {"e": [("absent", "base", "x")]}).empty


def test_real_data_value_is_the_slope_of_the_tail_gap():
    """q-tail mass 1 − 0.2·(1 − f)·step: the gap shrinks by 0.2·step per unit of real fraction."""
    rows = []
    for arm, f in (("f0", 0.0), ("f05", 0.5), ("f1", 1.0)):
        for r in range(2):
            for s in range(4):
                rows.append({"experiment": "e", "arm": arm, "replicate": r, "step": s, "mechanism": "resampling",
                             "support": 1.0, "q_tail_mass": 1 - 0.2 * (1 - f) * s})  # fmt: skip
    v = analysis.real_data_value(pd.DataFrame(rows), {"e": {"f0": 0.0, "f05": 0.5, "f1": 1.0}}, {"e": 100})
    np.testing.assert_allclose(v.sort_values(["replicate", "step"]).value, np.tile(0.2 * np.arange(4), 2), atol=1e-12)
    np.testing.assert_allclose(v.per_sample, v.value / 100)
    flat = analysis.real_data_value(pd.DataFrame(rows), {"e": {"f0": 1.0, "f05": 1.0}}, {"e": 100})
    assert flat.value.isna().all()  # every arm at one fraction: no slope


def test_partings_name_the_pattern():
    fr = _frame({("e", "martingale", "resampling"): [[1.0, 1.02], [1.0, 0.98]],
                 ("e", "tilted", "tilt"): [[1.0, 0.4], [1.0, 0.5]]})  # fmt: skip
    fr.loc[(fr.arm == "martingale") & (fr.step == 1), "support"] = 0.7
    parts = analysis.partings(analysis.endpoints(fr), delta_support=0.05, delta_mass=0.1).set_index("arm")
    assert parts.loc["martingale", "pattern"] == "part: outcomes vanish, mass stays" and parts.loc["martingale", "part"]
    assert parts.loc["tilted", "pattern"] == "together: outcomes and mass leave" and not parts.loc["tilted", "part"]


def test_mean_of_means_weights_experiments_equally():
    means = [np.array([[1.0], [3.0]]), np.array([[10.0]])]
    assert analysis.mean_of_means(means, [("a", "b"), ("c",)]) == pytest.approx((2.0 + 10.0) / 2)
    assert np.isnan(analysis.mean_of_means([np.array([[np.nan]])], [("a",)]))
