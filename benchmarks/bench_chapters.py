"""Each chapter's wall time and peak memory at ``smoke`` and ``book``, printed as a table of
ratios against the book's budgets (60 s at smoke, 180 s wall at book, on 2 cores; the
closing chapter, which runs every experiment, 90 s and 240 s).

Each chapter runs alone, in a fresh process, with every core available to it and a cold
checkpoint cache (the way a new reader runs one chapter); the peak memory is the kernel's
maximum resident set size.
Run: ``python benchmarks/bench_chapters.py [--scales smoke book] [--chapters tails ...]``.
Takes the sum of all the chapters' times (tens of minutes at ``book``).

The first line gives the machine's speed at the time, in GFLOP/s of the batched float32
matrix products that dominate chapter 4 (torch's default threads): a shared virtual machine's
speed drifts by 15% or more between days, so a table should be read with the speed it was
measured at.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

BUDGET = {"smoke": 60.0, "book": 180.0, "full": float("inf")}
# the closing chapter runs every experiment of the book at its own sizes (issue #15)
BUDGET_BY_CHAPTER = {"synthesis": {"smoke": 90.0, "book": 240.0, "full": float("inf")}}
CHILD = """
import json, resource, sys, time
from vanishing_tails.book.execute import run_chapter
from vanishing_tails.book.registry import find_spec
spec = find_spec(sys.argv[1])
t0 = time.perf_counter()
res = run_chapter(spec, spec.resolve(scale=sys.argv[2]), sys.argv[3], progress=False)
wall = time.perf_counter() - t0
peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"wall": wall, "peak_mb": peak_mb, "claims": len(res["claims"])}))
"""
SPEED = """
import statistics, time, torch
g = torch.Generator().manual_seed(0)
# chapter 4's widest layer: 5 stacked models, 64 sequences x 18 tokens, 64 -> 256
x, w = torch.randn(5, 1152, 64, generator=g), torch.randn(5, 64, 256, generator=g)
b = torch.randn(5, 1, 256, generator=g)
times = []
for _ in range(60):
    t = time.perf_counter()
    torch.baddbmm(b, x, w)
    times.append(time.perf_counter() - t)
print(2 * 5 * 1152 * 64 * 256 / statistics.median(times[10:]) / 1e9)
"""


def machine_speed() -> float:
    """GFLOP/s of chapter 4's batched matrix product, in a fresh process (median of 50)."""
    out = subprocess.run([sys.executable, "-c", SPEED], capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    from vanishing_tails.book.registry import all_specs

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", nargs="+", default=["smoke", "book"])
    parser.add_argument("--chapters", nargs="+", default=[s.short for s in all_specs()])
    args = parser.parse_args()
    print(f"machine speed: {machine_speed():.0f} GFLOP/s (batched float32 matrix products, chapter 4's shape)")
    print(f"{'chapter':<30} {'scale':<6} {'wall s':>7} {'budget':>7} {'ratio':>6} {'peak MB':>8}")
    for short in args.chapters:
        for scale in args.scales:
            with tempfile.TemporaryDirectory() as out:
                env = {**os.environ, "VANISHING_TAILS_CACHE": os.path.join(out, "cache")}  # nothing pretrained yet
                proc = subprocess.run(
                    [sys.executable, "-c", CHILD, short, scale, out], capture_output=True, text=True, env=env
                )
            if proc.returncode:
                print(f"{short:<30} {scale:<6} failed: {proc.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            budget = BUDGET_BY_CHAPTER.get(short, BUDGET)[scale]
            ratio = r["wall"] / budget
            print(f"{short:<30} {scale:<6} {r['wall']:7.1f} {budget:7.0f} {ratio:6.2f} {r['peak_mb']:8.0f}")


if __name__ == "__main__":
    main()
