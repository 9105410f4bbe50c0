"""Building the book: execute every chapter through the runner (two at a time on a Dask
cluster, reusing any run whose inputs did not change), then let Jupyter Book render the
executed notebooks without executing anything again.

Jupyter Book's own execution cache keys on the notebook text alone and would serve stale
figures after a library change; here every executed chapter carries the key of its
inputs (chapter text, parameters, library source, pins), so a changed library re-runs
exactly the chapters it can affect — all of them — and an unchanged one re-runs none.
The staged source (``_build/stage``) holds the executed notebooks, the intro, the
appendix with a generated Claims page, and a copy of ``_config.yml`` with execution off.
Explained in :ref:`sec-running-the-book`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from vanishing_tails.core import io

from .execute import Job, code_key, run_many
from .params import SCALE_ENV
from .registry import all_specs

PAGES = ("intro.md", "references.md")  # notebooks or pages outside chapters/ that the toc lists
COPIED = ("_toc.yml", "references.bib")
APPENDIX = "appendix"


def runs_dir(scale: str, seed: int | None = None, root: Path | None = None) -> Path:
    """Where ``book`` and ``reproduce`` keep their executed chapters: ``_build/runs/<scale>[-seed<N>]``."""
    name = scale if seed is None else f"{scale}-seed{seed}"
    return (root or io.repo_root()) / "_build" / "runs" / name


def chapter_jobs(scale: str, seed: int | None, runs: Path) -> list[Job]:
    """One job per chapter at ``scale`` (the spec's presets; ``seed`` overrides the default)."""
    jobs = []
    for spec in all_specs():
        params = spec.resolve(scale=scale, **({} if seed is None else {"seed": seed}))
        jobs.append(Job(spec.stem, params, str(runs / spec.stem), label=scale))
    return jobs


def execute_page(src: Path, out: Path, scale: str) -> Path:
    """Execute a notebook page that has no parameters (the intro) into ``out``, reusing it
    when the page and the library are unchanged."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    key = f"{code_key()}:{scale}:{__import__('hashlib').sha256(src.read_bytes()).hexdigest()}"
    stamp = out.with_suffix(".key")
    if out.exists() and stamp.exists() and stamp.read_text() == key:
        return out
    nb = jupytext.read(src)
    env = os.environ.get(SCALE_ENV)
    os.environ[SCALE_ENV] = scale
    try:
        NotebookClient(
            nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(src.parent)}}
        ).execute()
    finally:
        os.environ.pop(SCALE_ENV) if env is None else os.environ.__setitem__(SCALE_ENV, env)
    io.atomic_write(out, nbformat.writes(nb))
    io.atomic_write(stamp, key)
    return out


def _executed_for_book(path: Path) -> str:
    """The executed chapter with papermill's injected-parameters cell hidden in the book."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    return nbformat.writes(nb)


def claims_page(results: list[dict[str, Any]], scale: str) -> str:
    """The appendix's Claims page: every claim of every chapter at this build's scale."""
    from .claims import _fmt, test_text

    lines = [
        "(appendix-claims)=",
        "# Claims",
        "",
        f"Every claim of every chapter, measured when this book was built (scale `{scale}`). An",
        "effect comes with its 95% interval over independent replicates (the unit is named); the",
        "test compares the interval with the smallest effect of interest δ, declared in the",
        "chapter's spec before the chapter ran (see {ref}`sec-claims`). `expected` is the verdict",
        "the spec expects at the `book` scale; a claim of the notes that the toy contradicts is",
        "expected to *fail* and stays in the table, with a *finding* row saying what was found; a",
        "claim whose effect sits at δ at the `book` budget is expected *inconclusive*.",
        "",
    ]
    total = sum(len(r.get("claims", [])) for r in results)
    as_expected = sum(c["verdict"] == c["expected"] for r in results for c in r.get("claims", []))
    lines += [f"{as_expected} of {total} verdicts are as expected at this scale.", ""]
    for r in results:
        stem = r["chapter"]
        lines += [f"## {{doc}}`../chapters/{stem}`", ""]
        if "error" in r:
            lines += [f"This chapter failed to run: `{r['error']}`", ""]
            continue
        lines += [
            "| claim | statement | source | effect [95% CI] | test | replicates | verdict | expected |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in r["claims"]:
            statement = c["statement"].replace("|", "\\|")
            lines.append(
                f"| `{c['id']}` | {statement} | {c['source']} | {_fmt(c['effect'])} "
                f"[{_fmt(c['low'])}, {_fmt(c['high'])}] | {test_text(c).replace('|', chr(92) + '|')} | "
                f"{c['n']} {c['unit']} | **{c['verdict']}** | {c['expected']} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def stage(results: list[dict[str, Any]], runs: Path, scale: str, stage_dir: Path) -> Path:
    """Lay out the book's source with executed notebooks in ``stage_dir``; return it."""
    root = io.repo_root()
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    (stage_dir / "chapters").mkdir(parents=True)
    config = yaml.safe_load((root / "_config.yml").read_text())
    config.setdefault("execute", {})["execute_notebooks"] = "off"  # executed by the runner already
    (stage_dir / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    for name in COPIED:
        shutil.copy2(root / name, stage_dir / name)
    for name in PAGES:
        src = root / name
        if "code-cell" in src.read_text():
            page = execute_page(src, runs / "_pages" / f"{src.stem}.ipynb", scale)
            shutil.copy2(page, stage_dir / f"{src.stem}.ipynb")
        else:
            shutil.copy2(src, stage_dir / name)
    for folder in (APPENDIX, "_static"):
        if (root / folder).is_dir():
            shutil.copytree(root / folder, stage_dir / folder)
    (stage_dir / APPENDIX).mkdir(exist_ok=True)
    (stage_dir / APPENDIX / "claims.md").write_text(claims_page(results, scale))
    for r in results:
        stem = r["chapter"]
        (stage_dir / "chapters" / f"{stem}.ipynb").write_text(_executed_for_book(runs / stem / f"{stem}.ipynb"))
    return stage_dir


def dedupe_inline_scripts(html: Path) -> int:
    """Drop a repeated inline ``<script>`` line from every page; return the pages changed.

    Jupyter Book 1.x registers sphinx-thebe's inline configuration twice, and the second
    ``const THEBE_JS_URL`` is a JavaScript error on every page (the browser test sees it).
    """
    changed = 0
    for page in html.rglob("*.html"):
        lines, seen, out = page.read_text().splitlines(keepends=True), set(), []
        for line in lines:
            s = line.strip()
            if s.startswith("<script>") and s.endswith("</script>"):
                if s in seen:
                    continue
                seen.add(s)
            out.append(line)
        if len(out) != len(lines):
            page.write_text("".join(out))
            changed += 1
    return changed


def build_book(
    scale: str,
    *,
    strict: bool = True,
    out: Path | None = None,
    seed: int | None = None,
    runs: Path | None = None,
    workers: int = 2,
    scheduler: str | None = None,
) -> int:
    """Execute what changed (``workers`` chapters at a time), stage, render. Returns the
    exit code of ``jupyter-book build`` (1 if a chapter failed to run).
    Explained in :ref:`sec-running-the-book`.
    """
    root = io.repo_root()
    build = Path(out) if out else root
    runs = Path(runs) if runs else runs_dir(scale, seed)
    results = run_many(chapter_jobs(scale, seed, runs), workers=workers, scheduler=scheduler, reuse=True,
                       desc=f"executing chapters ({scale})")  # fmt: skip
    failed = [r for r in results if "error" in r]
    for r in failed:
        print(f"error: {r['chapter']} failed: {r['error']}", file=sys.stderr)
    if failed:
        return 1
    stage_dir = stage(results, runs, scale, build / "_build" / "stage")
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(stage_dir), "--path-output", str(build)]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    env = {**os.environ, SCALE_ENV: scale, io.ROOT_ENV: str(root)}
    rc = subprocess.call(cmd, env=env)
    dedupe_inline_scripts(build / "_build" / "html")
    if rc == 0:
        (build / "_build" / "claims.json").write_text(
            json.dumps([{"chapter": r["chapter"], "claims": r["claims"]} for r in results], indent=1)
        )
    return rc
