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

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from vanishing_tails.core import io

from .claims import RUNS_ENV
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
        # the costliest chapters start first (their order at other scales is about the same)
        jobs.append(Job(spec.stem, params, str(runs / spec.stem), label=scale, cost=spec.book_seconds))
    return jobs


def _results_key(results: list[dict[str, Any]] | None) -> str:
    """What a page computed from the runs depends on: each chapter's run key and claims."""
    rows = [(r["chapter"], r.get("provenance", {}).get("key"), r.get("error"), r.get("claims")) for r in results or []]
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


def execute_page(src: Path, out: Path, scale: str, runs: Path | None = None,
                 results: list[dict[str, Any]] | None = None) -> Path:  # fmt: skip
    """Execute a notebook page that has no parameters (the intro) into ``out``, reusing it
    when the page, the library and the runs' claims are unchanged. The page reads this
    build's runs from ``$VANISHING_TAILS_RUNS`` (the intro's claim map)."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    key = f"{code_key()}:{scale}:{hashlib.sha256(src.read_bytes()).hexdigest()}:{_results_key(results)}"
    stamp = out.with_suffix(".key")
    if out.exists() and stamp.exists() and stamp.read_text() == key:
        return out
    nb = jupytext.read(src)
    saved = {name: os.environ.get(name) for name in (SCALE_ENV, RUNS_ENV)}
    os.environ[SCALE_ENV] = scale
    if runs is not None:
        os.environ[RUNS_ENV] = str(runs)
    try:
        NotebookClient(
            nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(src.parent)}}
        ).execute()
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
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


def _chapter_heading(stem: str, titles: dict[str, str]) -> str:
    """``3. Sharpening spreads`` for a known chapter (the side bar shows it), else the stem."""
    number, _, _ = stem.partition("_")
    title = titles.get(stem)
    return f"{int(number)}. {title}" if title and number.isdigit() else stem


def claims_page(results: list[dict[str, Any]], scale: str) -> str:
    """The appendix's Claims page: every claim of every chapter at this build's scale."""
    from .claims import _fmt, test_text

    titles = {spec.stem: spec.title for spec in all_specs()}
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
        lines += [f"(claims-{stem})=", f"## {_chapter_heading(stem, titles)}", "",
                  f"The claims of {{doc}}`../chapters/{stem}`.", ""]  # fmt: skip
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
    (stage_dir / "_config.yml").write_text(yaml.safe_dump(staged_config(root), sort_keys=False))
    for name in COPIED:
        shutil.copy2(root / name, stage_dir / name)
    for name in PAGES:
        src = root / name
        if "code-cell" in src.read_text():
            page = execute_page(src, runs / "_pages" / f"{src.stem}.ipynb", scale, runs=runs, results=results)
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


# ----------------------------------------------------------------------------- launching (Binder, Colab)
LAUNCH_DIR = "notebooks"  # _config.yml: repository.path_to_book; `make notebooks` writes it
INSTALL_TAG = "colab-install"


PLACEHOLDER = "https://github.com/OWNER/vanishing-tails"  # _config.yml until the address is decided
REPOSITORY_ENV = "VANISHING_TAILS_REPOSITORY"


def _remote_url(root: Path) -> str | None:
    """The checkout's ``origin`` as a browsable https address (``git@github.com:o/r.git``
    -> ``https://github.com/o/r``), or None where there is no git or no origin."""
    try:
        out = subprocess.run(["git", "-C", str(root), "remote", "get-url", "origin"], capture_output=True,
                             text=True, timeout=10, check=False).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    if out.startswith("git@") and ":" in out:
        host, path = out[4:].split(":", 1)
        out = f"https://{host}/{path}"
    out = out.removesuffix(".git").rstrip("/")
    return out if out.startswith("https://") else None


def launch_settings(root: Path | None = None) -> dict[str, str]:
    """The repository the launch buttons and the install cell point at (``url``, ``branch``,
    ``path_to_book``). The address is, first found: ``$VANISHING_TAILS_REPOSITORY``,
    ``_config.yml``'s ``repository.url`` unless it is the placeholder, the checkout's git
    ``origin``; else the placeholder (then the book shows no launch buttons)."""
    root = root or io.repo_root()
    config = yaml.safe_load((root / "_config.yml").read_text())
    repo = config.get("repository") or {}
    configured = str(repo.get("url") or "").rstrip("/")
    url = os.environ.get(REPOSITORY_ENV) or (configured if configured not in ("", PLACEHOLDER) else None)
    url = url or _remote_url(root) or configured or PLACEHOLDER
    return {"url": url.rstrip("/"), "branch": str(repo.get("branch") or "main"),
            "path_to_book": str(repo.get("path_to_book") or "")}  # fmt: skip


