"""The chapter registry: every ``vanishing_tails.experiments.<package>.spec.SPEC``.

A new chapter is one ``chapters/NN_slug.md`` plus one experiments package with a
``spec.py``; nothing else needs registering. Specs are plain data, so finding them
imports neither torch nor any engine.
"""

from __future__ import annotations

import importlib
import pkgutil

from .params import ChapterSpec

EXPERIMENTS = "vanishing_tails.experiments"


def all_specs() -> list[ChapterSpec]:
    """Every chapter's spec, sorted by file stem (hence by chapter number)."""
    package = importlib.import_module(EXPERIMENTS)
    specs = []
    for mod in pkgutil.iter_modules(package.__path__):
        if not mod.ispkg:
            continue
        try:
            module = importlib.import_module(f"{EXPERIMENTS}.{mod.name}.spec")
        except ModuleNotFoundError as e:
            if e.name == f"{EXPERIMENTS}.{mod.name}.spec":
                continue
            raise
        spec = getattr(module, "SPEC", None)
        if isinstance(spec, ChapterSpec):
            specs.append(spec)
    return sorted(specs, key=lambda s: s.stem)


def find_spec(name: str) -> ChapterSpec:
    """Look a chapter up by stem (``01_tails_vanish_first``), short name (``tails``) or number."""
    specs = all_specs()
    for s in specs:
        number = s.stem.split("_", 1)[0]
        if name in (s.stem, s.short) or (name.isdigit() and int(name) == int(number)):
            return s
    raise ValueError(f"unknown chapter {name!r}; allowed: " + ", ".join(f"{s.stem} ({s.short})" for s in specs))
