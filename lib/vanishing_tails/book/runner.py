"""The command line: ``python -m vanishing_tails list | run | reproduce | sweep | figure | book``.

``run CHAPTER [--scale S] [-p NAME VALUE]... [--out DIR]``
    Validates every parameter against the chapter's spec *before* a kernel starts (bad
    input: one line naming the parameter and what is allowed, exit code 2), converts
    ``chapters/<stem>.md`` with jupytext, executes it with papermill, and writes into
    ``--out`` (default ``_build/runs/<stem>``) the executed notebook, every figure as PNG
    and SVG, and ``results.json`` (written last, atomically). Exit 1 if a verdict
    contradicts its expectation.

``reproduce [--scale S] [--workers N | --scheduler ADDRESS]``
    Runs every chapter (two at a time by default) and prints one table of all claims;
    exits 1 unless every verdict equals its expectation.

``sweep CHAPTER --seeds A:B [--scale S] [-p NAME VALUE]... [--workers N | --scheduler ADDRESS]``
    Runs one chapter over many seeds on Dask; per claim, the share of seeds where it holds.

``figure NAME [--scale S] [-p NAME VALUE]... [--out DIR]`` and ``figure --list``
    Regenerates one named figure (PNG and SVG) by running the chapter that owns it;
    lists every figure with its chapter and the first sentence of its caption.

``book [--scale S] [--workers N | --scheduler ADDRESS]``
    Executes the chapters whose inputs changed, then renders the book (Jupyter Book does
    not execute anything itself). The scale is ``--scale``, else ``$VANISHING_TAILS_SCALE``,
    else ``book``.

This module imports neither torch nor any engine: listing and refusing bad input are instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from vanishing_tails.core import io

from .execute import CLAIMS_KEY, PARAMETERS_KEY, read_glued  # noqa: F401 - the runner's public names
from .execute import run_chapter as _run_chapter
from .params import SCALES, ChapterSpec, current_scale
from .registry import all_specs, find_spec

EXIT_BAD_INPUT = 2


class BadInput(ValueError):
    """A parameter, chapter, scale or option the runner refuses before starting any work."""


def repo_root() -> Path:
    """The book's root (:func:`vanishing_tails.core.io.repo_root`), as BadInput when missing."""
    try:
        return io.repo_root()
    except FileNotFoundError as e:
        raise BadInput(str(e)) from None


def run_chapter(
    spec: ChapterSpec, params: dict[str, Any], out_dir: Path, *, progress: bool = True, reuse: bool = False
) -> dict[str, Any]:
    """Execute one chapter (:func:`vanishing_tails.book.execute.run_chapter`)."""
    return _run_chapter(spec, params, out_dir, progress=progress, reuse=reuse)


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


def claims_table(rows: list[tuple[str, dict]]) -> str:
    """Plain-text table of (chapter, claim) rows: effect, interval, test, verdict, expected."""
    from .claims import _fmt, test_text

    header = ("chapter", "claim", "effect", "95% interval", "test", "verdict", "expected", "source")
    lines = [header]
    for stem, c in rows:
        lines.append((stem, c["id"], _fmt(c["effect"]), f"[{_fmt(c['low'])}, {_fmt(c['high'])}]", test_text(c),
                      c["verdict"], c["expected"], c["source"]))  # fmt: skip
    widths = [max(len(str(r[i])) for r in lines) for i in range(len(header))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(r, widths)) for r in lines)


# ----------------------------------------------------------------------------- commands
def _checked(fn, *a, **k):
    """Call a lookup that raises ValueError on bad input, as BadInput."""
    try:
        return fn(*a, **k)
    except ValueError as e:
        raise BadInput(str(e)) from None


def _cluster_args(args) -> tuple[int, str | None]:
    if args.workers < 1:
        raise BadInput(f"--workers must be an integer >= 1; got {args.workers}")
    if args.scheduler:
        from .execute import connect

        try:  # refuse an unreachable scheduler before any work starts
            connect(args.workers, args.scheduler, timeout=5).close()
        except ConnectionError as e:
            raise BadInput(str(e)) from None
    return args.workers, args.scheduler


