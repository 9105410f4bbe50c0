"""Seed sweeps: run one chapter over many seeds on a Dask cluster and report, per claim,
the share of seeds where it holds and the distribution of its effect against δ.

``python -m vanishing_tails sweep CHAPTER --seeds 0:32 [--scale S] [-p NAME VALUE]...
[--workers N | --scheduler ADDRESS] [--out DIR]`` runs seeds 0..31 (a ``LocalCluster`` of
worker processes by default, or an existing cluster). Each seed's run lands in
``DIR/seed-<n>/``; a seed whose ``results.json`` is already there with the same inputs is
skipped (a sweep resumes), a seed that raised is an error row, and a worker that died has
its seed re-run by the scheduler. The sweep writes ``sweep.csv`` (one row per seed and
claim), ``sweep.json`` (the summary per claim) and ``fig-sweep.png``/``.svg``.
Explained in :ref:`sec-running-the-book`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vanishing_tails.core import io

from .execute import Job, run_many
from .params import ChapterSpec


def parse_seeds(text: str) -> list[int]:
    """``A:B`` (seeds A..B-1, B > A >= 0) or a comma list ``3,5,8``; ValueError naming --seeds."""
    try:
        if ":" in text:
            a, b = (int(x) for x in text.split(":"))
            if not 0 <= a < b:
                raise ValueError
            return list(range(a, b))
        seeds = [int(x) for x in text.split(",")]
        if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
            raise ValueError
        return seeds
    except ValueError:
        raise ValueError(
            f"--seeds must be A:B with 0 <= A < B (seeds A..B-1) or a list of distinct seeds >= 0; got {text!r}"
        ) from None


def sweep_rows(results: list[dict[str, Any]], seeds: list[int]) -> list[dict[str, Any]]:
    """One row per (seed, claim); a seed that failed gives one row with its error."""
    rows = []
    for seed, r in zip(seeds, results):
        if "error" in r:
            rows.append({"seed": seed, "claim": None, "error": r["error"]})
            continue
        for c in r["claims"]:
            rows.append({"seed": seed, "claim": c["id"], "kind": c["kind"], "effect": c["effect"], "low": c["low"],
                         "high": c["high"], "delta": c["delta"], "verdict": c["verdict"],
                         "expected": c["expected"], "error": None})  # fmt: skip
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per claim: seeds run, share holding / failing / inconclusive, share as expected."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    ok = frame[frame["claim"].notna()]
    out = []
    for claim, g in ok.groupby("claim", sort=False):
        out.append({
            "claim": claim, "kind": g["kind"].iloc[0], "expected": g["expected"].iloc[0], "seeds": len(g),
            "holds": float((g["verdict"] == "holds").mean()), "fails": float((g["verdict"] == "fails").mean()),
            "inconclusive": float((g["verdict"] == "inconclusive").mean()),
            "as_expected": float((g["verdict"] == g["expected"]).mean()),
            "effect_median": float(g["effect"].median()), "delta": float(g["delta"].iloc[0]),
        })  # fmt: skip
    return out


def sweep_figure(rows: list[dict[str, Any]], stem: str):
    """Left: per claim, the share of seeds where it holds; right: each seed's effect
    relative to δ (effect − δ for direction claims, abs(effect) − δ for equivalence)."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    from . import plots

    plots.set_theme()
    frame = pd.DataFrame([r for r in rows if r.get("claim")])
    frame = frame[frame["kind"] != "oracle"].copy()
    summary = pd.DataFrame(summarise(rows))
    n = max(len(summary), 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.35 * n + 1.6), sharey=False)
    sns.barplot(data=summary, y="claim", x="holds", hue="expected", dodge=False, ax=axes[0],
                palette={"holds": "C2", "fails": "C3", "inconclusive": "C7"})  # fmt: skip
    axes[0].set(xlim=(0, 1), xlabel="share of seeds where the claim holds", ylabel="", title=stem)
    if len(frame):
        frame["margin"] = frame.apply(
            lambda r: r["effect"] - r["delta"] if r["kind"] == "direction" else abs(r["effect"]) - r["delta"], axis=1
        )
        colours = {"holds": "C2", "inconclusive": "C7", "fails": "C3"}
        sns.stripplot(data=frame, y="claim", x="margin", hue="verdict", ax=axes[1], size=4, jitter=0.2,
                      hue_order=list(colours), palette=colours)  # fmt: skip
        axes[1].axvline(0, color="black", linewidth=1)
    axes[1].set(xlabel="effect − δ (direction) or |effect| − δ (equivalence)", ylabel="")
    axes[1].tick_params(labelleft=False)
    fig.tight_layout()
    return fig


def sweep(
    spec: ChapterSpec,
    params: dict[str, Any],
    seeds: list[int],
    out: Path,
    *,
    workers: int = 2,
    scheduler: str | None = None,
    client=None,
) -> dict[str, Any]:
    """Run ``spec`` at ``params`` for every seed; write and return the sweep's summary."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)
    jobs = [Job(spec.stem, {**params, "seed": s}, str(out / f"seed-{s}"), label=f"seed{s}") for s in seeds]
    results = run_many(jobs, workers=workers, scheduler=scheduler, reuse=True, client=client,
                       desc=f"sweep {spec.short}")  # fmt: skip
    rows = sweep_rows(results, seeds)
    import pandas as pd

    io.atomic_write(out / "sweep.csv", pd.DataFrame(rows).to_csv(index=False))
    summary = {"chapter": spec.stem, "parameters": {k: v for k, v in params.items() if k != "seed"},
               "seeds": seeds, "errors": [r for r in rows if r.get("error")], "claims": summarise(rows)}  # fmt: skip
    io.atomic_write(out / "sweep.json", json.dumps(summary, indent=2, default=str))
    if any(r.get("claim") for r in rows):
        fig = sweep_figure(rows, spec.stem)
        fig.savefig(out / "fig-sweep.png")
        fig.savefig(out / "fig-sweep.svg")
    return summary