def staged_config(root: Path | None = None) -> dict[str, Any]:
    """``_config.yml`` as the staged build reads it: execution off (the runner executed
    every chapter), the repository address resolved by :func:`launch_settings`, and no
    launch buttons while that address is still the placeholder (a button must not lead to
    a page that does not exist)."""
    root = root or io.repo_root()
    config = yaml.safe_load((root / "_config.yml").read_text())
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    url = launch_settings(root)["url"]
    config.setdefault("repository", {})["url"] = url
    if url == PLACEHOLDER:
        config.pop("launch_buttons", None)
    return config


def install_cell_source(url: str, branch: str) -> str:
    """The first code cell of every launchable notebook: where ``vanishing_tails`` does not
    import (Colab, a bare kernel), clone the repository at ``branch`` and install it
    (editable, so the chapters find ``chapters/`` and the data); elsewhere, nothing."""
    return f'''# Colab, or a kernel without the book's library: install it from the book's repository.
# Nothing happens where `vanishing_tails` already imports (Binder, a local checkout).
import importlib.util
import os
import subprocess
import sys

if importlib.util.find_spec("vanishing_tails") is None:
    REPO, BRANCH, CHECKOUT = "{url}", "{branch}", os.path.abspath("vanishing-tails")
    if not os.path.isdir(CHECKOUT):
        subprocess.run(["git", "clone", "--depth", "1", "--branch", BRANCH, REPO, CHECKOUT], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-e", CHECKOUT], check=True)
    sys.path.insert(0, os.path.join(CHECKOUT, "lib"))  # an editable install is seen by new kernels only
    os.environ["VANISHING_TAILS_ROOT"] = CHECKOUT
    importlib.invalidate_caches()'''


def launch_notebook(src: Path, root: Path | None = None):
    """``src`` (a jupytext MyST page) as a notebook whose first code cell is the install cell."""
    import jupytext
    import nbformat

    settings = launch_settings(root)
    nb = jupytext.read(src)
    cell = nbformat.v4.new_code_cell(install_cell_source(settings["url"], settings["branch"]))
    cell.metadata["tags"] = [INSTALL_TAG]
    first_code = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), len(nb.cells))
    nb.cells.insert(first_code, cell)
    nb.metadata.pop("jupytext", None)  # a plain notebook: Colab does not pair it with the .md
    return nb


def write_launch_notebooks(out: Path | None = None, root: Path | None = None) -> list[Path]:
    """Write every page the table of contents lists that has code (the intro, the chapters)
    as a launchable ``.ipynb`` under ``out`` (default ``notebooks/``), mirroring the book's
    paths: what the Binder and Colab buttons open (``make notebooks``).
    Explained in :ref:`sec-running-the-book`.
    """
    import nbformat

    root = root or io.repo_root()
    settings = launch_settings(root)
    if settings["url"] == PLACEHOLDER:
        raise ValueError(f"the repository address is still the placeholder {PLACEHOLDER}: set repository.url in "
                         f"_config.yml, or ${REPOSITORY_ENV}, or a git remote 'origin' (the notebooks' "
                         "install cell clones it)")  # fmt: skip
    out = Path(out) if out else root / (settings["path_to_book"] or LAUNCH_DIR)
    pages = [root / name for name in PAGES] + [root / "chapters" / f"{s.stem}.md" for s in all_specs()]
    written = []
    for src in pages:
        if "code-cell" not in src.read_text():
            continue
        path = out / src.relative_to(root).with_suffix(".ipynb")
        io.atomic_write(path, nbformat.writes(launch_notebook(src, root)))
        written.append(path)
    return written


def notebooks_command() -> int:
    """``make notebooks``: write the launchable notebooks and list them; a one-line error and
    exit status 2 while the repository address is the placeholder."""
    try:
        written = write_launch_notebooks()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(*written, sep="\n")
    return 0
