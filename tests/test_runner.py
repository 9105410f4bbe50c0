"""The command line: listing, refusing bad input before a kernel starts, atomic results."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from vanishing_tails.book import params as scales
from vanishing_tails.book import runner
from vanishing_tails.book.registry import all_specs, find_spec


@pytest.fixture
def no_kernel(monkeypatch):
    """Fail the test if anything tries to execute a notebook."""

    def boom(*a, **k):
        raise AssertionError("a kernel was started for bad input")

    monkeypatch.setattr(runner, "run_chapter", boom)


def test_list_shows_every_chapter_and_parameter(capsys):
    assert runner.main(["list"]) == 0
    out = capsys.readouterr().out
    for spec in all_specs():
        assert spec.stem in out
        for p in spec.params:
            assert p.name in out


def test_every_spec_has_a_chapter_source(root):
    for spec in all_specs():
        src = root / "chapters" / f"{spec.stem}.md"
        assert src.is_file(), src
        text = src.read_text()
        assert "tags: [parameters]" in text
        for name in spec.names:  # the parameters cell declares every spec name
            assert f"\n{name} = " in text, f"{spec.stem}: parameter {name} missing from the parameters cell"


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["run", "no_such_chapter"], "unknown chapter"),
        (["run", "tails", "--scale", "huge"], "scale must be one of"),
        (["run", "tails", "-p", "bogus", "1"], "unknown parameter 'bogus'"),
        (["run", "tails", "-p", "n_seeds", "abc"], "parameter 'n_seeds' must be an integer"),
        (["run", "tails", "-p", "n_seeds", "0"], "parameter 'n_seeds' must be an integer >= 1"),
        (["run", "tails", "-p", "n_values", "[1, 10]"], "parameter 'n_values' must be a list of integers >= 2"),
        (["run", "tails", "-p", "real_fractions", "[-0.1, 0.5]"], "parameter 'real_fractions'"),
        (["run", "tails", "-p", "temperature", "0"], "parameter 'temperature'"),
        (["run", "tails", "-p", "scale", "smoke"], "--scale"),
        (["reproduce", "--scale", "tiny"], "scale must be one of"),
    ],
)
def test_bad_input_is_refused_before_a_kernel_starts(argv, needle, no_kernel, capsys):
    assert runner.main(argv) == runner.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert needle in err and err.count("\n") == 0  # one line


def test_bad_input_exit_code_from_the_shell():
    out = subprocess.run(
        [sys.executable, "-m", "vanishing_tails", "run", "tails", "-p", "q", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "parameter 'q' must be a number in [0.001, 0.5]" in out.stderr


def test_scale_presets_explicit_values_win_and_env_scale(monkeypatch):
    spec = find_spec("tails")
    smoke = spec.resolve(scale="smoke")
    assert smoke["n_seeds"] == spec.param("n_seeds").default["smoke"]
    assert spec.resolve(scale="smoke", n_seeds=3)["n_seeds"] == 3
    monkeypatch.setenv(scales.SCALE_ENV, "smoke")
    assert spec.resolve()["scale"] == "smoke"
    monkeypatch.setenv(scales.SCALE_ENV, "gigantic")
    with pytest.raises(ValueError, match="VANISHING_TAILS_SCALE must be one of"):
        spec.resolve()


def test_find_spec_by_stem_short_or_number():
    spec = find_spec("01_tails_vanish_first")
    assert find_spec("tails") is not None and find_spec("1").stem == spec.stem


def test_interrupted_run_leaves_no_results(tmp_path, monkeypatch):
    import papermill

    stale = tmp_path / "results.json"
    stale.write_text("{}")

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    spec = find_spec("tails")
    with pytest.raises(KeyboardInterrupt):
        runner.run_chapter(spec, spec.resolve(scale="smoke"), tmp_path, progress=False)
    assert not stale.exists()
    assert not any(p.name == "results.json" for p in tmp_path.rglob("*"))


def test_read_glued_parses_values_and_figures():
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("")
    prefix = "application/papermill.record/"
    cell.outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={prefix + "text/plain": "0.25"},
            metadata={"scrapbook": {"name": "x", "mime_prefix": prefix}},
        ),
        nbformat.v4.new_output(
            "display_data",
            data={prefix + "text/plain": "'{\"a\": 1}'"},
            metadata={"scrapbook": {"name": "claims", "mime_prefix": prefix}},
        ),
        nbformat.v4.new_output(
            "display_data",
            data={prefix + "text/html": "<table/>", prefix + "text/plain": "<Styler at 0x7f>"},
            metadata={"scrapbook": {"name": "claims-table", "mime_prefix": prefix}},
        ),
        nbformat.v4.new_output(
            "display_data",
            data={prefix + "image/png": "aGVsbG8=", prefix + "image/svg+xml": "<svg/>"},
            metadata={"scrapbook": {"name": "fig-a", "mime_prefix": prefix}},
        ),
    ]
    nb.cells = [cell]
    values, figures = runner.read_glued(nb)
    assert values["x"] == 0.25 and json.loads(values["claims"]) == {"a": 1}
    assert figures["fig-a"] == {"png": b"hello", "svg": "<svg/>"}
    assert "claims-table" not in values and "claims-table" not in figures


def test_figure_and_table_labels_are_unique_across_the_book(root):
    """Sphinx labels are global: two chapters naming a figure alike break the strict build."""
    import re

    names = []
    for path in [root / "intro.md", *sorted((root / "chapters").glob("*.md"))]:
        names += re.findall(r"^:name: (\S+)", path.read_text(), flags=re.M)
    duplicates = {n for n in names if names.count(n) > 1}
    assert not duplicates, f"labels used twice: {sorted(duplicates)}"


def test_run_key_changes_with_library_chapter_and_parameters(tmp_path, monkeypatch):
    from vanishing_tails.book import execute

    fake = tmp_path / "book"
    (fake / "chapters").mkdir(parents=True)
    (fake / "lib").mkdir()
    (fake / "lib" / "m.py").write_text("x = 1\n")
    src = fake / "chapters" / "01_x.md"
    src.write_text("a")
    monkeypatch.setenv("VANISHING_TAILS_ROOT", str(fake))
    k = execute.run_key(src, {"seed": 0})
    assert k == execute.run_key(src, {"seed": 0}) != execute.run_key(src, {"seed": 1})
    (fake / "lib" / "m.py").write_text("x = 2\n")
    k2 = execute.run_key(src, {"seed": 0})
    assert k2 != k
    src.write_text("b")
    assert execute.run_key(src, {"seed": 0}) != k2


def test_a_run_with_unchanged_inputs_is_reused_and_a_changed_one_is_not(tmp_path, monkeypatch):
    import papermill

    from vanishing_tails.book import execute

    spec = find_spec("tails")
    params = spec.resolve(scale="smoke")
    key = execute.run_key(execute.chapter_source(spec), params)
    done = {"chapter": spec.stem, "claims": [], "provenance": {"key": key}}
    (tmp_path / "results.json").write_text(json.dumps(done))
    (tmp_path / f"{spec.stem}.ipynb").write_text("{}")

    def no_kernel(*a, **k):
        raise AssertionError("executed although nothing changed")

    monkeypatch.setattr(papermill, "execute_notebook", no_kernel)
    assert runner.run_chapter(spec, params, tmp_path, progress=False, reuse=True) == done
    with pytest.raises(AssertionError, match="executed although"):
        runner.run_chapter(spec, {**params, "seed": 5}, tmp_path, progress=False, reuse=True)
    assert not (tmp_path / "results.json").exists()  # the stale result is gone before the run


def test_claims_page_lists_every_claim_with_interval_and_verdict():
    from vanishing_tails.book.build import claims_page

    claim = {"id": "c1", "statement": "a | b", "source": "notes", "kind": "direction", "effect": 0.7, "low": 0.6,
             "high": 0.8, "delta": 0.5, "theory": None, "n": 8, "unit": "chains", "verdict": "holds",
             "expected": "holds"}  # fmt: skip
    page = claims_page([{"chapter": "01_tails_vanish_first", "claims": [claim]}, {"chapter": "02_x", "error": "boom"}],
                       "smoke")  # fmt: skip
    assert "(appendix-claims)=" in page and "{doc}`../chapters/01_tails_vanish_first`" in page
    assert "| `c1` | a \\| b | notes | 0.7 [0.6, 0.8] | > 0.5 | 8 chains | **holds** | holds |" in page
    assert "1 of 1 verdicts are as expected" in page and "failed to run: `boom`" in page


def test_figure_list_names_every_figure_of_every_chapter(root, capsys):
    import re

    assert runner.main(["figure", "--list"]) == 0
    out = capsys.readouterr().out
    for path in sorted((root / "chapters").glob("*.md")):
        for name in re.findall(r"^```\{glue:figure\} (fig-[\w-]+)", path.read_text(), flags=re.M):
            assert re.search(rf"^{name}\s+{path.stem}\s+\S", out, flags=re.M), name


def test_unknown_figure_is_refused_with_the_closest_name(no_kernel, capsys):
    assert runner.main(["figure", "fig-gausian-tail"]) == runner.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert "did you mean 'fig-gaussian-tail'" in err and err.count("\n") == 0


def test_figure_copies_the_named_figure_from_its_chapters_run(tmp_path, monkeypatch, capsys):
    def fake_run(spec, params, out, **kw):
        out.mkdir(parents=True, exist_ok=True)
        for ext in ("png", "svg"):
            (out / f"fig-words.{ext}").write_text(ext)
        return {"figures": ["fig-words"]}

    monkeypatch.setattr(runner, "run_chapter", fake_run)
    assert runner.main(["figure", "words", "--scale", "smoke", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "fig-words.png").read_text() == "png" and (tmp_path / "fig-words.svg").exists()


# ----------------------------------------------------------------------------- the reader's book (#16)
@pytest.mark.parametrize(
    "value, spec, text",
    [(-0.001, ".2f", "0.00"), (-0.0, ".1f", "0.0"), (-0.004, ".0%", "0%"), (-1e-9, ".1e", "-1.0e-09"),
     (-0.004, ".1%", "-0.4%"), (-0.01, ".2f", "-0.01"), (-0.3, ".0f", "0"), (-2, "d", "-2"), (0.001, ".2f", "0.00")],
)  # fmt: skip
def test_a_rounded_zero_reads_without_a_sign(value, spec, text):
    from vanishing_tails.book.claims import _fmt, format_number
    from vanishing_tails.book.notebook import _plain
    from vanishing_tails.book.sphinx_ext import _format_plain_text

    assert format_number(value, spec) == text
    assert _format_plain_text(repr(value), spec) == text  # what glue:text shows in the book
    assert _fmt(-0.0) == "0" and _fmt(-1e-5) == "-1e-05"
    assert str(_plain(np.float64(-0.0))) == "0.0" and _plain(np.float32(-0.5)) == -0.5


def test_the_book_formats_glued_text_with_that_rule():
    from myst_nb.ext.glue import crossref, roles

    from vanishing_tails.book import sphinx_ext

    sphinx_ext.patch_glue_formatting()
    assert roles.format_plain_text("-0.0004", ".2f") == "0.00"
    assert crossref.format_plain_text("-0.0004", ".2f") == "0.00"


def _claim(cid, source, verdict):
    return {"id": cid, "source": source, "verdict": verdict, "expected": verdict}


@pytest.mark.parametrize(
    "verdicts, expected",
    [(["holds", "holds"], "supported"), (["fails"], "contradicted"), (["holds", "fails"], "qualified"),
     (["holds", "inconclusive"], "qualified"), (["inconclusive"], "not yet tested"), ([], "not yet tested"),
     (["fails", "inconclusive"], "contradicted")],
)  # fmt: skip
def test_a_notes_verdict_comes_from_the_chapters_notes_claims(verdicts, expected):
    from vanishing_tails.book.claims import note_verdict

    claims = [_claim(f"c{i}", "notes", v) for i, v in enumerate(verdicts)]
    claims += [_claim("t", "theory", "fails"), _claim("f", "finding", "holds")]  # not the notes' claims
    verdict, counts = note_verdict(claims)
    assert verdict == expected and counts["findings"] == 1
    assert note_verdict(None)[0] == "not yet tested"


def test_the_claim_map_covers_every_note_and_chapter_and_links_to_the_claims_page():
    from vanishing_tails.book.claims import NOTES, claim_map, claim_map_markdown

    stems = {s.stem for s in all_specs()}
    mapped = [stem for note in NOTES for stem in note.chapters]
    assert len(NOTES) == 9 and len(mapped) == len(set(mapped)), "the 8 notes and the source's question, once each"
    assert stems <= set(mapped), f"chapters that test no note: {sorted(stems - set(mapped))}"
    results = {"01_tails_vanish_first": {"claims": [_claim("a", "notes", "holds"), _claim("b", "notes", "fails")]},
               "03_sharpening_spreads": {"claims": [_claim("c", "notes", "holds")]},
               "04_one_format_wins": {"error": "boom"}}  # fmt: skip
    rows = claim_map(results)
    assert rows == claim_map(dict(reversed(results.items())))  # deterministic: the source's order
    by = {r["chapter"]: r for r in rows}
    assert by["01_tails_vanish_first"]["verdict"] == "qualified" and by["01_tails_vanish_first"]["note"] == 1
    assert by["03_sharpening_spreads"]["verdict"] == "supported"
    assert by["04_one_format_wins"]["verdict"] == "not yet tested" and not by["04_one_format_wins"]["ran"]
    page = claim_map_markdown(rows, {s.stem: s.title for s in all_specs()})
    assert "{ref}`qualified <claims-01_tails_vanish_first>`" in page
    assert "{doc}`1. Tails vanish first <chapters/01_tails_vanish_first>`" in page
    assert page.count("\n") == len(rows) + 2
    assert all(r["chapter"] in stems for r in claim_map(results, stems=stems))


def test_the_claims_page_headings_are_chapter_titles_with_labels():
    from vanishing_tails.book.build import claims_page

    page = claims_page([{"chapter": "03_sharpening_spreads", "claims": []}], "smoke")
    assert "(claims-03_sharpening_spreads)=\n## 3. Sharpening spreads\n" in page
    assert "## {doc}" not in page


# ----------------------------------------------------------------------------- launching (Binder, Colab)
def test_the_config_is_valid_and_has_binder_and_colab_buttons(root):
    import yaml
    from jupyter_book.config import get_final_config

    config, _ = get_final_config(user_yaml=root / "_config.yml", cli_config={"latex_individualpages": False},
                                  sourcedir=root, validate=True, raise_on_invalid=True)  # fmt: skip
    theme = config["html_theme_options"]
    assert theme["launch_buttons"]["binderhub_url"] and theme["launch_buttons"]["colab_url"]
    assert theme["launch_buttons"]["notebook_interface"] == "jupyterlab"
    user = yaml.safe_load((root / "_config.yml").read_text())
    assert theme["repository_url"] == user["repository"]["url"] and theme["path_to_docs"] == "notebooks"
    readme = (root / "README.md").read_text()
    assert user["repository"]["url"] in readme, "the placeholder repository is recorded in the README"


def test_environment_yml_builds_the_pinned_environment_with_cpu_torch(root):
    import yaml

    env = yaml.safe_load((root / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert "-c constraints.txt" in pip and '-e ".[book,test]"' in pip
    assert any("download.pytorch.org/whl/cpu" in line for line in pip)
    pins = (root / "constraints.txt").read_text().split()
    assert any(p.startswith("torch==") for p in pins) and any(p.startswith("jupytext==") for p in pins)


def test_every_launchable_notebook_starts_with_a_working_install_cell(tmp_path, monkeypatch, root):
    import importlib.util
    import os
    import subprocess as sp

    import nbformat

    from vanishing_tails.book.build import INSTALL_TAG, launch_settings, write_launch_notebooks

    monkeypatch.setenv("VANISHING_TAILS_REPOSITORY", "https://github.com/example/vanishing-tails")
    written = write_launch_notebooks(tmp_path, root)
    assert {p.relative_to(tmp_path).as_posix() for p in written} >= {"intro.ipynb"} | {
        f"chapters/{s.stem}.ipynb" for s in all_specs()
    }
    settings = launch_settings(root)
    for path in written:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        first = next(c for c in nb.cells if c.cell_type == "code")
        assert INSTALL_TAG in first.metadata["tags"], path
    source = first.source
    compile(source, "install-cell", "exec")
    calls = []
    monkeypatch.setattr(sp, "run", lambda cmd, **kw: calls.append(cmd))
    exec(source, {})  # vanishing_tails imports here: the cell does nothing
    assert calls == []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)  # as in Colab
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("VANISHING_TAILS_ROOT", str(root))
    exec(source, {})
    checkout = str(tmp_path / "vanishing-tails")
    assert calls[0] == ["git", "clone", "--depth", "1", "--branch", settings["branch"], settings["url"], checkout]
    assert calls[1] == [sys.executable, "-m", "pip", "install", "--quiet", "-e", checkout]
    assert sys.path[0] == os.path.join(checkout, "lib") and os.environ["VANISHING_TAILS_ROOT"] == checkout


def test_the_repository_address_is_resolved_and_a_placeholder_shows_no_buttons(tmp_path, monkeypatch, root):
    import shutil
    import subprocess as sp

    from vanishing_tails.book import build

    shutil.copy2(root / "_config.yml", tmp_path / "_config.yml")
    monkeypatch.delenv(build.REPOSITORY_ENV, raising=False)
    sp.run(["git", "init", "-q", str(tmp_path)], check=True)
    # No address anywhere: the placeholder, no launch buttons, and no launchable notebooks.
    assert build.launch_settings(tmp_path)["url"] == build.PLACEHOLDER
    assert "launch_buttons" not in build.staged_config(tmp_path)
    assert build.staged_config(tmp_path)["execute"]["execute_notebooks"] == "off"
    with pytest.raises(ValueError, match="placeholder"):
        build.write_launch_notebooks(tmp_path / "nb", tmp_path)
    # A clone's origin is the address (ssh form made browsable); the environment wins over it.
    sp.run(["git", "-C", str(tmp_path), "remote", "add", "origin", "git@github.com:someone/vt.git"], check=True)
    assert build.launch_settings(tmp_path)["url"] == "https://github.com/someone/vt"
    config = build.staged_config(tmp_path)
    assert config["repository"]["url"] == "https://github.com/someone/vt" and config["launch_buttons"]
    monkeypatch.setenv(build.REPOSITORY_ENV, "https://example.org/book")
    assert build.launch_settings(tmp_path)["url"] == "https://example.org/book"


# ----------------------------------------------------------------------------- progress
def test_progress_shows_on_a_terminal_and_stays_quiet_in_logs(monkeypatch):
    import io as stdio

    from vanishing_tails.core import progress

    class Tty(stdio.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    assert progress.enabled(Tty()) and not progress.enabled(stdio.StringIO())
    monkeypatch.setenv(progress.PROGRESS_ENV, "0")
    assert not progress.enabled(Tty())
    monkeypatch.setenv(progress.PROGRESS_ENV, "1")
    assert progress.enabled(stdio.StringIO())
    with progress.disabled():  # a chapter's switch wins over everything
        assert not progress.enabled(Tty()) and progress.bar(range(3)).disable
    assert progress.enabled()
    progress.set_enabled(False)
    try:
        assert list(progress.bar(range(3), desc="x")) == [0, 1, 2]
    finally:
        progress.set_enabled(None)


def test_a_chapter_run_shows_its_cells_on_a_terminal_and_silences_the_kernels_bars(tmp_path, monkeypatch):
    import papermill

    from vanishing_tails.core import progress

    seen = {}

    def fake_execute(nb, path, **kw):
        seen.update(kw["progress_bar"], kernel_env=os.environ.get(progress.PROGRESS_ENV))
        raise RuntimeError("stop here")

    import os

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    monkeypatch.setenv(progress.PROGRESS_ENV, "1")
    spec = find_spec("tails")
    with pytest.raises(RuntimeError, match="stop here"):
        runner.run_chapter(spec, spec.resolve(scale="smoke"), tmp_path, progress=True)
    assert seen == {"desc": spec.stem, "leave": False, "disable": False, "kernel_env": "0"}
    assert os.environ[progress.PROGRESS_ENV] == "1"  # restored
    monkeypatch.setenv(progress.PROGRESS_ENV, "0")  # CI logs
    with pytest.raises(RuntimeError):
        runner.run_chapter(spec, spec.resolve(scale="smoke"), tmp_path, progress=True)
    assert seen["disable"] is True


# ----------------------------------------------------------------------------- the README, as written
def _documented_commands(root):
    """Every ``python -m vanishing_tails ...`` and ``make ...`` line of the README's and the
    intro's bash blocks (comments dropped), as argument lists."""
    import re
    import shlex

    commands = []
    for path in (root / "README.md", root / "intro.md"):
        for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
            for line in block.splitlines():
                line = line.split("  #")[0].strip()
                if "-m vanishing_tails" in line or line.startswith("make "):
                    commands.append((path.name, shlex.split(line)))
    return commands


