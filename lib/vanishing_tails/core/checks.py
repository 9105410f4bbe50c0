"""Input checks shared by the engines: one rule per concept, one wording per error.

Every check raises ``ValueError`` naming the parameter and what is allowed, so that the
runner can refuse bad input before a kernel starts (exit code 2).
Explained in :ref:`sec-running-the-book`.
"""

from __future__ import annotations

import math


def check_beta(beta: float, name: str = "beta", *, allow_inf: bool = False) -> float:
    """A KL strength β: a number > 0, finite unless ``allow_inf`` (then β = ∞ is the reference).

    ``beta`` is the strength of the KL penalty to the reference in every chapter and
    nothing else (the optimum is ``p_ref·exp(r/β)``,
    :func:`vanishing_tails.core.rl.kl_regularised_optimum`). A closed form can take
    β = ∞ (it returns the reference: the RL chapters' null control); a training loss
    cannot, so losses call this with ``allow_inf=False``.
    Explained in :ref:`chapter-one-format-wins`.
    """
    allowed = "a number in (0, inf]" if allow_inf else "a finite number > 0"
    if isinstance(beta, bool):
        raise ValueError(f"parameter {name!r} (the KL strength) must be {allowed}; got {beta!r}")
    try:
        value = float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"parameter {name!r} (the KL strength) must be {allowed}; got {beta!r}") from None
    if math.isnan(value) or not value > 0 or (math.isinf(value) and not allow_inf):
        raise ValueError(f"parameter {name!r} (the KL strength) must be {allowed}; got {beta!r}")
    return value
