"""Claims: each an effect with a 95% interval over independent replicates, judged against a
smallest effect of interest δ declared in the chapter's spec *before* the chapter runs.

The spec declares each claim as a :class:`ClaimSpec` — its statement, where it comes
from (``source``), how it is judged (``kind``), its δ and where δ comes from, the unit
of replication, and the verdict expected at the ``book`` scale. The chapter computes one
value per replicate and calls :func:`evaluate`, which returns a :class:`Claim` with the
interval and the verdict:

=============  ==============================================  ===========================  =================
kind           holds when                                      fails when                   otherwise
=============  ==============================================  ===========================  =================
direction      the whole interval lies above δ (effect > δ)    the whole interval is below  inconclusive
equivalence    the interval lies inside (−δ, δ) (two one-      the interval lies wholly     inconclusive
               sided tests at 2.5% each)                        outside (−δ, δ)
oracle         abs(estimate − theory) ≤ δ + 4·se (abs(z) < 4   otherwise                    —
               for an exact oracle, δ = 0)
=============  ==============================================  ===========================  =================

Sources: ``notes`` (a claim of the source notes, tested as stated), ``paper`` (a cited
paper's result), ``theory`` (an oracle), ``finding`` (what this toy showed instead of a
claim of the notes that failed; the failed claim stays in the table as ``fails``).

Tests at ``smoke`` require that no verdict *contradicts* its expectation (``holds``
where ``fails`` is expected, or the reverse); ``reproduce --scale book`` requires every
verdict to equal it. A spec may expect ``inconclusive`` for a claim whose effect its own
power analysis puts at δ at the ``book`` budget: the claim is then reported, not resolved.
Under the spec's null configuration no ``direction`` claim may hold.
Explained in :ref:`sec-claims`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

from vanishing_tails.core import stats

from .params import CLAIM_KINDS, EXPECTED, SOURCES, ClaimSpec  # noqa: F401 - re-exported

VERDICTS = ("holds", "fails", "inconclusive")
ORACLE_Z = 4.0


@dataclass(frozen=True)
class Claim:
    """One row of a chapter's claims table: the spec's claim with its measured interval."""

    id: str
    statement: str
    source: str
    kind: str
    effect_name: str
    effect: float
    low: float
    high: float
    se: float
    n: int
    unit: str
    method: str
    delta: float
    delta_source: str
    expected: str
    theory: float | None = None

    @property
    def verdict(self) -> str:
        return verdict(self.kind, self.effect, self.low, self.high, self.se, self.delta, self.theory)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["verdict"] = self.verdict
        return d


def verdict(
    kind: str, effect: float, low: float, high: float, se: float, delta: float, theory: float | None = None
) -> str:
    """The verdict of a claim from its interval (see the module docstring's table)."""
    if kind == "oracle":
        if theory is None or any(math.isnan(v) for v in (effect, se)):
            return "inconclusive"
        return "holds" if abs(effect - theory) <= delta + ORACLE_Z * se else "fails"
    if math.isnan(low) or math.isnan(high):
        return "inconclusive"
    if kind == "direction":
        if low > delta:
            return "holds"
        return "fails" if high < delta else "inconclusive"
    if kind == "equivalence":
        if -delta < low and high < delta:
            return "holds"
        return "fails" if (low >= delta or high <= -delta) else "inconclusive"
    raise ValueError(f"unknown claim kind {kind!r}")


def evaluate(
    spec,
    claim_id: str,
    replicates=None,
    *,
    interval: stats.Interval | None = None,
    theory: float | None = None,
    statistic: Callable[..., float] | None = None,
    seed: int | None = None,
    **fields,
) -> Claim:
    """Measure the spec's claim ``claim_id`` on this run.

    Give either ``replicates`` (one value per independent replicate: its mean and
    t interval are the effect), ``replicates`` with ``statistic`` and ``seed`` (a
    percentile bootstrap over replicates; ``replicates`` may be a tuple of paired
    arrays), or a ready ``interval`` (:mod:`vanishing_tails.core.stats`). Oracle claims
    also need ``theory``. ``fields`` fill the statement's ``{name}`` fields.
    Explained in :ref:`sec-claims`.
    """
    cs = spec.claim(claim_id)
    if interval is None:
        if replicates is None:
            raise ValueError(f"claim {claim_id}: give replicates or an interval")
        if statistic is not None:
            if seed is None:
                raise ValueError(f"claim {claim_id}: a bootstrap interval needs a seed")
            interval = stats.bootstrap_interval(replicates, statistic, seed=seed)
        else:
            interval = stats.mean_interval(replicates)
    if cs.kind == "oracle" and theory is None:
        raise ValueError(f"claim {claim_id}: an oracle claim needs its theory value")
    return Claim(
        id=cs.id,
        statement=cs.statement.format(**fields) if fields else cs.statement,
        source=cs.source,
        kind=cs.kind,
        effect_name=cs.effect,
        effect=interval.estimate,
        low=interval.low,
        high=interval.high,
        se=interval.se,
        n=interval.n,
        unit=cs.unit,
        method=interval.method,
        delta=float(cs.delta),
        delta_source=cs.delta_source,
        expected=cs.expected,
        theory=None if theory is None else float(theory),
    )


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    s = f"{x:.3g}"
    return "0" if s in ("-0", "-0.0") else s


def test_text(c: Claim | dict) -> str:
    """How the claim is judged, in words: ``> 0.5``, ``|·| < 0.1``, ``= 0.25 ± 4 se``."""
    d = c if isinstance(c, dict) else c.as_dict()
    if d["kind"] == "direction":
        return f"> {_fmt(d['delta'])}"
    if d["kind"] == "equivalence":
        return f"within ±{_fmt(d['delta'])}"
    tol = f" ± ({_fmt(d['delta'])} + 4 se)" if d["delta"] else " ± 4 se"
    return f"= {_fmt(d['theory'])}{tol}"


def claims_frame(claims: list[Claim]):
    """The claims table: statement, source, effect, 95% interval, test (δ), verdict."""
    import pandas as pd

    rows = []
    for c in claims:
        d = c.as_dict()
        rows.append(
            {
                "claim": d["id"],
                "statement": d["statement"],
                "source": d["source"],
                "effect [95% CI]": f"{_fmt(d['effect'])} [{_fmt(d['low'])}, {_fmt(d['high'])}]",
                "test": test_text(d),
                "replicates": f"{d['n']} {d['unit']}",
                "verdict": d["verdict"],
                "expected": d["expected"],
            }
        )
    return pd.DataFrame(rows)


def check_unique(claims: list[Claim]) -> None:
    ids = [c.id for c in claims]
    if len(ids) != len(set(ids)):
        raise ValueError(f"claim ids must be unique, got {ids}")


def contradictions(claims: list[dict]) -> list[dict]:
    """Claims whose verdict contradicts the expectation (holds where fails is expected, or
    the reverse); an ``inconclusive`` verdict or expectation contradicts nothing. What the
    smoke tests forbid."""
    decided = ("holds", "fails")
    return [c for c in claims if c["verdict"] in decided and c["expected"] in decided and c["verdict"] != c["expected"]]


def unexpected(claims: list[dict]) -> list[dict]:
    """Claims whose verdict differs from the expectation at all: what ``reproduce`` refuses."""
    return [c for c in claims if c["verdict"] != c["expected"]]
