"""Every chapter, executed for real through papermill at the ``smoke`` scale, and the book.

Each chapter runs three times in the whole suite (the budget that lets ten chapters fit):

* with two test seeds that no chapter was developed on (development uses seeds 0 and 1);
  no claim's verdict may *contradict* its declared expectation (``inconclusive`` is
  allowed at smoke, where intervals over few replicates are wide; ``reproduce --scale
  book`` requires every verdict to equal its expectation);
* once under the spec's null configuration, where no ``direction`` claim may hold —
  proof that every directional claim can fail.

Chapter 1 runs its two seeds as a real Dask sweep on a 2-worker ``LocalCluster`` and is
then run once more, serially: identical parameters must give identical numbers, and the
sweep must equal the serial run. The strict book build (``-W -n``) renders the seed-31
runs without executing any chapter again. The runner's results.json is what is checked,
so the tests cover the whole path: parameters -> papermill -> glue -> results.json -> book.
"""

from __future__ import annotations

import json
import re
import sys

import offline
import pytest

from vanishing_tails.book.build import build_book
from vanishing_tails.book.claims import contradictions
from vanishing_tails.book.registry import all_specs, find_spec
from vanishing_tails.book.runner import run_chapter
from vanishing_tails.book.sweep import sweep

SEEDS = (31, 47)  # declared with the claims issue, before any chapter ran on them
SPECS = all_specs()
SWEPT = "01_tails_vanish_first"  # the fastest chapter: its two seeds run as a Dask sweep
OTHERS = [s for s in SPECS if s.stem != SWEPT]


@pytest.fixture(scope="session")
def runs(root):
    """Where the first seed's runs live, shared by the xdist workers and the book test."""
    path = root / "_build" / "test-runs" / f"smoke-seed{SEEDS[0]}"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def book_dir(root):
    """Where the strict build writes the book; the browser test reads it."""
    return root / "_build" / "test-book"


def _describe(claims) -> str:
    return "\n".join(
        f"  {c['id']}: {c['statement']} — effect {c['effect']:.4g} [{c['low']:.4g}, {c['high']:.4g}], "
        f"delta {c['delta']:.4g}: {c['verdict']} (expected {c['expected']})"
        for c in claims
    )


def _check_run(spec, seed, results, folder):
    saved = json.loads((folder / "results.json").read_text())
    assert saved["chapter"] == spec.stem
    assert saved["parameters"]["seed"] == seed and saved["parameters"]["scale"] == "smoke"
    assert {c["id"] for c in saved["claims"]} == {c.id for c in spec.claims}, "every declared claim is measured"
    assert saved["figures"], "a chapter must publish at least one named figure"
    for name in saved["figures"]:
        assert (folder / f"{name}.png").stat().st_size > 1000
        assert (folder / f"{name}.svg").exists()
    bad = contradictions(results["claims"])
    assert not bad, f"seed {seed}: verdicts that contradict their expectation:\n" + _describe(bad)


@pytest.mark.chapter
@pytest.mark.xdist_group("first-seed")
@pytest.mark.parametrize("spec", OTHERS, ids=[s.short for s in OTHERS])
def test_first_seed(spec, runs):
    folder = runs / spec.stem
    results = run_chapter(spec, spec.resolve(scale="smoke", seed=SEEDS[0]), folder, progress=False)
    _check_run(spec, SEEDS[0], results, folder)


@pytest.mark.chapter
@pytest.mark.parametrize("spec", OTHERS, ids=[s.short for s in OTHERS])
def test_second_seed(spec, tmp_path):
    results = run_chapter(spec, spec.resolve(scale="smoke", seed=SEEDS[1]), tmp_path, progress=False)
    _check_run(spec, SEEDS[1], results, tmp_path)


@pytest.mark.chapter
@pytest.mark.xdist_group("first-seed")
def test_dask_sweep_of_two_seeds_equals_serial_runs_and_is_deterministic(runs, tmp_path):
    spec = find_spec(SWEPT)
    params = spec.resolve(scale="smoke")
    summary = sweep(spec, params, list(SEEDS), tmp_path / "sweep", workers=2)
    assert not summary["errors"]
    for seed in SEEDS:
        folder = tmp_path / "sweep" / f"seed-{seed}"
        _check_run(spec, seed, json.loads((folder / "results.json").read_text()), folder)
    assert (tmp_path / "sweep" / "fig-sweep.png").stat().st_size > 1000
    assert {c["claim"] for c in json.loads((tmp_path / "sweep" / "sweep.json").read_text())["claims"]} == {
        c.id for c in spec.claims
    }
    serial = run_chapter(spec, spec.resolve(scale="smoke", seed=SEEDS[1]), tmp_path / "serial", progress=False)
    swept = json.loads((tmp_path / "sweep" / f"seed-{SEEDS[1]}" / "results.json").read_text())
    # compared as JSON text: identical numbers, and an undefined interval (NaN) equals itself
    assert json.dumps(serial["values"], sort_keys=True) == json.dumps(swept["values"], sort_keys=True)
    assert json.dumps(serial["claims"], sort_keys=True) == json.dumps(swept["claims"], sort_keys=True)
    link = runs / spec.stem  # the book test renders this seed's run
    if link.is_symlink() or link.exists():
        link.unlink() if link.is_symlink() else __import__("shutil").rmtree(link)
    link.symlink_to(tmp_path / "sweep" / f"seed-{SEEDS[0]}", target_is_directory=True)


