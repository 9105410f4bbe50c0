"""Speed of chapter 9's coverage curves, printed as ratios against a loop over N.

Target (issue 14): the coverage curves are computed for all N at once. The oracle
``expected_coverage`` (one broadcast of exp(N log(1 - p))) against a Python loop that
evaluates sum_l 1 - (1 - p_l)^N for one N at a time; the simulated ``coverage_curve`` (each
leaf's first occurrence found once) against a loop that counts the distinct leaves of every
prefix. Sizes are the chapter's book scale with 64 seeds and a geometric grid of up to 200 values of N.
Run: ``python benchmarks/bench_coverage.py``.
"""

from __future__ import annotations

import numpy as np
from timing import best_of

from vanishing_tails.experiments.coverage import samplers


def main() -> None:
    rows, n_leaves, n_max = 64, 100, 6400
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(n_leaves, 0.2), size=rows)
    grid = np.unique(np.geomspace(1, n_max, 200).astype(int))

    def oracle_loop():
        return np.stack([[np.sum(1.0 - (1.0 - row) ** n) for n in grid] for row in p])

    assert np.allclose(samplers.expected_coverage(p, grid), oracle_loop())
    t_vec = best_of(lambda: samplers.expected_coverage(p, grid))
    t_loop = best_of(oracle_loop)
    print(
        f"expected_coverage  {rows} seeds x {grid.size} N x {n_leaves} leaves: vectorised {1e3 * t_vec:7.2f} ms, "
        f"loop over N {1e3 * t_loop:7.2f} ms, speed-up {t_loop / t_vec:5.1f}x (target > 1)"
    )

    stream = samplers.draw_leaves(p, n_max, rng)

    def curve_loop():
        return np.stack([[np.unique(row[:n]).size for n in grid] for row in stream])

    assert np.array_equal(samplers.coverage_curve(stream, n_leaves, grid), curve_loop())
    t_vec = best_of(lambda: samplers.coverage_curve(stream, n_leaves, grid))
    t_loop = best_of(curve_loop)
    print(
        f"coverage_curve     {rows} seeds x {grid.size} N, streams of {n_max}: vectorised {1e3 * t_vec:7.2f} ms, "
        f"loop over N {1e3 * t_loop:7.2f} ms, speed-up {t_loop / t_vec:5.1f}x (target > 1)"
    )


if __name__ == "__main__":
    main()
