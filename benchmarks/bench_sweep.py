"""Speed of a seed sweep on Dask, printed as a ratio against running the seeds serially.

Target (claims issue): 8 seeds of chapter 1 at ``smoke`` on a 2-worker ``LocalCluster``
take at most 0.65x the serial time on this 2-core machine. Run:
``python benchmarks/bench_sweep.py [--chapter tails] [--seeds 8]``. Runs go to a
temporary folder (nothing is reused).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from vanishing_tails.book.execute import Job, run_many
from vanishing_tails.book.registry import find_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chapter", default="tails")
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
    spec = find_spec(args.chapter)
    params = spec.resolve(scale="smoke")
    with tempfile.TemporaryDirectory() as tmp:

        def jobs(tag):
            return [Job(spec.stem, {**params, "seed": s}, str(Path(tmp) / tag / str(s))) for s in range(args.seeds)]

        t0 = time.perf_counter()
        serial = run_many(jobs("serial"), workers=1)
        t_serial = time.perf_counter() - t0
        t0 = time.perf_counter()
        swept = run_many(jobs("dask"), workers=2)  # includes starting the LocalCluster
        t_dask = time.perf_counter() - t0
    # compared as JSON: an undefined (NaN) interval equals itself (as in tests/test_sweep.py)
    same = json.dumps([r["claims"] for r in serial]) == json.dumps([r["claims"] for r in swept])
    assert same, "a sweep must equal the serial runs"
    print(
        f"sweep of {args.seeds} seeds of {spec.stem} at smoke: serial {t_serial:6.1f} s, "
        f"2-worker Dask {t_dask:6.1f} s, "
        f"time ratio {t_dask / t_serial:.2f} (target <= 0.65)"
    )


if __name__ == "__main__":
    main()
