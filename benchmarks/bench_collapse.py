"""Speed of the chapter-1 engines, printed as ratios against bare numpy sampling.

Targets (foundation issue): ``gaussian_chains`` with 10,000 chains x 100 generations x
n = 100 (1e8 draws) runs at no less than half the rate of bare ``rng.standard_normal``
calls of the same total size; ``categorical_chains`` likewise against a bare
``rng.multinomial`` of the same size. Run: ``python benchmarks/bench_collapse.py``.
"""

from __future__ import annotations

import numpy as np
from timing import best_of

from vanishing_tails.core import collapse, data


def main() -> None:
    chains, generations, n = 10_000, 100, 100
    draws = chains * generations * n

    def bare_normal():
        rng = np.random.default_rng(0)
        for _ in range(generations):
            rng.standard_normal((chains, n))

    t_bare = best_of(bare_normal)
    t_eng = best_of(lambda: collapse.gaussian_chains(n, generations, chains, regime="replace", seed=0))
    print(
        f"gaussian_chains   {draws:.1e} draws: engine {t_eng:6.2f} s, bare standard_normal {t_bare:6.2f} s, "
        f"rate ratio {t_bare / t_eng:.2f} (target >= 0.5)"
    )

    p0 = data.english_word_frequencies(20_000)["p"].to_numpy()
    m, wg, wc = 100_000, 30, 48

    def bare_multinomial():
        rng = np.random.default_rng(0)
        for _ in range(wg):
            rng.multinomial(m, np.broadcast_to(p0, (wc, p0.size)))

    t_bare = best_of(bare_multinomial)
    t_eng = best_of(lambda: collapse.categorical_chains(p0, m, wg, wc, regime="replace", seed=0))
    print(
        f"categorical_chains {wc}x{wg} multinomials over {p0.size} words, m={m}: engine {t_eng:6.2f} s, "
        f"bare multinomial {t_bare:6.2f} s, rate ratio {t_bare / t_eng:.2f} (target >= 0.5)"
    )


if __name__ == "__main__":
    main()
