"""Scales, parameter declarations and validation: the chapter contract's first clause.

Every chapter declares its parameters once, as a :class:`ChapterSpec` in
``vanishing_tails.book.registry.<module>``. The same declaration serves three readers:

* the chapter's own notebook, whose ``parameters`` cell lists the names with
  ``None`` meaning "take the preset of the current scale", and which calls
  ``SPEC.resolve(globals())`` to fill and validate them;
* the runner (``python -m vanishing_tails run``), which validates ``-p NAME VALUE``
  before any kernel starts;
* ``python -m vanishing_tails list``, which prints names, defaults and help.

A scale is ``smoke`` (tests and CI, <= 60 s a chapter on 2 cores), ``book`` (the
built book, <= 5 min a chapter) or ``full`` (closer to the papers' sizes). When a
notebook's ``scale`` is ``None`` it is read from the environment variable
``VANISHING_TAILS_SCALE`` and defaults to ``book``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

SCALES: tuple[str, ...] = ("smoke", "book", "full")
SCALE_ENV = "VANISHING_TAILS_SCALE"
DEFAULT_SCALE = "book"

KINDS = ("int", "float", "str", "bool", "int_list", "float_list", "str_list")  # parameter kinds

# Claims (see vanishing_tails.book.claims): declared here, as plain data, with the spec.
SOURCES = ("notes", "paper", "theory", "finding")
CLAIM_KINDS = ("direction", "equivalence", "oracle")
EXPECTED = ("holds", "fails", "inconclusive")  # inconclusive: declared unresolvable at book budget


def current_scale(scale: str | None = None) -> str:
    """The scale in force: the explicit value, else ``$VANISHING_TAILS_SCALE``, else ``book``."""
    value = scale if scale is not None else os.environ.get(SCALE_ENV, DEFAULT_SCALE)
    if value not in SCALES:
        source = "scale" if scale is not None else SCALE_ENV
        raise ValueError(f"{source} must be one of {', '.join(SCALES)}; got {value!r}")
    return value


@dataclass(frozen=True)
class Param:
    """One chapter parameter: its type, its default per scale and its allowed values.

    ``default`` is either one value for every scale or a dict ``{scale: value}``.
    ``low``/``high`` bound numbers (and every element of a numeric list), inclusive;
    ``choices`` restricts strings (and every element of a string list).
    """

    name: str
    kind: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Param {self.name}: kind must be one of {KINDS}, got {self.kind!r}")

    def default_for(self, scale: str) -> Any:
        if isinstance(self.default, dict):
            return self.default[scale]
        return self.default

    def allowed(self) -> str:
        """Human description of the allowed values, used in every error message."""
        base = {
            "int": "an integer",
            "float": "a number",
            "str": "a string",
            "bool": "true or false",
            "int_list": "a list of integers",
            "float_list": "a list of numbers",
            "str_list": "a list of strings",
        }[self.kind]
        if self.choices is not None:
            base += " from {" + ", ".join(self.choices) + "}"
        if self.low is not None and self.high is not None:
            base += f" in [{self.low:g}, {self.high:g}]"
        elif self.low is not None:
            base += f" >= {self.low:g}"
        elif self.high is not None:
            base += f" <= {self.high:g}"
        return base

    def validate(self, value: Any) -> Any:
        """Return ``value`` coerced to this parameter's type, or raise ValueError naming it."""
        err = ValueError(f"parameter {self.name!r} must be {self.allowed()}; got {value!r}")
        if self.kind.endswith("_list"):
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise err
            items = list(value)
            if not items:
                raise err
            scalar = Param(self.name, self.kind[: -len("_list")], None, self.help, self.low, self.high, self.choices)
            try:
                return [scalar.validate(v) for v in items]
            except ValueError:
                raise err from None
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            raise err
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
                # numpy integers are ints too
                if not (hasattr(value, "dtype") and value.dtype.kind in "iu"):
                    raise err
            value = int(value)
        elif self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                if not (hasattr(value, "dtype") and value.dtype.kind in "iuf"):
                    raise err
            value = float(value)
            if value != value:  # NaN
                raise err
        elif self.kind == "str":
            if not isinstance(value, str):
                raise err
            if self.choices is not None and value not in self.choices:
                raise err
            return value
        if self.low is not None and value < self.low:
            raise err
        if self.high is not None and value > self.high:
            raise err
        return value


