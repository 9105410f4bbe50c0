"""Several arms of one recursion as members of one batched model (chapter 2).

:func:`vanishing_tails.core.collapse.recursive_fit` runs one arm (a regime, a real fraction)
with all its chains batched. Here every *member* — an (arm, chain, setting) triple — is one
slice of one batched model, so the arms of an experiment train together, one training per
generation, in lockstep:

* members fall into ``groups`` (a chain and its real law): members of one group start from
  the same ``n`` real items and the same generation-0 model (trained once per group), and
  generation 1 trains on the same synthetic items (common random numbers), so arms are
  paired by group;
* generation t ≥ 1 of a member trains, as in ``recursive_fit``, on ``n`` items of the
  previous generation (``replace``), the real sample plus every synthetic sample so far
  (``accumulate``, Gerstgrasser et al. 2024), or ``round(real_fraction n)`` fresh real
  items plus the rest synthetic (``mix``; ``real_fraction = 1``: fresh real data only).
  Data of unequal sizes (accumulate) are padded; ``fit`` gets each member's size.

Explained in :ref:`sec-families-loop`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from vanishing_tails.core import collapse

REGIMES = ("replace", "accumulate", "mix")


def recursive_members(
    fit: Callable[[torch.Tensor, torch.Tensor, np.random.Generator], Any],
    sample: Callable[[Any, int, np.random.Generator], torch.Tensor],
    measure: Callable[[Any, int, np.ndarray, np.random.Generator], dict[str, np.ndarray]],
    *,
    real_sample: Callable[[np.ndarray, int, np.random.Generator], torch.Tensor],
    groups: np.ndarray,
    regimes: Sequence[str],
    real_fractions: Sequence[float],
    n: int,
    generations: int,
    seed: int,
    expand: Callable[[Any, np.ndarray], Any] | None = None,
) -> pd.DataFrame:
    """Run every member's recursion at once (module docstring).

    Callbacks: ``real_sample(group_of_row [K], m, rng) -> [K, m, ...]`` fresh real items of each
    row's group; ``fit(data [K, N, ...], sizes [K], rng) -> model`` of ``K`` members, member k
    trained on ``data[k, :sizes[k]]``; ``sample(model, m, rng, rows) -> [K, m, ...]`` and
    ``measure(model, t, rows, rng) -> {quantity: [K] values}``, where ``rows`` ``[K]`` are the
    members the model's rows stand for. Generation 0 is fit once per group (``K = G``); it is
    measured and sampled once per group (``rows`` = one member of each group) and shared by the
    group's members, or, with ``expand(model, groups) -> model`` (a copy of the group's model
    per member), measured and sampled per member (members that sample differently, e.g. at
    their own temperature). Later generations have one row per member.
    ``rng`` streams are spawned from ``seed`` (training, measuring), so what is measured never
    changes the training. Returns one row per (member, generation): ``member``,
    ``generation`` and every measured quantity.
    Explained in :ref:`sec-families-loop`.
    """
    groups = np.asarray(groups, dtype=int)
    M = len(groups)
    if len(regimes) != M or len(real_fractions) != M:
        raise ValueError("groups, regimes and real_fractions need one entry per member")
    for r, rf in zip(regimes, real_fractions):
        if r not in REGIMES:  # a subset of the shared vocabulary: no accumulate-subsample here
            raise ValueError(f"regime must be one of {', '.join(REGIMES)}; got {r!r}")
        collapse.check_regime(r, rf)
    if n < 1 or generations < 0:
        raise ValueError(f"n must be >= 1 and generations >= 0; got n={n!r}, generations={generations!r}")
    G = int(groups.max()) + 1
    members = np.arange(M)
    if set(groups.tolist()) != set(range(G)):
        raise ValueError("groups must number the groups 0..G-1, each with a member")
    train_ss, measure_ss = np.random.SeedSequence(seed).spawn(2)
    rng, mrng = np.random.default_rng(train_ss), np.random.default_rng(measure_ss)
    every = np.arange(G)
    rep = np.array([np.flatnonzero(groups == g)[0] for g in every])  # a member standing for its group
    real0 = real_sample(every, n, rng)
    model = fit(real0, torch.full((G,), n), rng)
    if expand is None:  # generation 0 measured and sampled once per group, shared by its members
        first = measure(model, 0, rep, mrng)
        first = pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in first.items()}).iloc[groups]
        out = [first.reset_index(drop=True).assign(member=np.arange(M), generation=0)]
        synthetic = sample(model, n, rng, rep)[groups]
    else:  # one copy of the group's generation-0 model per member (members sample differently)
        model = expand(model, groups)
        first = pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in measure(model, 0, members, mrng).items()})
        out = [first.assign(member=members, generation=0)]
        synthetic = sample(model, n, rng, members)
    pool = real0[groups]  # accumulate members' data so far
    pool_size = torch.full((M,), n)
    accumulate = np.array([r == "accumulate" for r in regimes])
    n_real = np.array([round(rf * n) if r == "mix" else 0 for r, rf in zip(regimes, real_fractions)])
    for t in range(1, generations + 1):
        data = synthetic.clone()  # replace, and mix's synthetic part (its first n - n_real items)
        for k in sorted(set(n_real[n_real > 0].tolist())):
            idx = np.flatnonzero(n_real == k)
            data[idx, n - k :] = real_sample(groups[idx], k, rng)
        sizes = torch.full((M,), n)
        if accumulate.any():
            pool = torch.cat([pool, synthetic], dim=1)
            pool_size = pool_size + n
            pad = pool.shape[1] - n
            data = torch.cat([data, data.new_zeros(M, pad, *data.shape[2:])], dim=1)
            data[accumulate] = pool[accumulate]
            sizes[torch.from_numpy(accumulate)] = pool_size[torch.from_numpy(accumulate)]
        model = fit(data, sizes, rng)
        frame = pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in measure(model, t, members, mrng).items()})
        out.append(frame.assign(member=members, generation=t))
        if t < generations:
            synthetic = sample(model, n, rng, members)
    frame = pd.concat(out, ignore_index=True)
    return frame[["member", "generation", *[c for c in frame.columns if c not in ("member", "generation")]]]
