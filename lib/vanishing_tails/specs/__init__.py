"""Chapter declarations: one module per chapter, each defining ``SPEC`` (a ChapterSpec).

Adding a chapter adds a module here; nothing else needs registering. The runner
finds every spec with :func:`all_specs` and pairs it with ``chapters/<stem>.md``.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..scales import ChapterSpec


def all_specs() -> list[ChapterSpec]:
    """Every chapter's spec, sorted by file stem (hence by chapter number)."""
    specs = []
    for mod in pkgutil.iter_modules(__path__):
        spec = getattr(importlib.import_module(f"{__name__}.{mod.name}"), "SPEC", None)
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
    raise ValueError(
        f"unknown chapter {name!r}; allowed: " + ", ".join(f"{s.stem} ({s.short})" for s in specs)
    )
