"""Chapter 1's common trajectory (issue #15) and the exact curves its figures draw (issue #17),
tested against theory on seeds no chapter uses."""

from __future__ import annotations

import numpy as np
import pytest

from vanishing_tails.core import collapse, metrics, tails
from vanishing_tails.experiments.tails import scaling, words
from vanishing_tails.experiments.tails import trajectory as traj_mod

FRESH = 60606  # a seed no chapter uses

TINY = dict(top_n=300, m=2000, word_generations=6, word_chains=5, n=50, generations=8, n_seeds=6, q=0.1,
            temperature=0.8, real_fraction=0.0, real_fractions=[0.0, 0.5], n_support=100)  # fmt: skip


@pytest.fixture(scope="module")
def traj():
    return traj_mod.trajectory(**TINY, seed=FRESH)


def test_trajectory_has_the_common_columns_with_sane_ranges(traj):
    assert list(traj.columns) == ["experiment", "arm", "replicate", "step", "mechanism", *tails.COLUMNS]
    assert (traj.experiment == "tails").all() and set(traj.mechanism) <= set(tails.MECHANISMS)
    assert set(traj.arm) == {
        "words-replace", "words-tempered", "words-accumulate", "words-mix-0", "words-mix-0.5",
        "gauss-replace", "gauss-tempered", "gauss-accumulate", "gauss-accumulate-subsample",
        "gauss-mix-0", "gauss-mix-0.5",
    }  # fmt: skip
    mech = traj.groupby("arm")["mechanism"].first()
    assert mech["words-tempered"] == mech["gauss-tempered"] == "tilt" and mech["words-replace"] == "resampling"
    sizes = traj.groupby("arm").size()
    assert sizes["words-replace"] == 5 * 7 and sizes["gauss-replace"] == 6 * 9
    assert traj.groupby("arm")["replicate"].nunique()["words-mix-0.5"] == 5
    assert (traj.support >= 0).all() and (traj.q_tail_mass >= 0).all()
    assert traj.error_mass.between(0, 1).all() and traj.mode_share.between(0, 1).all()
    assert (traj.kl_from_start >= 0).all() and np.isfinite(traj[list(tails.COLUMNS)]).all().all()
    start = traj[traj.step == 0]
    np.testing.assert_allclose(start[["support", "q_tail_mass"]], 1.0)
    np.testing.assert_allclose(start[["kl_from_start", "quality"]], 0.0, atol=1e-12)
    assert (traj[traj.arm.str.startswith("words")].error_mass == 0).all()  # counts never invent a word


def test_trajectory_is_reproducible(traj):
    again = traj_mod.trajectory(**TINY, seed=FRESH)
    assert again.equals(traj)
    other = traj_mod.trajectory(**TINY, seed=FRESH + 1)
    assert not np.allclose(other.q_tail_mass, traj.q_tail_mass)


def test_the_tilted_arms_lose_the_tail_and_gain_quality(traj):
    last = traj[traj.step == traj.groupby("arm").step.transform("max")].groupby("arm").mean(numeric_only=True)
    for model in ("words", "gauss"):
        assert last.loc[f"{model}-tempered", "q_tail_mass"] < 0.5 < last.loc[f"{model}-replace", "q_tail_mass"]
        assert last.loc[f"{model}-tempered", "quality"] > last.loc[f"{model}-replace", "quality"]


def test_trajectory_does_not_move_under_the_null():
    null = traj_mod.trajectory(**(TINY | dict(real_fraction=1.0, m=20000, n=5000)), seed=FRESH + 2)
    per_arm = null.groupby(["arm", "step"])[list(tails.COLUMNS)].mean()
    assert np.abs(per_arm["q_tail_mass"] - 1).max() < 0.06
    assert np.abs(per_arm["support"] - 1).max() < 0.02
    assert per_arm["kl_from_start"].max() < 0.02 and np.abs(per_arm["quality"]).max() < 0.02


