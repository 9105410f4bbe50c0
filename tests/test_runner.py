"""The command line: listing, refusing bad input before a kernel starts, atomic results."""

from __future__ import annotations

import json
import subprocess
import sys

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
