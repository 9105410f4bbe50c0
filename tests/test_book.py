"""The whole book builds at the smoke scale with warnings as errors (-W -n --keep-going)."""

from __future__ import annotations

import pytest

from vanishing_tails.book.runner import build_book
from vanishing_tails.book.registry import all_specs


@pytest.mark.book
def test_book_builds_strictly_at_smoke(tmp_path):
    assert build_book("smoke", strict=True, out=tmp_path) == 0
    html = tmp_path / "_build" / "html"
    assert (html / "index.html").exists()
    for spec in all_specs():
        page = html / "chapters" / f"{spec.stem}.html"
        assert page.exists(), f"{spec.stem} is missing from the book (is it in _toc.yml?)"
        text = page.read_text()
        assert "Claims at this scale" in text
    assert (tmp_path / "_build" / ".cache-key").exists()
