"""Metrics against independent computations and their defining properties."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from vanishing_tails.core import metrics

weights = arrays(
    np.float64, st.integers(1, 40), elements=st.floats(0.0, 1e3, allow_nan=False, allow_infinity=False)
).filter(lambda w: w.sum() > 1e-9)


@given(weights)
@settings(max_examples=200, deadline=None)
def test_entropy_bounded_by_log_k_with_equality_only_for_uniform(w):
    p = w / w.sum()
    h = metrics.entropy(p)
    k = p.size
    assert -1e-12 <= h <= math.log(k) + 1e-9
    if not np.allclose(p, 1.0 / k):
        assert h < math.log(k) - 1e-12
    assert h == pytest.approx(stats.entropy(p), abs=1e-10)


def test_entropy_uniform_equals_log_k_and_batches():
    batch = np.stack([np.full(8, 1 / 8), np.eye(8)[0]])
    np.testing.assert_allclose(metrics.entropy(batch), [math.log(8), 0.0], atol=1e-12)
    assert metrics.entropy(np.ones(4), base=2) == pytest.approx(2.0)


@given(weights)
@settings(max_examples=100, deadline=None)
def test_gini_simpson_is_probability_two_draws_differ(w):
    p = w / w.sum()
    differ = sum(p[i] * p[j] for i in range(p.size) for j in range(p.size) if i != j)
    assert metrics.gini_simpson(p) == pytest.approx(differ, abs=1e-9)
    assert metrics.support_size(p) == int(np.sum(p > 0))


@given(weights, st.floats(0.01, 0.99))
@settings(max_examples=200, deadline=None)
def test_tail_mass_of_reference_is_q_up_to_boundary_atom(w, q):
    p = w / w.sum()
    tm = metrics.tail_mass(p, p, q)
    assert tm <= q + 1e-9
    assert tm > q - p.max() - 1e-9  # the excluded boundary atom is at most the largest atom


def test_tail_set_takes_least_probable_first():
    ref = np.array([0.5, 0.05, 0.3, 0.15])
    np.testing.assert_array_equal(metrics.tail_set(ref, 0.2), [False, True, False, True])
    assert metrics.tail_mass(np.array([0.0, 0.5, 0.0, 0.5]), ref, 0.2) == pytest.approx(1.0)


def test_kl_and_total_variation_against_scipy():
    rng = np.random.default_rng(7)
    p, q = rng.dirichlet(np.ones(30)), rng.dirichlet(np.ones(30))
    assert metrics.kl_divergence(p, q) == pytest.approx(stats.entropy(p, q))
    assert metrics.total_variation(p, q) == pytest.approx(0.5 * np.abs(p - q).sum())
    assert metrics.kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)


def test_distinct_n_and_ngram_entropy_by_hand():
    texts = ["a b a b", "a b c"]
    # bigrams: (a b) (b a) (a b) | (a b) (b c) -> 3 unique of 5
    assert metrics.distinct_n(texts, 2) == pytest.approx(3 / 5)
    assert metrics.distinct_n(texts, 1) == pytest.approx(3 / 7)
    assert metrics.distinct_n(["a"], 2) == 0.0
    assert metrics.ngram_entropy(["x x y y"], 1) == pytest.approx(math.log(2))


def test_self_bleu_identical_vs_disjoint():
    same = metrics.self_bleu(["the cat sat on the mat"] * 4)
    different = metrics.self_bleu(
        [
            "the cat sat on the mat",
            "dogs run far away quickly",
            "blue skies over green hills",
            "one two three four five",
        ]
    )
    assert same == pytest.approx(100.0)
    assert different < 5.0


@given(st.integers(1, 12), st.integers(1, 6), st.integers(0, 3))
@settings(max_examples=100, deadline=None)
def test_vendi_score_between_one_and_n(n, d, seed):
    X = np.random.default_rng(seed).normal(size=(n, d))
    vs = metrics.vendi_score(X)
    assert 1.0 - 1e-9 <= vs <= n + 1e-9


def test_vendi_score_extremes():
    assert metrics.vendi_score(np.ones((5, 3))) == pytest.approx(1.0)
    assert metrics.vendi_score(np.eye(6)) == pytest.approx(6.0)
    # two identical clusters of orthogonal points: effective number 2
    X = np.vstack([np.tile([1.0, 0.0], (3, 1)), np.tile([0.0, 1.0], (3, 1))])
    assert metrics.vendi_score(X) == pytest.approx(2.0)


def _pass_at_k_by_enumeration(n, c, k):
    items = [1] * c + [0] * (n - c)
    subsets = list(combinations(range(n), k))
    return sum(any(items[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n,c,k", [(5, 0, 2), (5, 1, 1), (6, 2, 3), (7, 3, 5), (4, 4, 2), (8, 1, 8)])
def test_pass_at_k_matches_enumeration(n, c, k):
    assert metrics.pass_at_k(n, c, k) == pytest.approx(_pass_at_k_by_enumeration(n, c, k))


@given(st.integers(1, 300), st.data())
@settings(max_examples=200, deadline=None)
def test_pass_at_k_monotone_and_c_over_n_at_k1(n, data):
    c = data.draw(st.integers(0, n))
    ks = np.arange(1, n + 1)
    vals = metrics.pass_at_k(n, c, ks)
    assert vals[0] == pytest.approx(c / n)
    assert np.all(np.diff(vals) >= -1e-12)
    assert np.all((vals >= 0) & (vals <= 1 + 1e-12))


def test_pass_at_k_bad_input():
    with pytest.raises(ValueError, match="k must"):
        metrics.pass_at_k(10, 2, 11)
    with pytest.raises(ValueError, match="c must"):
        metrics.pass_at_k(10, 11, 1)


def test_expected_distinct_against_simulation():
    rng = np.random.default_rng(2024)
    p = rng.dirichlet(np.full(20, 0.5))
    draws = rng.multinomial(15, p, size=20000)
    sim = (draws > 0).sum(1)
    assert metrics.expected_distinct(p, 15) == pytest.approx(sim.mean(), abs=4 * sim.std() / np.sqrt(len(sim)))


def test_distributions_reject_bad_weights():
    with pytest.raises(ValueError, match="non-negative"):
        metrics.entropy(np.array([0.5, -0.1]))
    with pytest.raises(ValueError, match="positive total"):
        metrics.entropy(np.zeros(3))
    with pytest.raises(ValueError, match="q must"):
        metrics.tail_mass(np.ones(3), np.ones(3), 1.5)


def test_precision_recall_identical_disjoint_and_bad_input():
    X = np.random.default_rng(5).normal(size=(50, 3))
    assert metrics.precision_recall(X, X, k=3) == (1.0, 1.0)  # every point lies in its own ball
    p, r = metrics.precision_recall(X, X + 100.0, k=3)
    assert p == 0 and r == 0
    with pytest.raises(ValueError, match="k must"):
        metrics.precision_recall(X, X, k=50)
    with pytest.raises(ValueError, match="dimension"):
        metrics.precision_recall(X, X[:, :2], k=3)


def test_precision_recall_oracle_dropped_mode_and_outliers():
    """A generator that drops one of two equal, far-apart real modes and adds a share eps of far
    outliers: recall -> 1/2 (times the same-law recall), precision -> 1 - eps (times the same-law
    precision). Batched over 6 independent pairs."""
    rng = np.random.default_rng(8117)
    B, n, eps = 6, 1200, 0.1
    mode = rng.integers(0, 2, (B, n))[..., None]
    real = rng.normal(size=(B, n, 2)) + 40.0 * mode
    same = rng.normal(size=(B, n, 2)) + 40.0 * rng.integers(0, 2, (B, n))[..., None]
    one_mode = rng.normal(size=(B, n, 2))
    out = rng.random((B, n, 1)) < eps
    gen = np.where(out, rng.normal(size=(B, n, 2)) * 0.3 + 20.0, one_mode)  # outliers halfway, far from both
    p_same, r_same = metrics.precision_recall(real, same, k=3)
    p, r = metrics.precision_recall(real, gen, k=3)
    assert p.shape == (B,) and (p_same > 0.8).all() and (r_same > 0.8).all()
    assert np.mean(r / r_same) == pytest.approx(np.mean(mode == 0), abs=0.03)
    assert np.mean(p / p_same) == pytest.approx(1 - out.mean(), abs=0.03)