def _null_holding(results):
    return [c for c in results["claims"] if c["kind"] == "direction" and c["verdict"] == "holds"]


@pytest.mark.chapter
@pytest.mark.parametrize("spec", OTHERS, ids=[s.short for s in OTHERS])
def test_null_configuration_leaves_no_direction_claim_holding(spec, tmp_path):
    assert spec.null, f"{spec.stem} declares no null configuration"
    params = spec.resolve(scale="smoke", seed=SEEDS[0], **spec.null)
    results = run_chapter(spec, params, tmp_path, progress=False)
    holding = _null_holding(results)
    assert not holding, f"under the null ({spec.null_description}) these still hold:\n" + _describe(holding)


@pytest.mark.chapter
def test_null_configuration_of_chapter_1_runs_with_no_network(tmp_path):
    """Chapter 1's null control runs through the command line inside a network namespace
    with loopback only: the chapter, papermill and the runner need no network."""
    spec = find_spec(SWEPT)
    assert spec.null, f"{spec.stem} declares no null configuration"
    reason = offline.available()
    if reason:
        pytest.skip(f"cannot prove offline here ({reason}); the null control is not run")
    cmd = [sys.executable, "-m", "vanishing_tails", "run", spec.short, "--scale", "smoke", "--quiet", "--out",
           str(tmp_path), "-p", "seed", str(SEEDS[0])]  # fmt: skip
    for name, value in spec.null.items():
        cmd += ["-p", name, json.dumps(value)]
    proc = offline.run(cmd, timeout=600)
    assert (tmp_path / "results.json").exists(), proc.stdout[-2000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    holding = _null_holding(results)
    assert not holding, f"under the null ({spec.null_description}) these still hold:\n" + _describe(holding)


def test_offline_namespace_really_has_no_network():
    """The proof above means something only if a program that reaches out fails there."""
    reason = offline.available()
    if reason:
        pytest.skip(f"cannot prove offline here ({reason})")
    reach = "import socket; socket.create_connection(('pypi.org', 443), timeout=5)"
    assert offline.run([sys.executable, "-c", reach], timeout=60).returncode != 0
    local = "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); print('ok')"
    assert offline.run([sys.executable, "-c", local], timeout=60).stdout.strip() == "ok"
    for argv in (["list"], ["run", "tails", "-p", "q", "7"], ["figure", "--list"]):
        proc = offline.run([sys.executable, "-m", "vanishing_tails", *argv], timeout=120)
        assert proc.returncode in (0, 2) and "Traceback" not in proc.stderr, proc.stderr[-2000:]


@pytest.mark.book
@pytest.mark.xdist_group("first-seed")
def test_book_builds_strictly_and_renders_in_a_browser(runs, book_dir, monkeypatch, root):
    """Runs after the first-seed tests (same xdist group, collected after them): every
    chapter's run is reused, so the build executes no chapter; -W -n fail on any warning."""
    import papermill

    def no_kernel(*a, **k):
        raise AssertionError("the book build executed a chapter again")

    monkeypatch.setattr(papermill, "execute_notebook", no_kernel)
    assert build_book("smoke", strict=True, out=book_dir, seed=SEEDS[0], runs=runs, workers=1) == 0
    html = book_dir / "_build" / "html"
    assert (html / "index.html").exists()
    for spec in SPECS:
        text = (html / "chapters" / f"{spec.stem}.html").read_text()
        assert "Claims at this scale" in text
        assert not re.search(r"\{(glue|cite)[:}]", text), f"{spec.stem}: unresolved glue/cite text in the HTML"
    claims = (html / "appendix" / "claims.html").read_text()
    for spec in SPECS:
        for c in spec.claims:
            assert c.id in claims, f"claim {c.id} missing from the Claims page"
    assert "automodule" not in (html / "appendix" / "api.html").read_text()
    _every_page_renders_in_a_real_browser_offline(html, root)


def _every_page_renders_in_a_real_browser_offline(html, root):
    """Headless Chromium opens every page of the book just built over a local HTTP server,
    with every host but 127.0.0.1 unresolvable: images load, formulas are rendered by the
    book's own MathJax, no console errors, no unresolved glue/cite text, internal links
    resolve, and search finds a chapter. Screenshots land in _build/screenshots/.
    (Part of the book test, so that it always sees the book that test built.)"""
    import browser

    reason = browser.available()
    if reason:
        pytest.skip(f"the book built; no browser test: {reason}")
    problems = browser.check_book(html, root / "_build" / "screenshots", search_word="martingale")
    assert not problems, "\n".join(problems)
