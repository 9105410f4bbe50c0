"""Lint the code cells of the chapters (and of the intro) with ruff, as ``make test`` does for ``lib/``.

``python -m vanishing_tails.book.lint [--fix] [chapters/*.md]`` checks every code cell of
the jupytext MyST chapters: ``ruff check`` on the whole chapter as one script (ignoring
E402, imports below the first cell, and B018, a cell's last expression is its display),
and ``ruff format --check`` on each cell alone. ``--fix`` reformats the cells in place
(the ``ruff check`` findings are left to fix by hand).
Exit code 1 when anything is left to fix.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

CHAPTER_IGNORES = ("E402", "B018")


def _ruff() -> str:
    exe = Path(sys.executable).with_name("ruff")
    return str(exe) if exe.exists() else (shutil.which("ruff") or "ruff")


def _format(source: str, root: Path) -> str:
    out = subprocess.run(
        [_ruff(), "format", "--stdin-filename", "cell.py", "-"], input=source, text=True, capture_output=True, cwd=root
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    return out.stdout.rstrip("\n")


def lint_chapter(path: Path, *, fix: bool = False, root: Path | None = None) -> list[str]:
    """Problems found in one chapter (empty when clean); with ``fix``, reformat its cells."""
    import jupytext

    # the project's ruff settings live in the nearest pyproject.toml above the page (chapters/ or intro.md)
    root = root or next((d for d in path.resolve().parents if (d / "pyproject.toml").is_file()), Path.cwd())
    nb = jupytext.read(path)
    problems: list[str] = []
    changed = False
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        formatted = _format(cell.source, root)
        if formatted != cell.source.rstrip("\n"):
            if fix:
                cell.source = formatted
                changed = True
            else:
                problems.append(f"{path}: code cell {i} is not ruff-formatted")
    if changed:
        jupytext.write(nb, path, fmt="md:myst")
    script = "\n\n".join(c.source for c in nb.cells if c.cell_type == "code") + "\n"
    args = [
        _ruff(),
        "check",
        "--output-format",
        "concise",
        "--stdin-filename",
        f"{path.stem}.py",
        "--ignore",
        ",".join(CHAPTER_IGNORES),
    ]
    out = subprocess.run([*args, "-"], input=script, text=True, capture_output=True, cwd=root)
    if out.returncode != 0:
        problems += [f"{path}: {line}" for line in out.stdout.splitlines() if ":" in line and "Found" not in line]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vanishing_tails.book.lint", description=__doc__.split("\n")[0])
    parser.add_argument("chapters", nargs="*", help="pages with code (default: intro.md and chapters/*.md)")
    parser.add_argument("--fix", action="store_true", help="reformat the cells in place")
    args = parser.parse_args(argv)
    paths = [Path(p) for p in args.chapters] or [
        *(p for p in [Path("intro.md")] if p.is_file()),
        *sorted(Path("chapters").glob("*.md")),
    ]
    problems = [p for path in paths for p in lint_chapter(path, fix=args.fix)]
    print("\n".join(problems) if problems else f"{len(paths)} pages clean")
    return 1 if problems else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