def test_gaussian_measures_are_exact_where_theory_is_closed():
    m = traj_mod.gaussian_measures(np.array([0.0, 0.0, 3.0]), np.array([1.0, 0.25, 1.0]), q=0.1, n_support=50)
    assert m.support.iloc[0] == pytest.approx(1.0) and m.q_tail_mass.iloc[0] == pytest.approx(1.0)
    assert m.support.iloc[1] < 1 and m.q_tail_mass.iloc[1] < 0.1  # a narrower model: less support, tail
    assert m.kl_from_start.tolist() == pytest.approx([0.0, 0.5 * (0.25 - 1 - np.log(0.25)), 4.5])
    assert m.quality.tolist() == pytest.approx([0.0, 0.375, -4.5])
    assert m.error_mass.iloc[0] == pytest.approx(6.334e-5, rel=1e-3)
    assert m.error_mass.iloc[2] == pytest.approx(0.158655, rel=1e-4)  # Phi(-1) + Phi(-7)
    with pytest.raises(ValueError, match="n_support"):
        traj_mod.gaussian_measures(np.zeros(1), np.ones(1), q=0.1, n_support=0)


@pytest.mark.parametrize(
    ("change", "match"),
    [({"real_fraction": 1.5}, "real_fraction"), ({"real_fractions": []}, "real_fractions"),
     ({"temperature": 1.5}, "temperature"), ({"n_support": 0}, "n_support")],
)  # fmt: skip
def test_trajectory_refuses_bad_input(change, match):
    with pytest.raises(ValueError, match=match):
        traj_mod.trajectory(**(TINY | change), seed=FRESH)


# ----------------------------------------------------------------------------- survival against expected count
def _zipf(k: int) -> np.ndarray:
    p = 1.0 / np.arange(1, k + 1) ** 1.1
    return p / p.sum()


def test_survival_probability_closed_forms():
    p0 = _zipf(50)
    s = words.survival_probability(p0, m=400, t=np.array([0, 1, 2, 7]), real_fraction=0.0)
    np.testing.assert_allclose(s[0], 1.0)
    np.testing.assert_allclose(s[1], 1 - (1 - p0) ** 400)  # one finite sample
    u1 = np.exp(-1.0)  # one copy's line extinct within one generation: Poisson(1) offspring, none
    np.testing.assert_allclose(s[2], 1 - (1 - p0 * (1 - u1)) ** 400)
    assert np.all(np.diff(s, axis=0) <= 1e-15)  # without real data survival only falls
    fresh = words.survival_probability(p0, m=400, t=np.array([1, 5, 30]), real_fraction=1.0)
    np.testing.assert_allclose(fresh, np.broadcast_to(1 - (1 - p0) ** 400, fresh.shape))  # a fresh sample each time
    subset = words.survival_probability(p0[-5:], m=400, t=np.array([3]), real_fraction=0.0)  # no renormalisation
    np.testing.assert_allclose(
        subset, words.survival_probability(p0, m=400, t=np.array([3]), real_fraction=0.0)[:, -5:]
    )
    with pytest.raises(ValueError, match="p0"):
        words.survival_probability(np.array([0.5, 1.5]), m=10, t=np.array([1]), real_fraction=0.0)


@pytest.mark.parametrize("real_fraction", [0.0, 0.1])
def test_survival_probability_against_wright_fisher(real_fraction):
    """Each word's presence after t generations of refitting by counts, over many chains,
    against the exact neutral expectation (fresh seed)."""
    p0, m, t, chains = _zipf(300), 3000, 10, 1500
    *_, (_, final) = collapse.categorical_paths(
        p0, m, t, chains, regime="mix", real_fraction=real_fraction, seed=FRESH + 10
    )
    present = final > 0
    theory = words.survival_probability(p0, m=m, t=np.array([t]), real_fraction=real_fraction)[0]
    share = present.mean(0)
    informative = (theory > 0.02) & (theory < 0.98)
    assert informative.sum() > 40
    se = np.sqrt(theory * (1 - theory) / chains)
    z = (share - theory)[informative] / se[informative]
    assert np.abs(z).max() < 5 and abs(z.mean()) < 4 / np.sqrt(informative.sum()) + 0.15
    vocab = present.mean(1)  # per chain (the replicates)
    assert abs(vocab.mean() - theory.mean()) < 4 * vocab.std(ddof=1) / np.sqrt(chains)


