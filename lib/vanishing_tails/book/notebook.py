"""What a chapter notebook calls to publish its numbers, figures and claims.

Everything goes through ``myst_nb.glue`` so that (a) the prose quotes computed
values with the ``glue:text`` role instead of typed ones, (b) figures are named and
captioned with the ``glue:figure`` directive, and (c) the runner can read every value, figure
and claim back from the executed notebook (see ``runner.read_glued``).

Names are prefixed by the runner-visible kind:

* scalars: any name (``glue_value``), stored as plain Python floats/ints/strings;
* figures: ``fig-...`` (``glue_figure``), written by the runner as PNG and SVG;
* ``parameters`` (the resolved parameters) and ``claims`` (the claims table rows).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .claims import Claim, check_unique, claims_frame
from .execute import CLAIMS_KEY, PARAMETERS_KEY

CLAIMS_TABLE_KEY = "claims-table"


def _plain(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and value == 0.0:
        return 0.0  # -0.0 would print as "-0.00"; a value that *rounds* to zero is handled by the book's
        # Sphinx extension at render time (claims.format_number), where the format is known
    return value


def glue_value(name: str, value: Any) -> Any:
    """Glue a scalar for the prose and results.json; return it as a plain Python value.

    Quote it in the prose with the ``glue:text`` role and a format, e.g. ``name:.2f``; a
    value that rounds to zero reads ``0.00``, never ``-0.00`` (the book's Sphinx extension
    formats through :func:`vanishing_tails.book.claims.format_number`).
    """
    from myst_nb import glue

    value = _plain(value)
    glue(name, value, display=False)
    return value


def glue_figure(name: str, fig) -> None:
    """Glue a matplotlib figure under ``name`` (must start with ``fig-``) and close it."""
    import matplotlib.pyplot as plt
    from myst_nb import glue

    if not name.startswith("fig-"):
        raise ValueError(f"figure names must start with 'fig-', got {name!r}")
    glue(name, fig, display=False)
    plt.close(fig)


def glue_parameters(P: dict[str, Any]) -> None:
    """Glue the resolved parameters (as JSON) so results.json records what actually ran."""
    from myst_nb import glue

    glue(PARAMETERS_KEY, json.dumps({k: _plain(v) for k, v in P.items()}), display=False)


def glue_claims(claims: list[Claim], spec=None):
    """Glue the claims (JSON, read by the runner) and the rendered table; return the table.

    With ``spec``, every claim the spec declares must be measured (none skipped, none
    invented). Each claim's effect, interval and verdict are also glued for the prose:
    ``claim-<id>`` (the effect), ``claim-<id>-low``, ``claim-<id>-high``,
    ``claim-<id>-verdict``. Explained in :ref:`sec-claims`.
    """
    from myst_nb import glue

    check_unique(claims)
    if spec is not None:
        declared = {c.id for c in spec.claims}
        measured = {c.id for c in claims}
        if declared != measured:
            raise ValueError(
                f"{spec.stem}: claims declared but not measured: {sorted(declared - measured)}; "
                f"measured but not declared: {sorted(measured - declared)}"
            )
    glue(CLAIMS_KEY, json.dumps([c.as_dict() for c in claims]), display=False)
    for c in claims:
        glue(f"claim-{c.id}", c.effect, display=False)
        glue(f"claim-{c.id}-low", c.low, display=False)
        glue(f"claim-{c.id}-high", c.high, display=False)
        glue(f"claim-{c.id}-verdict", c.verdict, display=False)
    table = claims_frame(claims)
    glue(CLAIMS_TABLE_KEY, table.style.hide(axis="index"), display=False)
    return table


def setup(spec, namespace: dict[str, Any]) -> dict[str, Any]:
    """A chapter's one setup line: ``P = setup(SPEC, globals())``.

    Resolves the parameters cell against the spec (an explicit value wins over the
    scale's preset; the spec is the only place a default lives), glues the resolved
    parameters for ``results.json``, and sets the book's figure theme.
    Explained in :ref:`sec-chapter-contract`.
    """
    from . import plots

    P = spec.resolve(namespace)
    glue_parameters(P)
    plots.set_theme()
    return P
