"""Every chapter, executed for real through papermill at the ``smoke`` scale.

Each chapter runs with two seeds that were not used while the chapter was written
(development uses seed 0); every claim in its table must hold on both. The first seed
runs twice, and both runs must give identical numbers (reproducibility). The runner's
results.json is what is checked, so the test also covers the whole run path:
parameters -> papermill -> glued values/figures/claims -> results.json.
"""

from __future__ import annotations

import json

import pytest

from vanishing_tails.book.runner import run_chapter
from vanishing_tails.book.registry import all_specs

SEEDS = (11, 23)
SPECS = all_specs()


@pytest.mark.chapter
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("spec", SPECS, ids=[s.short for s in SPECS])
def test_chapter_claims_hold_at_smoke(spec, seed, tmp_path):
    params = spec.resolve(scale="smoke", seed=seed)
    results = run_chapter(spec, params, tmp_path, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["chapter"] == spec.stem
    assert saved["parameters"]["seed"] == seed and saved["parameters"]["scale"] == "smoke"
    assert saved["claims"], "a chapter must publish a claims table"
    assert saved["figures"], "a chapter must publish at least one named figure"
    for name in saved["figures"]:
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
        assert (tmp_path / f"{name}.svg").exists()
    if seed == SEEDS[0]:  # identical parameters and seed give identical numbers
        again = run_chapter(spec, params, tmp_path / "again", progress=False)
        assert again["values"] == results["values"]
        assert again["claims"] == results["claims"]
    failed = [c for c in results["claims"] if not c["holds"]]
    assert not failed, "claims that do not hold:\n" + "\n".join(
        f"  {c['id']}: {c['statement']} (measured {c['value']:.4g}, needs {c['op']} {c['threshold']:.4g})"
        for c in failed
    )
