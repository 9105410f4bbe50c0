"""Chapter 4's vocabulary and input checks, kept free of torch so that the chapter's spec
(and ``python -m vanishing_tails list``) can use them without importing the engine.

Explained in :ref:`sec-formats-three-ways`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

FORMATS: tuple[str, ...] = ("bare", "steps", "code")
OTHER = "other"  # what the classifier calls a completion that commits to no format
MALFORMED = -(10**6)  # extract_answers' value for a completion that is not a well-formed solution
ADD_VERBS = ("finds", "gets", "buys")
SUB_VERBS = ("loses", "eats", "sells")
VERBS = ADD_VERBS + SUB_VERBS
WORDS = ("has", "?", "answer", "plus", "minus", "is", "x", "=", "+", "-")


# ---------------------------------------------------------------------- validation
def check_formats(formats: Sequence[str], *, name: str = "formats") -> list[str]:
    """Return ``formats`` as a list, refusing names not in :data:`FORMATS` (ValueError
    naming the parameter ``name``) and repeated names.

    Explained in :ref:`sec-formats-three-ways`.
    """
    if isinstance(formats, str):
        formats = [formats]
    formats = list(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"{name}: unknown format name(s) {bad}; allowed: {list(FORMATS)}")
    if len(set(formats)) != len(formats):
        raise ValueError(f"{name}: each format may appear once; got {formats}")
    return formats


def check_proportions(
    proportions: Mapping[str, float] | Sequence[float],
    *,
    formats: Sequence[str],
    name: str = "proportions",
    atol: float = 1e-6,
) -> np.ndarray:
    """Validate a format mixture; return it as weights in :data:`FORMATS` order.

    ``proportions`` is a mapping ``{format: weight}`` (then ``formats`` is ignored) or a
    sequence aligned with ``formats``. Formats left out get weight 0. The weights must be
    finite, >= 0 and sum to 1 (within ``atol``); every error is a ValueError that names
    the parameter ``name``.
    Explained in :ref:`sec-formats-three-ways`.
    """
    if isinstance(proportions, Mapping):
        formats = check_formats(list(proportions), name=name)
        values = [proportions[f] for f in formats]
    else:
        formats = check_formats(formats, name="formats")
        values = list(proportions)
        if len(values) != len(formats):
            raise ValueError(f"{name} must give one weight per format {formats}; got {values}")
    try:
        w = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers; got {values!r}") from None
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{name} must be non-negative numbers; got {w.tolist()}")
    if abs(w.sum() - 1.0) > atol:
        raise ValueError(f"{name} must sum to 1; got {w.tolist()} (sum {w.sum():.6g})")
    out = np.zeros(len(FORMATS))
    for f, x in zip(formats, w):
        out[FORMATS.index(f)] = x
    return out
