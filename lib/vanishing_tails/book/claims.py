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
import re
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


_NEGATIVE_ZERO = re.compile(r"^-(?=[0.,]*(?:[eE][+-]?0+)?%?$)")


def format_number(value, spec: str = "") -> str:
    """``format(value, spec)`` with a rounded zero printed without its sign: ``-0.001`` at
    ``.2f`` reads ``0.00``, never ``-0.00``. What the book's glued numbers use (the Sphinx
    extension routes MyST-NB's ``glue:text`` formatting through it). Explained in :ref:`sec-claims`.
    """
    text = format(value, spec)
    return _NEGATIVE_ZERO.sub("", text) if text.startswith("-") else text


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return format_number(x, ".3g")


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


# ----------------------------------------------------------------------------- the claim map
@dataclass(frozen=True)
class SourceNote:
    """One note of the source (``/work/shared/seeds``): its question and the chapters that test it."""

    title: str
    chapters: tuple[str, ...]


# The source's eight notes, in its order, and the chapters (stems) that test each one. This is
# the only hand-made part of the claim map: the verdicts are computed from the runs' claims.
NOTES: tuple[SourceNote, ...] = (
    SourceNote("Does training on AI-generated content permanently degrade model quality?",
               ("01_tails_vanish_first", "02_model_families")),
    SourceNote("Does outcome-based RL diversity loss spread across unsolved problems?", ("03_sharpening_spreads",)),
    SourceNote("Does RL training collapse format diversity in pretrained models?", ("04_one_format_wins",)),
    SourceNote("Does reinforcement learning squeeze exploration diversity in search agents?", ("06_search_breadth",)),
    SourceNote("How do quality, diversity, and complexity affect synthetic data differently?",
               ("07_quality_hides_diversity",)),
    SourceNote("Can diversity optimization improve quality during language model training?",
               ("08_paying_for_the_tails",)),
    SourceNote("Can we generate synthetic data without any seed examples?", ("09_coverage_by_construction",)),
    SourceNote("Does preference tuning always reduce diversity the same way?", ("05_what_the_reward_pays_for",)),
    # The source's own question, which the closing chapter puts to all the experiments at once.
    SourceNote("How does diversity loss in synthetic data mirror tail distribution disappearance?",
               ("10_one_phenomenon",)),
)  # fmt: skip
NOTE_VERDICTS = ("supported", "qualified", "contradicted", "not yet tested")


def note_verdict(claims: list[dict] | None) -> tuple[str, dict[str, int]]:
    """A note's verdict in one chapter, from the measured verdicts of the chapter's claims
    whose source is ``notes`` (the notes' own claims, tested as stated):

    * ``not yet tested`` — no run, or no notes claim was decided (all inconclusive);
    * ``supported`` — every notes claim holds;
    * ``contradicted`` — none holds and at least one fails;
    * ``qualified`` — anything in between (some hold, some fail or are undecided).

    Returns the verdict and the counts (``holds``, ``fails``, ``inconclusive``, and
    ``findings``, the claims that say what was found instead). Explained in :ref:`sec-claim-map`.
    """
    claims = claims or []
    notes = [c["verdict"] for c in claims if c.get("source") == "notes"]
    counts = {v: notes.count(v) for v in VERDICTS}
    counts["findings"] = sum(c.get("source") == "finding" for c in claims)
    if counts["holds"] + counts["fails"] == 0:
        return "not yet tested", counts
    if counts["fails"] == 0 and counts["inconclusive"] == 0:
        return "supported", counts
    if counts["holds"] == 0:
        return "contradicted", counts
    return "qualified", counts


def claim_map(results: dict[str, dict], notes: tuple[SourceNote, ...] = NOTES, stems=None) -> list[dict]:
    """Each note of the source → each chapter that tests it → the verdict (:func:`note_verdict`),
    from ``results`` (chapter stem → its ``results.json``; a missing or failed chapter is
    *not yet tested*). One row per (note, chapter), in the source's order: deterministic.
    With ``stems`` (the book's chapters), chapters the book does not have are left out.
    Explained in :ref:`sec-claim-map`.
    """
    rows = []
    for i, note in enumerate(notes, start=1):
        for stem in note.chapters:
            if stems is not None and stem not in stems:
                continue
            r = results.get(stem)
            claims = None if r is None or "error" in r else r.get("claims")
            v, counts = note_verdict(claims)
            rows.append({"note": i, "title": note.title, "chapter": stem, "verdict": v, "ran": claims is not None,
                         **counts})  # fmt: skip
    return rows


def load_results(runs, stems) -> dict[str, dict]:
    """``results.json`` of each chapter ``stem`` under the folder ``runs`` (missing ones left out)."""
    import json
    from pathlib import Path

    out = {}
    for stem in stems:
        path = Path(runs) / stem / "results.json"
        if path.is_file():
            out[stem] = json.loads(path.read_text())
    return out


def claim_map_markdown(rows: list[dict], titles: dict[str, str], claims_doc: str = "appendix/claims") -> str:
    """The claim map as a MyST table: note → chapter (a link) → verdict, linked to the
    chapter's section of the Claims page (label ``claims-<stem>``) with its counts."""
    lines = [
        "| note of the source | chapter | verdict | the notes' claims |",
        "|---|---|---|---|",
    ]
    last = None
    for r in rows:
        note = f"{r['note']}. {r['title']}" if r["note"] != last else ""
        last = r["note"]
        number = int(r["chapter"].split("_", 1)[0])
        chapter = f"{{doc}}`{number}. {titles.get(r['chapter'], r['chapter'])} <chapters/{r['chapter']}>`"
        verdict = f"{{ref}}`{r['verdict']} <claims-{r['chapter']}>`" if r["verdict"] != "not yet tested" else (
            f"{{doc}}`not yet tested <{claims_doc}>`")  # fmt: skip
        counts = (f"{r['holds']} hold, {r['fails']} fail, {r['inconclusive']} inconclusive; {r['findings']} findings"
                  if r.get("ran", True) else "no run at this build's scale")  # fmt: skip
        lines.append(f"| {note} | {chapter} | **{verdict}** | {counts} |")
    return "\n".join(lines) + "\n"


RUNS_ENV = "VANISHING_TAILS_RUNS"  # set by the book build for the intro: where this build's runs are


def book_claim_map(scale: str | None = None) -> tuple[list[dict], str]:
    """The intro's claim map for the book being built: rows (:func:`claim_map`) and the
    MyST table. The runs are read from ``$VANISHING_TAILS_RUNS`` (set by the build), else
    from ``_build/runs/<scale>``. Explained in :ref:`sec-claim-map`.
    """
    import os

    from .build import runs_dir
    from .params import current_scale
    from .registry import all_specs

    specs = all_specs()
    runs = os.environ.get(RUNS_ENV) or runs_dir(current_scale(scale))
    stems = [s.stem for s in specs]
    rows = claim_map(load_results(runs, stems), stems=stems)
    return rows, claim_map_markdown(rows, {s.stem: s.title for s in specs})