def _cmd_list(_args) -> int:
    for spec in all_specs():
        print(f"{spec.stem}  (short: {spec.short})  {spec.title}")
        print(f"    {spec.description}")
        for p in spec.params:
            d = p.default
            shown = ", ".join(f"{k}={v}" for k, v in d.items()) if isinstance(d, dict) else repr(d)
            print(f"    {p.name:<18} {p.allowed():<42} default {shown}")
            print(f"    {'':<18} {p.help}")
        if spec.null:
            print(f"    null control: {spec.null} ({spec.null_description})")
        print(f"    claims: {', '.join(c.id for c in spec.claims)}")
        print()
    return 0


def _cmd_run(args) -> int:
    from .claims import contradictions

    spec = _checked(find_spec, args.chapter)
    params = validate(spec, args.scale, args.param or [])
    out = Path(args.out) if args.out else repo_root() / "_build" / "runs" / spec.stem
    results = run_chapter(spec, params, out, progress=not args.quiet)
    print(claims_table([(spec.stem, c) for c in results["claims"]]))
    print(f"\nwrote {out} ({results['provenance']['wall_time_s']} s)")
    bad = contradictions(results["claims"])
    for c in bad:
        print(f"verdict contradicts expectation: {c['id']} {c['verdict']} (expected {c['expected']})")
    return 1 if bad else 0


def _cmd_reproduce(args) -> int:
    from .build import chapter_jobs, runs_dir
    from .claims import unexpected
    from .execute import run_many

    scale = _checked(current_scale, args.scale)
    workers, scheduler = _cluster_args(args)
    base = Path(args.out) if args.out else runs_dir(scale)
    results = run_many(chapter_jobs(scale, None, base), workers=workers, scheduler=scheduler, reuse=True,
                       desc=f"reproduce ({scale})")  # fmt: skip
    rows, errors = [], []
    for r in results:
        if "error" in r:
            errors.append(r)
        else:
            rows += [(r["chapter"], c) for c in r["claims"]]
    print(claims_table(rows))
    off = [(stem, c) for stem, c in rows if unexpected([c])]
    print(f"\n{len(rows) - len(off)} of {len(rows)} verdicts as expected at scale {scale}")
    for stem, c in off:
        print(f"  {stem} {c['id']}: {c['verdict']} (expected {c['expected']})")
    for r in errors:
        print(f"  {r['chapter']} failed: {r['error']}")
    return 1 if off or errors else 0


def _cmd_sweep(args) -> int:
    from .sweep import parse_seeds, sweep

    spec = _checked(find_spec, args.chapter)
    seeds = _checked(parse_seeds, args.seeds)
    params = validate(spec, args.scale, [p for p in (args.param or []) if p[0] != "seed"])
    if any(p[0] == "seed" for p in (args.param or [])):
        raise BadInput("give the seeds with --seeds, not -p seed")
    workers, scheduler = _cluster_args(args)
    out = Path(args.out) if args.out else repo_root() / "_build" / "sweeps" / f"{spec.stem}-{params['scale']}"
    summary = sweep(spec, params, seeds, out, workers=workers, scheduler=scheduler)
    print(f"{'claim':<36} {'kind':<12} {'expected':<9} {'holds':>6} {'fails':>6} {'as expected':>12}")
    for c in summary["claims"]:
        print(f"{c['claim']:<36} {c['kind']:<12} {c['expected']:<9} {c['holds']:>6.0%} {c['fails']:>6.0%} "
              f"{c['as_expected']:>12.0%}")  # fmt: skip
    for e in summary["errors"]:
        print(f"seed {e['seed']} failed: {e['error']}")
    print(f"\nwrote {out}/sweep.json, sweep.csv, fig-sweep.png ({len(seeds)} seeds)")
    return 1 if summary["errors"] else 0


