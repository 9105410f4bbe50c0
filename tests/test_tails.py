"""The common tail measures against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from vanishing_tails.core import tails


def test_measures_of_the_reference_itself_are_neutral():
    r = np.array([0.5, 0.3, 0.15, 0.05, 0.0])
    m = tails.categorical_measures(r, r, r, q=0.2, n=10).iloc[0]
    assert m.support == pytest.approx(1.0) and m.q_tail_mass == pytest.approx(1.0)
    assert m.error_mass == 0.0 and m.mode_share == 0.5 and m.kl_from_start == pytest.approx(0.0)
    assert np.isnan(m.quality)
    assert tuple(tails.categorical_measures(r, r, r).columns) == tails.COLUMNS


def test_one_start_per_row_and_smoothing():
    """Each replicate's own start: row i's KL is from start i (0 where p equals it), smoothed
    KL as tails.kl_from_start; a start of another shape is refused."""
    r = np.array([0.5, 0.3, 0.15, 0.05, 0.0])
    p = np.array([[0.4, 0.3, 0.1, 0.0, 0.2], [0.7, 0.3, 0.0, 0.0, 0.0]])
    start = np.array([[0.6, 0.2, 0.1, 0.1, 0.0], p[1]])
    m = tails.categorical_measures(p, r, start, q=0.2, smoothing=0.01)
    assert m.kl_from_start.iloc[1] == 0.0
    pt, st = 0.99 * p[0] + 0.01 / 5, 0.99 * start[0] + 0.01 / 5
    assert m.kl_from_start.iloc[0] == pytest.approx((pt * np.log(pt / st)).sum(), rel=1e-12)
    assert np.isinf(tails.categorical_measures(p, r, start).kl_from_start.iloc[0])  # unsmoothed: outside start
    with pytest.raises(ValueError, match="start"):
        tails.categorical_measures(p, r, start[:, :4])


def test_measures_by_hand():
    r = np.array([0.5, 0.3, 0.15, 0.05, 0.0])
    p = np.array([[0.4, 0.3, 0.1, 0.0, 0.2], [0.7, 0.3, 0.0, 0.0, 0.0]])
    m = tails.categorical_measures(p, r, r, q=0.2, n=10, quality=[0.9, 0.8])
    # q = 0.2 of the reference's support: outcomes 3 and 2 (0.05 + 0.15)
    assert m.q_tail_mass.tolist() == pytest.approx([0.1 / 0.2, 0.0])
    assert m.error_mass.tolist() == pytest.approx([0.2, 0.0])
    assert m.mode_share.tolist() == [0.4, 0.7]
    exp_distinct = lambda x: np.sum(1 - (1 - x) ** 10)  # noqa: E731
    assert m.support.iloc[1] == pytest.approx(exp_distinct(p[1]) / exp_distinct(r))
    assert np.isinf(m.kl_from_start.iloc[0])  # mass outside the start's support
    assert m.kl_from_start.iloc[1] == pytest.approx(0.7 * np.log(0.7 / 0.5) + 0.3 * np.log(1.0))
    assert m.quality.tolist() == [0.9, 0.8]


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="must agree"):
        tails.categorical_measures(np.ones((2, 3)) / 3, np.ones(4) / 4, np.ones(4) / 4)
