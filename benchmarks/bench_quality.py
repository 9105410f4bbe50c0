"""Speed of chapter 7's knob grid (``experiments.quality.grid`` and ``experiments.quality.model``).

Fits the models of the grid and prints the speed-ups of batching: one cell's seeds in one
batched model (stacked weights ``[seeds, F]``, batched Newton steps) against fitting the
seeds one by one; and the whole grid the chapter's way, cell by cell with each cell's seeds
batched, against model by model (and, for comparison, every cell × seed in one batch).
Sizes are the spec's preset of the chosen scale. Run:
``OMP_NUM_THREADS=1 python benchmarks/bench_quality.py [--scale smoke|book]``.
"""

from __future__ import annotations

import argparse
import itertools

import torch
from timing import best_of

from vanishing_tails.experiments.quality import model, task
from vanishing_tails.experiments.quality.spec import SPEC


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", default="smoke", choices=("smoke", "book"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    P = SPEC.resolve(scale=args.scale)
    S, K = P["n_seeds"], P["n_segments"]
    phase = task.make_phases(S, seed=0)
    shape = dict(amplitude=P["amplitude"], period=P["period"])
    cells = list(itertools.product(P["qualities"], P["coverages"], P["hard_shares"]))
    data = [
        task.knob_data(
            phase,
            budget=P["budget"],
            n_segments=K,
            covered=c,
            noise=1 - q,
            hard_share=h,
            hard_band=P["hard_band"],
            **shape,
            seed=i,
        )  # fmt: skip
        for i, (q, c, h) in enumerate(cells)
    ]
    X = [model.features(d["u"], d["v"], n_segments=K) for d in data]
    Y = [d["y"] for d in data]
    fit = dict(ridge=P["ridge"], newton_steps=P["newton_steps"])
    print(
        f"{args.scale}: {len(cells)} cells x {S} seeds, {P['budget']} examples, {X[0].shape[-1]} features, "
        f"{P['newton_steps']} Newton steps, 1 thread"
    )

    t_cell = best_of(lambda: model.fit(X[0], Y[0], **fit))
    t_seeds = best_of(lambda: [model.fit(X[0][s : s + 1], Y[0][s : s + 1], **fit) for s in range(S)])
    print(
        f"one cell: {S} seeds in one batched model {1e3 * t_cell:.1f} ms; one by one {1e3 * t_seeds:.1f} ms; "
        f"speed-up {t_seeds / t_cell:.1f}x"
    )

    X_all, Y_all = torch.cat(X), torch.cat(Y)
    t_grid = best_of(lambda: model.fit(X_all, Y_all, **fit))
    t_cells = best_of(lambda: [model.fit(x, y, **fit) for x, y in zip(X, Y)])
    t_each = best_of(lambda: [model.fit(x[s : s + 1], y[s : s + 1], **fit) for x, y in zip(X, Y) for s in range(S)], 1)
    print(
        f"whole grid: cell by cell, seeds batched (the chapter) {t_cells:.2f} s; model by model {t_each:.2f} s; "
        f"speed-up {t_each / t_cells:.1f}x (all {len(cells) * S} models in one batch: {t_grid:.2f} s)"
    )


if __name__ == "__main__":
    main()
