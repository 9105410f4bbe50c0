"""Claims: a chapter's statements, evaluated on its own results (clause 5 of the contract).

A :class:`Claim` carries the statement, the measured value, the threshold and the
comparison, and computes whether it holds. ``source`` records where the statement
comes from:

* ``"notes"`` — a claim of the source notes, tested as stated;
* ``"theory"`` — a prediction from a formula (an oracle), tested against simulation;
* ``"finding"`` — what the experiment showed where it does *not* support the notes.
  The statement then says what was found (e.g. "the same format wins at both
  sizes"), so that a finding, too, is a claim that holds and is re-checked on new seeds.

Every claim of every chapter is listed by ``python -m vanishing_tails reproduce``,
which exits 1 if any fails.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

OPS = {
    ">": lambda v, t: v > t,
    ">=": lambda v, t: v >= t,
    "<": lambda v, t: v < t,
    "<=": lambda v, t: v <= t,
    "==": lambda v, t: v == t,
}
SOURCES = ("notes", "theory", "finding")


@dataclass(frozen=True)
class Claim:
    """One row of a chapter's "Claims at this scale" table."""

    id: str
    statement: str
    value: float
    op: str
    threshold: float
    source: str = "notes"

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"op must be one of {list(OPS)}, got {self.op!r}")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        # Plain Python floats, so results.json and glue never see numpy scalars.
        object.__setattr__(self, "value", float(self.value))
        object.__setattr__(self, "threshold", float(self.threshold))

    @property
    def holds(self) -> bool:
        return (not math.isnan(self.value)) and bool(OPS[self.op](self.value, self.threshold))

    def as_dict(self) -> dict:
        d = asdict(self)
        d["holds"] = self.holds
        return d


def claims_frame(claims: list[Claim]) -> pd.DataFrame:
    """The claims table as a DataFrame (statement, measured, test, holds, source)."""
    rows = [
        {
            "claim": c.id,
            "statement": c.statement,
            "measured": f"{c.value:.3g}",
            "test": f"{c.op} {c.threshold:.3g}",
            "holds": "yes" if c.holds else "NO",
            "source": c.source,
        }
        for c in claims
    ]
    return pd.DataFrame(rows)


def check_unique(claims: list[Claim]) -> None:
    ids = [c.id for c in claims]
    if len(ids) != len(set(ids)):
        raise ValueError(f"claim ids must be unique, got {ids}")