def test_survival_depends_on_the_expected_count_alone():
    """Same m·p0, different m: the same survival curve (up to the Binomial's O(count/m) correction)."""
    lam = np.array([0.3, 1.0, 3.0, 10.0])
    a = words.survival_probability(lam / 1e4, m=10_000, t=np.array([1, 20]), real_fraction=0.0)
    b = words.survival_probability(lam / 1e6, m=1_000_000, t=np.array([1, 20]), real_fraction=0.0)
    np.testing.assert_allclose(a, b, atol=2e-3)


# ----------------------------------------------------------------------------- the tempered arm
def test_tempering_compounds_to_an_effective_temperature():
    p0 = _zipf(100)
    p = p0.copy()
    for _ in range(6):
        p = collapse.temper(p, 0.9)
    np.testing.assert_allclose(p, collapse.temper(p0, 0.9**6), rtol=1e-10)


def test_a_large_corpus_follows_the_exact_tempered_curve_and_a_small_one_stays_above():
    p0 = _zipf(40)
    tail = metrics.tail_set(p0, 0.3)
    q0 = p0[tail].sum()
    t = 5
    limit = collapse.temper(p0, 0.8 ** (t - 1))[tail].sum() / q0
    for m, chains in ((2_000_000, 200), (300, 4000)):
        *_, (_, final) = collapse.categorical_paths(p0, m, t, chains, regime="replace", temperature=0.8, seed=FRESH + m)
        Q = final[:, tail].sum(1) / q0
        se = Q.std(ddof=1) / np.sqrt(chains)
        if m > 1000:  # counts in the thousands: the m -> oo curve is exact to O(1/count)
            assert abs(Q.mean() - limit) < 4 * se + 0.01 * limit
        else:  # a small corpus keeps more of the tempered tail (Jensen: E[p^(1/T)] > p^(1/T))
            assert Q.mean() > limit + 4 * se


# ----------------------------------------------------------------------------- halving time against n
def test_centred_halving_time_halves_the_tail_at_the_typical_variance():
    sd_star = scaling.half_tail_sd()
    assert float(collapse.gaussian_tail_mass(0.0, sd_star)) == pytest.approx(collapse.REAL_GAUSSIAN_TAIL_MASS / 2)
    for n in (10, 100, 1000):
        t = float(scaling.centred_halving_time(np.array(n)))
        log_var = collapse.expected_log_variance(n, t, "mle")  # linear in t: evaluate at the fractional time
        assert np.exp(log_var / 2) == pytest.approx(sd_star)
    ratio = scaling.centred_halving_time(np.array(10_000)) / scaling.centred_halving_time(np.array(1000))
    assert ratio == pytest.approx(10, rel=2e-3)  # linear in n


def test_crossing_time_interpolates_in_log():
    curve = np.array([[1.0, 1.0, 1.0], [0.8, 0.4, 1.0], [0.25, 0.2, 0.9]])
    t = scaling.crossing_time(curve, 0.5)
    assert t[0] == pytest.approx(1 + np.log(0.8 / 0.5) / np.log(0.8 / 0.25))
    assert t[1] == pytest.approx(np.log(1 / 0.5) / np.log(1 / 0.4)) and np.isnan(t[2])


def test_halving_time_grows_linearly_in_n():
    """The median chain's halving time at n = 50 and 500 (fresh seed): ratio near 10."""
    h = scaling.halving_times([50, 500], groups=1, chains_per_group=300, seed=FRESH)
    t = h.set_index("n")["t_half"]
    assert 5 < t[500] / t[50] < 18
    assert (h["centred"] > 0).all() and list(h.columns) == ["n", "group", "t_half", "centred"]
