"""Every figure of the book by name: ``python -m vanishing_tails figure NAME`` regenerates
one figure by running the chapter that owns it, and ``figure --list`` lists them all.

A figure is owned by the chapter whose source shows it (a ``glue:figure`` block named
``fig-...``); its caption's first sentence describes it. Explained in :ref:`sec-running-the-book`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from vanishing_tails.core import io

from .registry import all_specs

_BLOCK = re.compile(r"^```\{glue:figure\}\s+(fig-[\w-]+)\s*\n((?::[^\n]*\n)*)\n?(.*?)^```", re.M | re.S)


@dataclass(frozen=True)
class Figure:
    """One named figure: its name, the chapter (stem) that draws it, its caption's first sentence."""

    name: str
    stem: str
    caption: str


def _first_sentence(text: str) -> str:
    text = re.sub(r"\{glue:text\}`([\w-]+)(:[^`]*)?`", r"<\1>", " ".join(text.split()))
    text = re.sub(r"\{[a-z:]+\}`([^`]*)`", r"\1", text)
    m = re.match(r"(.+?[.!?])(\s|$)", text)
    return (m.group(1) if m else text)[:160]


def all_figures(root: Path | None = None) -> list[Figure]:
    """Every ``glue:figure`` block of every chapter, in book order."""
    root = root or io.repo_root()
    figures = []
    for spec in all_specs():
        text = (root / "chapters" / f"{spec.stem}.md").read_text()
        for m in _BLOCK.finditer(text):
            figures.append(Figure(m.group(1), spec.stem, _first_sentence(m.group(3))))
    return figures


def find_figure(name: str, root: Path | None = None) -> Figure:
    """The figure called ``name`` (with or without the ``fig-`` prefix); ValueError naming the
    closest match otherwise."""
    figures = all_figures(root)
    wanted = name if name.startswith("fig-") else f"fig-{name}"
    for f in figures:
        if f.name == wanted:
            return f
    close = difflib.get_close_matches(wanted, [f.name for f in figures], n=1, cutoff=0.0)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown figure {name!r}{hint} (python -m vanishing_tails figure --list shows all)")
