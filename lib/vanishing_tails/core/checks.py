"""Input checks shared by the engines: one rule per concept, one wording per error.

Every check raises ``ValueError`` naming the parameter and what is allowed, so that the
runner can refuse bad input before a kernel starts (exit code 2).
Explained in :ref:`sec-running-the-book`.
"""

from __future__ import annotations

import math


def check_beta(beta: float, name: str = "beta") -> float:
    """A KL strength β: a number in (0, ∞]. ``β = ∞`` is allowed (the reference itself).

    ``beta`` is the strength of the KL penalty to the reference in every chapter (the
    optimum is ``p_ref·exp(r/β)``, :func:`vanishing_tails.core.rl.kl_regularised_optimum`);
    β → ∞ keeps the reference and is each RL chapter's null control.
    Explained in :ref:`chapter-one-format-wins`.
    """
    try:
        value = float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"parameter {name!r} must be a number in (0, inf]; got {beta!r}") from None
    if math.isnan(value) or not value > 0:
        raise ValueError(f"parameter {name!r} must be a number in (0, inf]; got {beta!r}")
    return value
