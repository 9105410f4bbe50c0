"""Chapter 7's knob grid: every combination of quality, diversity and complexity, at one budget.

For each cell (a quality, a coverage, a hard share) and each seed, a training set of
``budget`` examples comes from :func:`~vanishing_tails.experiments.quality.task.knob_data`
and a model (:mod:`~vanishing_tails.experiments.quality.model`) is fitted to it. Seed
``s`` is the same task (the same boundary phase, the same ID and OOD test sets) in every
cell, so a contrast between cells is measured within a seed. All seeds of a cell are fitted
as one batched model (stacked weights ``[seeds, F]``; ``benchmarks/bench_quality.py`` times it
against fitting them one by one). Explained in :ref:`sec-quality-knobs`.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import torch

from . import model, task


def substream(seed: int, *key: int) -> int:
    """An integer seed derived from a call's ``seed`` and integer ``key`` parts (replicates
    and cells inside one call; distinct keys give independent streams).

    Explained in :ref:`sec-quality-knobs`.
    """
    ss = np.random.SeedSequence(int(seed), spawn_key=tuple(int(k) for k in key))
    return int(ss.generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> np.uint64(1))


def id_ood_segments(n_segments: int, n_core: int) -> tuple[np.ndarray, np.ndarray]:
    """The in-distribution segments (the ``n_core`` central ones, covered by every training
    set) and the out-of-distribution ones (all others).

    Explained in :ref:`sec-quality-task`.
    """
    core = task.central_segments(n_core, n_segments)
    return core, np.setdiff1d(np.arange(n_segments), core)


def test_sets(
    phase: torch.Tensor, *, n_segments: int, n_core: int, n_test: int, amplitude: float, period: float, seed: int
) -> dict[str, dict[str, torch.Tensor]]:
    """The clean ID and OOD test sets of each task (``n_test`` examples each).

    Explained in :ref:`sec-quality-task`.
    """
    core, ood = id_ood_segments(n_segments, n_core)
    kw = dict(n=n_test, n_segments=n_segments, amplitude=amplitude, period=period)
    return {
        "id": task.test_data(phase, core, **kw, seed=substream(seed, 0)),
        "ood": task.test_data(phase, ood, **kw, seed=substream(seed, 1)),
    }


def run_grid(
    *,
    qualities: list[float],
    coverages: list[int],
    hard_shares: list[float],
    n_seeds: int,
    budget: int,
    n_segments: int,
    n_core: int,
    hard_band: float,
    amplitude: float,
    period: float,
    ridge: float,
    newton_steps: int,
    n_test: int,
    seed: int,
) -> pd.DataFrame:
    """Fit one model per cell × seed and measure it: one row per cell and seed, with the
    knob levels (``quality``, ``coverage``, ``hard_share`` and their indices ``iq``, ``ic``,
    ``ih``), the training set's measured properties (``noise_rate``, ``diversity``,
    ``complexity``, :func:`~vanishing_tails.experiments.quality.task.measure`) and the
    accuracies ``id_acc`` and ``ood_acc`` on the clean test sets.

    Cells are keyed by the *positions* of their levels, so a list with a repeated level
    (the null configuration) gives independent replicates of one cell.
    Explained in :ref:`sec-quality-knobs`.
    """
    for c in coverages:
        if c < n_core:
            raise ValueError(f"every coverage must reach the {n_core} ID segments; got {c}")
    phase = task.make_phases(n_seeds, seed=substream(seed, 0))
    tests = test_sets(
        phase,
        n_segments=n_segments,
        n_core=n_core,
        n_test=n_test,
        amplitude=amplitude,
        period=period,
        seed=substream(seed, 1),
    )
    cells = list(itertools.product(enumerate(qualities), enumerate(coverages), enumerate(hard_shares)))
    kw = dict(budget=budget, n_segments=n_segments, hard_band=hard_band, amplitude=amplitude, period=period)
    test_X = {name: model.features(t["u"], t["v"], n_segments=n_segments) for name, t in tests.items()}  # [S, n, F]
    rows = []
    for (iq, qual), (ic, cov), (ih, hard) in cells:
        d = task.knob_data(
            phase, **kw, covered=cov, noise=1 - qual, hard_share=hard, seed=substream(seed, 2, iq, ic, ih)
        )
        m = task.measure(d, phase, n_segments=n_segments, hard_band=hard_band, amplitude=amplitude, period=period)
        # every seed of the cell in one batched model: stacked weights [S, F]
        theta = model.fit(
            model.features(d["u"], d["v"], n_segments=n_segments), d["y"], ridge=ridge, newton_steps=newton_steps
        )
        acc = {
            f"{name}_acc": ((X @ theta[..., None])[..., 0] > 0)
            .to(task.DTYPE)
            .eq(tests[name]["y"])
            .to(task.DTYPE)
            .mean(1)
            .numpy()
            for name, X in test_X.items()
        }
        rows.append(
            pd.DataFrame(
                {
                    "quality": qual,
                    "coverage": cov,
                    "hard_share": hard,
                    "iq": iq,
                    "ic": ic,
                    "ih": ih,
                    "seed": np.arange(n_seeds),
                    **m,
                    **acc,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)