def common_params(n_seeds: dict[str, int] | int) -> list[Param]:
    """The parameters every chapter has: ``scale``, ``seed`` and ``n_seeds``."""
    return [
        Param(
            "scale",
            "str",
            None,
            "smoke | book | full; None reads $VANISHING_TAILS_SCALE (default book)",
            choices=SCALES,
        ),
        Param("seed", "int", 0, "base seed; every random stream is derived from it", low=0),
        Param("n_seeds", "int", n_seeds, "independent repetitions (seeds / chains) per setting", low=1),
    ]


@dataclass(frozen=True)
class ClaimSpec:
    """A claim as the spec declares it, before any number is seen (plain data).

    ``statement`` may hold ``{name}`` fields that :func:`evaluate` fills from the run's
    parameters (e.g. ``"n = {n_small}"``); every clause of it must be computed.
    ``effect`` says what the per-replicate value is; ``delta_source`` where δ comes from
    (a theory value, a paper's number, or a stated minimal effect).
    """

    id: str
    statement: str
    effect: str
    kind: str
    delta: float
    delta_source: str
    unit: str
    source: str = "notes"
    expected: str = "holds"

    def __post_init__(self) -> None:
        if self.kind not in CLAIM_KINDS:
            raise ValueError(f"claim {self.id}: kind must be one of {CLAIM_KINDS}, got {self.kind!r}")
        if self.source not in SOURCES:
            raise ValueError(f"claim {self.id}: source must be one of {SOURCES}, got {self.source!r}")
        if self.expected not in EXPECTED:
            raise ValueError(f"claim {self.id}: expected must be one of {EXPECTED}, got {self.expected!r}")
        if not (isinstance(self.delta, (int, float)) and math.isfinite(self.delta) and self.delta >= 0):
            raise ValueError(f"claim {self.id}: delta must be a finite number >= 0, got {self.delta!r}")
        if self.kind == "equivalence" and self.delta <= 0:
            raise ValueError(f"claim {self.id}: an equivalence claim needs delta > 0")
        if not self.delta_source.strip():
            raise ValueError(f"claim {self.id}: say where delta comes from (delta_source)")


@dataclass(frozen=True)
class ChapterSpec:
    """A chapter's identity and parameter declarations (see the module docstring)."""

    stem: str
    short: str
    title: str
    description: str
    params: tuple[Param, ...]
    checks: tuple = field(default=())  # callables P -> None raising ValueError (cross-parameter rules)
    claims: tuple[ClaimSpec, ...] = field(default=())  # every claim, with its delta, before any run
    null: dict = field(default_factory=dict)  # parameter overrides under which no direction claim may hold
    null_description: str = ""  # the null configuration in words (real data every generation, ...)
    # measured seconds at `book` on one thread (README's speed table); only orders the book
    # build, longest first, so that no long chapter starts last while the other worker idles
    book_seconds: float = 0.0

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.stem}: duplicate parameter names")
        for required in ("scale", "seed", "n_seeds"):
            if required not in names:
                raise ValueError(f"{self.stem}: every chapter needs a {required!r} parameter")
        ids = [c.id for c in self.claims]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{self.stem}: duplicate claim ids")
        for name in self.null:
            if name not in names or name in ("scale", "seed"):
                raise ValueError(f"{self.stem}: null configuration names unknown parameter {name!r}")

    def claim(self, claim_id: str) -> ClaimSpec:
        """The declared claim ``claim_id`` (ValueError naming the allowed ids otherwise)."""
        for c in self.claims:
            if c.id == claim_id:
                return c
        raise ValueError(
            f"{self.stem}: no claim {claim_id!r} is declared; declared: " + ", ".join(c.id for c in self.claims)
        )

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise ValueError(f"unknown parameter {name!r} for chapter {self.stem}; allowed: {', '.join(self.names)}")

    def resolve(self, values: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
        """Fill ``None`` values from the scale's preset, validate all, and return a plain dict.

        ``values`` may be a notebook's ``globals()``: only declared names are read.
        Unknown keys in ``overrides`` are an error. Cross-parameter ``checks`` run last.
        """
        given: dict[str, Any] = {}
        if values is not None:
            given.update({k: values[k] for k in self.names if k in values})
        for k, v in overrides.items():
            self.param(k)  # raises on unknown names
            given[k] = v
        scale = current_scale(given.get("scale"))
        out: dict[str, Any] = {"scale": scale}
        for p in self.params:
            if p.name == "scale":
                continue
            v = given.get(p.name)
            out[p.name] = p.validate(p.default_for(scale) if v is None else v)
        for check in self.checks:
            check(out)
        return out

    def defaults(self, scale: str) -> dict[str, Any]:
        return {p.name: (scale if p.name == "scale" else p.default_for(scale)) for p in self.params}