@pytest.fixture
def stand_ins(tmp_path, monkeypatch, root):
    """Cheap stand-ins for everything that executes a chapter or builds the book, in a
    scratch root (chapters linked from the real one), recording the scale each got."""
    from pathlib import Path

    from vanishing_tails.book import build, execute
    from vanishing_tails.book import figures as figures_mod
    from vanishing_tails.book import sweep as sweep_mod

    scratch = tmp_path / "root"
    scratch.mkdir()
    (scratch / "chapters").symlink_to(root / "chapters")
    monkeypatch.setenv("VANISHING_TAILS_ROOT", str(scratch))
    monkeypatch.chdir(tmp_path)
    got = []

    def fake_run(spec, params, out, **kw):
        got.append(("run", params["scale"]))
        Path(out).mkdir(parents=True, exist_ok=True)
        figures = [f.name for f in figures_mod.all_figures(root) if f.stem == spec.stem]
        for name in figures:
            for ext in ("png", "svg"):
                (Path(out) / f"{name}.{ext}").write_text(ext)
        return {"claims": [], "figures": figures, "provenance": {"wall_time_s": 0.0}}

    def fake_many(jobs, **kw):
        jobs = list(jobs)
        got.extend(("many", j.params["scale"]) for j in jobs)
        return [{"chapter": j.stem, "claims": []} for j in jobs]

    def fake_sweep(spec, params, seeds, out, **kw):
        got.append(("sweep", params["scale"]))
        return {"claims": [], "errors": []}

    def fake_book(scale, **kw):
        got.append(("book", scale))
        return 0

    monkeypatch.setattr(runner, "run_chapter", fake_run)
    monkeypatch.setattr(execute, "run_many", fake_many)
    monkeypatch.setattr(sweep_mod, "sweep", fake_sweep)
    monkeypatch.setattr(build, "build_book", fake_book)
    monkeypatch.setattr(runner, "_cluster_args", lambda args: (args.workers, args.scheduler))
    return got


