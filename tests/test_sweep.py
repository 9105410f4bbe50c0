"""Seed sweeps on Dask: argument checks before any work, a worker that dies is re-run,
a seed that raises is an error row. (A real two-seed sweep of chapter 1, compared with a
serial run, is in test_chapters.py so that the chapter is not executed more often.)"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cloudpickle
import pytest

from vanishing_tails.book import runner
from vanishing_tails.book.execute import Job, run_many, worker_environment
from vanishing_tails.book.sweep import parse_seeds, summarise, sweep_rows


@pytest.mark.parametrize("text,seeds", [("0:3", [0, 1, 2]), ("5:6", [5]), ("3,5,8", [3, 5, 8])])
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["5:2", "3:3", "-1:4", "a:b", "1,1", ""])
def test_bad_seed_ranges_are_refused(text):
    with pytest.raises(ValueError, match="--seeds must be"):
        parse_seeds(text)


@pytest.fixture
def no_work(monkeypatch):
    from vanishing_tails.book import execute

    def boom(*a, **k):
        raise AssertionError("work started for bad input")

    monkeypatch.setattr(execute, "run_many", boom)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["sweep", "tails", "--seeds", "5:2"], "--seeds must be"),
        (["sweep", "tails", "--seeds", "0:2", "--scale", "huge"], "scale must be one of"),
        (["sweep", "tails", "--seeds", "0:2", "-p", "n_seeds", "0"], "parameter 'n_seeds'"),
        (["sweep", "tails", "--seeds", "0:2", "--workers", "0"], "--workers must be"),
        (["sweep", "tails", "--seeds", "0:2", "-p", "seed", "3"], "--seeds, not -p seed"),
        (["sweep", "tails", "--seeds", "0:2", "--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler"),
        (["sweep", "nope", "--seeds", "0:2"], "unknown chapter"),
    ],
)
def test_bad_sweep_arguments_exit_2_with_one_line(argv, needle, no_work, capsys):
    assert runner.main(argv) == runner.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert needle in err and err.count("\n") == 0


def _dies_once(job, root, reuse):
    """Kill this worker process the first time a job runs; succeed when it is re-run."""
    marker = Path(job.out) / "attempted"
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(os.getpid()))
        os._exit(1)  # the worker dies mid-task, as on an out-of-memory kill
    if job.params.get("raise"):
        raise RuntimeError("this seed raised")
    return {"chapter": job.stem, "claims": [], "pid": os.getpid(), "first_pid": int(marker.read_text())}


def test_a_killed_worker_is_retried_and_a_raising_seed_is_an_error_row(tmp_path):
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import the tests
    jobs = [Job("x", {"seed": 0}, str(tmp_path / "a")), Job("x", {"seed": 1, "raise": True}, str(tmp_path / "b"))]

    def task(job, root, reuse):  # an error row, as the runner's own task makes it
        try:
            return _dies_once(job, root, reuse)
        except RuntimeError as e:
            return {"chapter": job.stem, "parameters": job.params, "error": f"RuntimeError: {e}"}

    results = run_many(jobs, workers=2, task=task)
    assert results[0]["chapter"] == "x" and results[0]["pid"] != results[0]["first_pid"]  # re-run elsewhere
    assert results[1]["error"] == "RuntimeError: this seed raised"
    rows = sweep_rows(results, [0, 1])
    assert rows[-1] == {"seed": 1, "claim": None, "error": "RuntimeError: this seed raised"}


def _kernel_env(job, root, reuse):
    before = os.environ.get("MALLOC_TRIM_THRESHOLD_")
    worker_environment(root)
    return {"before": before, "after": os.environ.get("MALLOC_TRIM_THRESHOLD_"), "omp": os.environ["OMP_NUM_THREADS"]}


def test_chapter_kernels_on_dask_do_not_inherit_the_nannys_allocator_setting(tmp_path):
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_ in its workers; a chapter's kernel must not
    inherit it (it turns every new tensor's pages into page faults)."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    (got,) = run_many([Job("x", {}, str(tmp_path / "a"))], workers=2, task=_kernel_env)
    assert got["before"] is not None  # what Dask sets, so the test sees the case it guards
    assert got["after"] is None and got["omp"] == "1"


def _started(job, root, reuse):
    """A job that records when it started and sleeps ``seconds`` (default 1)."""
    import time

    t = time.time()
    time.sleep(job.params.get("seconds", 1.0))
    return {"chapter": job.stem, "started": t}


def test_the_costliest_jobs_start_first_and_results_keep_the_job_order(tmp_path):
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    jobs = [Job(name, {}, str(tmp_path / name), cost=c) for name, c in (("cheap", 1), ("long", 50), ("mid", 9))]
    got = run_many(jobs, workers=2, task=_started)
    assert [r["chapter"] for r in got] == ["cheap", "long", "mid"]
    started = {r["chapter"]: r["started"] for r in got}
    assert started["cheap"] > max(started["long"], started["mid"]) + 0.5  # waited for a free worker


def test_a_job_waits_for_a_free_worker_so_the_order_is_the_cost_order_across_workers(tmp_path):
    """One long job and four short ones on two workers: the short ones run one after the
    other on the free worker, costliest first, while the long one runs; none waits in the
    long job's queue."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    spec = [("long", 50, 4.0), ("b", 40, 0.4), ("c", 30, 0.4), ("d", 20, 0.4), ("e", 10, 0.4)]
    jobs = [Job(name, {"seconds": t}, str(tmp_path / name), cost=c) for name, c, t in spec]
    got = run_many(jobs, workers=2, task=_started)
    assert [r["chapter"] for r in got] == [name for name, _, _ in spec]
    started = [r["started"] for r in got]
    # the two costliest take the two workers (in either order); the rest follow by cost
    assert max(started[:2]) <= started[2] and started[2:] == sorted(started[2:])
    assert started[-1] < started[0] + 3.0  # the cheapest did not wait for the long job


def test_summary_counts_hold_rates_per_claim():
    rows = [
        {"seed": s, "claim": "c", "kind": "direction", "effect": e, "low": e - 0.1, "high": e + 0.1, "delta": 0.5,
         "verdict": v, "expected": "holds", "error": None}
        for s, e, v in [(0, 0.7, "holds"), (1, 0.55, "inconclusive"), (2, 0.8, "holds"), (3, 0.2, "fails")]
    ]  # fmt: skip
    (c,) = summarise(rows)
    assert (c["seeds"], c["holds"], c["fails"], c["inconclusive"], c["as_expected"]) == (4, 0.5, 0.25, 0.25, 0.5)