def _cmd_figure(args) -> int:
    import shutil

    from .figures import all_figures, find_figure

    if args.list:
        for f in all_figures():
            print(f"{f.name:<34} {f.stem:<30} {f.caption}")
        return 0
    if not args.name:
        raise BadInput("give a figure name (python -m vanishing_tails figure --list shows all)")
    fig = _checked(find_figure, args.name)
    spec = find_spec(fig.stem)
    params = validate(spec, args.scale, args.param or [])
    out = Path(args.out) if args.out else repo_root() / "_build" / "figures"
    runs = repo_root() / "_build" / "runs" / "figures" / spec.stem
    results = run_chapter(spec, params, runs, progress=not args.quiet, reuse=True)
    if fig.name not in results["figures"]:
        print(f"error: {spec.stem} did not draw {fig.name} with these parameters", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "svg"):
        shutil.copy2(runs / f"{fig.name}.{ext}", out / f"{fig.name}.{ext}")
    print(f"wrote {out / fig.name}.png and .svg (from {spec.stem}, scale {params['scale']}, seed {params['seed']})")
    return 0


def _cmd_book(args) -> int:
    from .build import build_book

    scale = _checked(current_scale, args.scale)
    workers, scheduler = _cluster_args(args)
    rc = build_book(scale, strict=not args.no_strict, workers=workers, scheduler=scheduler)
    if rc == 0:
        print(f"built the book at scale {scale}: open {repo_root() / '_build' / 'html' / 'index.html'}")
    return rc


def _add_cluster(p) -> None:
    p.add_argument("--workers", type=int, default=2, help="chapter processes at once on a local Dask cluster")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler (tcp://host:8786)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vanishing_tails", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="chapters with their parameters, defaults, null controls and claims")
    run = sub.add_parser("run", help="execute one chapter")
    run.add_argument("chapter", help="file stem (01_tails_vanish_first), short name, or number")
    run.add_argument("--scale", help=f"one of {', '.join(SCALES)}")
    run.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"))
    run.add_argument("--out", help="output folder (default _build/runs/<stem>)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    rep = sub.add_parser("reproduce", help="run every chapter and print all claims")
    rep.add_argument("--scale", help=f"one of {', '.join(SCALES)}")
    rep.add_argument("--out", help="output folder (default _build/runs/<scale>)")
    rep.add_argument("--quiet", action="store_true", help="(kept for compatibility: progress shows on terminals only)")
    _add_cluster(rep)
    sw = sub.add_parser("sweep", help="run one chapter over many seeds on Dask; hold rate per claim")
    sw.add_argument("chapter", help="file stem, short name, or number")
    sw.add_argument("--seeds", required=True, help="A:B (seeds A..B-1) or a list 3,5,8")
    sw.add_argument("--scale", help=f"one of {', '.join(SCALES)}")
    sw.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"))
    sw.add_argument("--out", help="output folder (default _build/sweeps/<stem>-<scale>)")
    _add_cluster(sw)
    fig = sub.add_parser("figure", help="regenerate one named figure (or --list them all)")
    fig.add_argument("name", nargs="?", help="a figure name, e.g. fig-words (see --list)")
    fig.add_argument("--list", action="store_true", help="list every figure with its chapter and caption")
    fig.add_argument("--scale", help=f"one of {', '.join(SCALES)}")
    fig.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"))
    fig.add_argument("--out", help="output folder (default _build/figures)")
    fig.add_argument("--quiet", action="store_true", help="no progress bar")
    book = sub.add_parser("book", help="execute what changed, then build the HTML book")
    book.add_argument("--scale", help=f"one of {', '.join(SCALES)} (default: $VANISHING_TAILS_SCALE, else book)")
    book.add_argument("--no-strict", action="store_true", help="do not fail on warnings")
    _add_cluster(book)
    args = parser.parse_args(argv)
    handlers = {"list": _cmd_list, "run": _cmd_run, "reproduce": _cmd_reproduce, "sweep": _cmd_sweep,
                "figure": _cmd_figure, "book": _cmd_book}  # fmt: skip
    try:
        return handlers[args.command](args)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