def test_the_readmes_commands_run_as_written(root, stand_ins, monkeypatch):
    """Each documented ``python -m vanishing_tails`` line parses and runs (exit 0) with the
    chapters' real specs and parameter checks, work replaced by stand-ins."""
    monkeypatch.delenv(scales.SCALE_ENV, raising=False)
    commands = [(name, argv) for name, argv in _documented_commands(root) if "-m" in argv]
    assert len(commands) >= 6, commands
    for name, argv in commands:
        args = argv[argv.index("vanishing_tails") + 1 :]
        stand_ins.clear()
        assert runner.main(args) == 0, f"{name}: {' '.join(argv)}"
        scale = args[args.index("--scale") + 1] if "--scale" in args else scales.DEFAULT_SCALE
        assert all(s == scale for _, s in stand_ins), (argv, stand_ins)


@pytest.mark.parametrize(
    "line, env, scale",
    [("make book", {}, "book"), ("make book SCALE=smoke", {}, "smoke"),
     ("make book", {"VANISHING_TAILS_SCALE": "smoke"}, "smoke"),
     ("make book SCALE=full", {"VANISHING_TAILS_SCALE": "smoke"}, "full"),
     ("make reproduce SCALE=smoke", {}, "smoke")],
)  # fmt: skip
def test_the_readmes_scale_rule_holds_through_make(line, env, scale, root, stand_ins, monkeypatch):
    """Explicit ``SCALE=``/``--scale`` > ``$VANISHING_TAILS_SCALE`` > ``book``: what
    ``make -n`` would run, run with the same environment (stand-ins do the work)."""
    import os
    import shlex

    readme = (root / "README.md").read_text()
    documented = {" ".join(argv) for _, argv in _documented_commands(root)}
    assert line in documented or f"`{line}`" in readme or line == "make book SCALE=full"
    monkeypatch.delenv(scales.SCALE_ENV, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    dry = subprocess.run(["make", "-n", "-C", str(root), *line.split()[1:]], capture_output=True, text=True,
                         env={**os.environ, **env}, check=True).stdout  # fmt: skip
    cmd = next(c for c in dry.splitlines() if "-m vanishing_tails" in c)
    args = shlex.split(cmd)[shlex.split(cmd).index("vanishing_tails") + 1 :]
    assert runner.main(args) == 0
    assert stand_ins and all(s == scale for _, s in stand_ins), (cmd, stand_ins)


def test_every_reference_has_a_doi_or_an_arxiv_id(root):
    """What ``make linkcheck`` follows: each entry of references.bib is findable by a DOI
    or an arXiv id (with its abs/ URL); a paper that has neither (NeurIPS before 2017 issued
    no DOIs) links its publisher's proceedings page."""
    import re

    missing = []
    for entry in re.split(r"(?=^@)", (root / "references.bib").read_text(), flags=re.M):
        key = re.match(r"@\w+\{([^,]+),", entry)
        if not key:
            continue
        doi = re.search(r"^\s*doi\s*=\s*\{10\.\d{4,9}/\S+\}", entry, flags=re.M)
        arxiv = re.search(r"^\s*eprint\s*=\s*\{(\d{4}\.\d{4,5})\}", entry, flags=re.M)
        if arxiv and f"arxiv.org/abs/{arxiv.group(1)}" not in entry:
            missing.append(f"{key.group(1)} (eprint without its arxiv.org/abs URL)")
        elif not (
            doi
            or arxiv
            or re.search(
                r"^\s*url\s*=\s*\{https://(papers\.nips\.cc|proceedings\.mlr\.press|aclanthology\.org)/",
                entry,
                flags=re.M,
            )
        ):
            missing.append(key.group(1))
    assert not missing, f"references without a DOI or arXiv id: {missing}"
