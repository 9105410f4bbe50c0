"""Collect every experiment's trajectory through the book's common interface.

Each experiment of the book exposes ``trajectory(**sizes, seed)`` returning one row per
(arm, replicate, step) with the columns ``experiment, arm, replicate, step, mechanism`` and
:data:`vanishing_tails.core.tails.COLUMNS`. This module calls them at the sizes of the
chapter's spec (:data:`vanishing_tails.experiments.synthesis.spec.ENTRIES`) and stacks them
into one long frame; it never reads another chapter's outputs. The only functions of other
experiments it calls are their ``trajectory`` functions (the structure test names the
modules allowed).
Explained in :ref:`sec-synthesis-interface`.
"""

from __future__ import annotations

import importlib
import inspect
import resource
from collections.abc import Callable, Sequence

import pandas as pd

from ...core import tails
from ...core.seeds import streams
from .spec import ENTRIES

ID_COLUMNS = ("experiment", "arm", "replicate", "step", "mechanism")


def trajectory_function(name: str) -> Callable[..., pd.DataFrame]:
    """The ``trajectory`` function of entry ``name`` of :data:`~.spec.ENTRIES` (imported on demand).

    Explained in :ref:`sec-synthesis-interface`.
    """
    if name not in ENTRIES:
        raise ValueError(f"unknown experiment {name!r}; allowed: {', '.join(ENTRIES)}")
    return importlib.import_module(ENTRIES[name]["module"]).trajectory


def entry_kwargs(name: str, scale: str, *, n_seeds: int, q: float, null: bool) -> dict:
    """The keyword arguments (all but ``seed``) of entry ``name`` at ``scale``: its preset sizes
    (the sizes common to every scale, ``kwargs``, updated with the scale's own, ``scales[scale]``),
    each replicate argument at ``max(2, round(n_seeds × factor))``, the entry's own ``q`` or
    else ``q`` where its interface takes one, and its null overrides when ``null`` is true.
    ``full`` uses the ``book`` sizes.
    Explained in :ref:`sec-synthesis-interface`.
    """
    entry = ENTRIES[name]
    kw = {**entry["kwargs"], **entry["scales"]["book" if scale == "full" else scale]}
    for arg, factor in entry["replicates"].items():
        kw[arg] = max(2, round(n_seeds * factor))
    if "q" in inspect.signature(trajectory_function(name)).parameters:
        kw["q"] = entry.get("q", q)
    if null:
        kw.update(entry["null"])
    return kw


def experiment_names(name: str, arms: pd.Series) -> pd.Series:
    """The experiment each arm of entry ``name`` belongs to: the entry's name, or where the
    entry has a ``split`` (one call that runs two independent models) the name its arm-name
    prefix maps to. Explained in :ref:`sec-synthesis-interface`.
    """
    split = ENTRIES[name].get("split")
    if not split:
        return pd.Series(name, index=arms.index)
    out = pd.Series(name, index=arms.index)
    for prefix, exp in split.items():
        out[arms.astype(str).str.startswith(prefix)] = exp
    return out


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def collect(names: Sequence[str], scale: str, *, n_seeds: int, q: float, null: bool, seed: int) -> pd.DataFrame:
    """Every entry's trajectory, stacked: columns :data:`ID_COLUMNS` + ``COLUMNS`` + ``chapter``
    and ``entry``.

    ``experiment`` is the entry's name (two entries may read the same chapter at different
    sizes; ``chapter`` says which), or its split (:func:`experiment_names`); entry ``name``
    runs with seed ``streams(seed)["synthesis", name]``.
    Each call's checked: the interface's columns, ranges and mechanisms. ``frame.attrs["cpu_s"]``
    holds each entry's CPU seconds.
    Explained in :ref:`sec-synthesis-interface`.
    """
    seeds = streams(seed)
    frames, cpu = [], {}
    for name in names:
        kw = entry_kwargs(name, scale, n_seeds=n_seeds, q=q, null=null)
        start = _cpu()
        frame = trajectory_function(name)(**kw, seed=seeds["synthesis", name])
        cpu[name] = _cpu() - start
        check_interface(frame, name)
        frame = frame[[*ID_COLUMNS, *tails.COLUMNS]].copy()
        frame.insert(len(frame.columns), "chapter", ENTRIES[name]["chapter"])
        frame.insert(len(frame.columns), "entry", name)
        frame["experiment"] = experiment_names(name, frame["arm"])
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out["arm"] = out["arm"].astype(str)
    out["mechanism"] = out["mechanism"].astype(str)
    out.attrs["cpu_s"] = cpu
    return out


def check_interface(frame: pd.DataFrame, name: str) -> None:
    """Raise ValueError naming the experiment if ``frame`` breaks the common interface: the
    columns, ``mechanism`` in :data:`~vanishing_tails.core.tails.MECHANISMS`, ``step`` from 0,
    replicates 0..n-1 and the ranges (support, q-tail mass, KL ≥ 0; error mass, mode share in [0, 1]).
    Explained in :ref:`sec-synthesis-interface`.
    """
    missing = [c for c in (*ID_COLUMNS, *tails.COLUMNS) if c not in frame.columns]
    if missing:
        raise ValueError(f"{name}: trajectory lacks the columns {missing}")
    problems = []
    if not set(frame["mechanism"]) <= set(tails.MECHANISMS):
        problems.append(f"mechanism {sorted(set(frame['mechanism']) - set(tails.MECHANISMS))}")
    if frame.groupby("arm")["step"].min().ne(0).any():
        problems.append("an arm whose first step is not 0")
    tol = 1e-9
    for col in ("support", "q_tail_mass", "kl_from_start"):
        if (frame[col] < -tol).any() or frame[col].isna().any():
            problems.append(f"{col} negative or missing")
    for col in ("error_mass", "mode_share"):
        if not frame[col].between(-tol, 1 + tol).all():
            problems.append(f"{col} outside [0, 1]")
    if problems:
        raise ValueError(f"{name}: trajectory breaks the common interface: " + "; ".join(problems))


def real_fractions(name: str, kwargs: dict) -> dict[str, float]:
    """The real fraction of each real-data arm of entry ``name`` under ``kwargs``: the named
    argument's value, a number given in the spec, or one element of a list argument
    (``fraction_list``), raised to the entry's ``floor`` argument where it has one; ``{}`` when
    the entry has no real-data arms. Explained in :ref:`sec-synthesis-human-data`.
    """
    spec = ENTRIES[name]["real_data"]
    if not spec:
        return {}
    out = {arm: float(kwargs[v] if isinstance(v, str) else v) for arm, v in spec["arms"].items()}
    for key, fmt in spec.get("fraction_list", ()):
        out |= {fmt.format(f): float(f) for f in kwargs[key]}
    floor = float(kwargs[spec["floor"]]) if "floor" in spec else 0.0
    return {arm: max(f, floor) for arm, f in out.items()}


def samples_per_generation(name: str, experiment: str, kwargs: dict) -> int:
    """Samples per generation of ``experiment`` (an experiment of entry ``name``), from the
    argument the spec's ``real_data["samples"]`` names. Explained in :ref:`sec-synthesis-human-data`.
    """
    samples = ENTRIES[name]["real_data"]["samples"]
    return int(kwargs[samples[experiment] if isinstance(samples, dict) else samples])
