"""Claims: intervals over replicates against exact values, and the verdict rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from vanishing_tails.book.claims import Claim, contradictions, evaluate, unexpected, verdict
from vanishing_tails.book.params import ChapterSpec, ClaimSpec, common_params
from vanishing_tails.core import stats


def test_mean_interval_is_students_t():
    x = np.array([1.0, 2.0, 4.0, 7.0, 11.0])
    iv = stats.mean_interval(x)
    lo, hi = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    assert iv.estimate == pytest.approx(x.mean()) and iv.n == 5
    assert (iv.low, iv.high) == pytest.approx((lo, hi))
    assert math.isnan(stats.mean_interval([3.0]).low)  # one replicate: no interval


def test_t_interval_covers_the_mean_95_percent_of_the_time():
    rng = np.random.default_rng(123)
    x = rng.normal(2.0, 3.0, size=(4000, 6))
    half = sps.t.ppf(0.975, 5) * x.std(axis=1, ddof=1) / np.sqrt(6)
    covered = np.abs(x.mean(axis=1) - 2.0) < half
    assert abs(covered.mean() - 0.95) < 0.015
    iv = stats.mean_interval(x[0])  # the library computes the same interval
    assert iv.high - iv.estimate == pytest.approx(half[0])


def test_paired_and_welch_differences():
    a = np.array([3.0, 4.0, 6.0, 5.0])
    b = np.array([1.0, 3.5, 4.0, 4.5])
    paired = stats.difference_interval(a, b, paired=True)
    assert paired.estimate == pytest.approx((a - b).mean())
    assert (paired.low, paired.high) == pytest.approx(sps.t.interval(0.95, 3, loc=(a - b).mean(), scale=sps.sem(a - b)))
    welch = stats.difference_interval(a, b, paired=False)
    res = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (welch.low, welch.high) == pytest.approx((res.low, res.high))
    with pytest.raises(ValueError):
        stats.difference_interval(a, b[:3], paired=True)


def test_no_spread_gives_no_interval_in_every_form():
    """Replicates that all agree (a measure at its floor) leave the interval undefined, so the
    claim is inconclusive, whether the difference is paired or Welch."""
    zeros = np.zeros(8)
    for iv in (
        stats.mean_interval(zeros),
        stats.difference_interval(zeros, zeros, paired=True),
        stats.difference_interval(zeros, zeros, paired=False),
    ):
        assert iv.estimate == 0.0 and iv.se == 0.0 and math.isnan(iv.low) and math.isnan(iv.high)


def test_bootstrap_interval_resamples_replicates_reproducibly():
    x = np.arange(20.0)
    one = stats.bootstrap_interval(x, np.median, seed=5)
    two = stats.bootstrap_interval(x, np.median, seed=5)
    assert one == two and one.estimate == 9.5 and one.low < 9.5 < one.high
    rho = stats.bootstrap_interval((x, x**2), lambda a, b: sps.spearmanr(a, b)[0], seed=1)
    assert rho.estimate == pytest.approx(1.0) and rho.low == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kind,low,high,delta,theory,expected",
    [
        ("direction", 0.6, 0.9, 0.5, None, "holds"),
        ("direction", 0.4, 0.9, 0.5, None, "inconclusive"),
        ("direction", 0.1, 0.4, 0.5, None, "fails"),
        ("equivalence", -0.05, 0.08, 0.1, None, "holds"),
        ("equivalence", -0.05, 0.2, 0.1, None, "inconclusive"),
        ("equivalence", 0.15, 0.3, 0.1, None, "fails"),
        ("direction", math.nan, math.nan, 0.5, None, "inconclusive"),
    ],
)
def test_verdicts_follow_the_interval(kind, low, high, delta, theory, expected):
    assert verdict(kind, (low + high) / 2, low, high, 0.1, delta, theory) == expected


def test_oracle_verdict_is_four_standard_errors_plus_delta():
    assert verdict("oracle", 1.0, 0.8, 1.2, 0.1, 0.0, 1.35) == "holds"
    assert verdict("oracle", 1.0, 0.8, 1.2, 0.1, 0.0, 1.45) == "fails"
    assert verdict("oracle", 1.0, 0.8, 1.2, 0.1, 0.1, 1.45) == "holds"


SPEC = ChapterSpec(
    stem="99_test", short="test", title="t", description="d", params=tuple(common_params(3)),
    claims=(
        ClaimSpec("up", "x rises by more than {d}", "rise per seed", "direction", 0.5, "stated minimum", "seeds"),
        ClaimSpec("exact", "matches theory", "value per seed", "oracle", 0.0, "exact theory", "seeds",
                  source="theory"),
        ClaimSpec("notes-wrong", "the notes say so", "gap per seed", "direction", 0.2, "stated", "seeds",
                  expected="fails"),
    ),
)  # fmt: skip


def test_evaluate_takes_delta_kind_and_expectation_from_the_spec():
    c = evaluate(SPEC, "up", [1.0, 1.2, 0.9, 1.1], d=0.5)
    assert isinstance(c, Claim) and c.statement == "x rises by more than 0.5"
    assert c.delta == 0.5 and c.kind == "direction" and c.verdict == "holds" and c.n == 4 and c.unit == "seeds"
    o = evaluate(SPEC, "exact", [1.0, 1.1, 0.9], theory=1.0)
    assert o.verdict == "holds"
    with pytest.raises(ValueError, match="theory"):
        evaluate(SPEC, "exact", [1.0, 1.1])
    with pytest.raises(ValueError, match="no claim 'nope'"):
        evaluate(SPEC, "nope", [1.0])
    f = evaluate(SPEC, "notes-wrong", [0.0, 0.05, -0.02, 0.01])
    assert f.verdict == "fails" and not contradictions([f.as_dict()]) and not unexpected([f.as_dict()])
    wrong = evaluate(SPEC, "up", [0.0, 0.1, -0.1, 0.05])
    assert wrong.verdict == "fails" and contradictions([wrong.as_dict()])


def test_claim_specs_refuse_undeclared_delta_sources_and_bad_kinds():
    with pytest.raises(ValueError, match="delta_source"):
        ClaimSpec("a", "s", "e", "direction", 0.1, " ", "seeds")
    with pytest.raises(ValueError, match="kind"):
        ClaimSpec("a", "s", "e", "bigger", 0.1, "x", "seeds")
    with pytest.raises(ValueError, match="equivalence claim needs delta > 0"):
        ClaimSpec("a", "s", "e", "equivalence", 0.0, "x", "seeds")
    with pytest.raises(ValueError, match="null configuration names unknown parameter"):
        ChapterSpec("99_t", "t", "t", "d", tuple(common_params(3)), null={"temperature": 1.0})
