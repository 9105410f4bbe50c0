"""The book's common tail measures: the few numbers every experiment reports per step of
training or generation, so that the closing chapter can set all experiments side by side.

For a model distribution ``p`` over a finite outcome space, a reference (the real
distribution) ``r`` and the model's starting distribution ``s``:

==================  =======================================================================
column              definition
==================  =======================================================================
``support``         expected distinct outcomes in ``n`` draws, Σ_i 1 − (1 − p_i)^n, relative
                    to the same for the reference (1 = as diverse as the real data)
``q_tail_mass``     Σ_{i ∈ T_q(r)} p_i / Σ_{i ∈ T_q(r)} r_i: the mass kept on the reference's
                    least-probable q, relative to its real value (1 = kept)
``error_mass``      Σ_{i : r_i = 0} p_i: mass on outcomes the real distribution does not have
``mode_share``      max_i p_i
``kl_from_start``   KL(p ‖ s) in nats: how far optimisation or resampling has moved the model
                    (:func:`kl_from_start`; optionally of both laws mixed with a share of the
                    uniform one, where a finite sample leaves outcomes empty)
``quality``         the experiment's own quality measure (accuracy, pass@1, reward), or NaN
==================  =======================================================================

Experiments whose outcome space is continuous (a Gaussian, a VAE) compute the same
columns from their own estimators and say so. :data:`COLUMNS` is the interface;
:func:`categorical_measures` computes it for a batch of categorical distributions.
Explained in :ref:`sec-three-tails`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import metrics

COLUMNS = ("support", "q_tail_mass", "error_mass", "mode_share", "kl_from_start", "quality")
MECHANISMS = ("resampling", "tilt", "error")


def kl_from_start(p: np.ndarray, start: np.ndarray, *, smoothing: float = 0.0) -> np.ndarray:
    """KL(p̃ ‖ s̃) in nats per row of ``p`` ``[..., K]``, with p̃ = (1 − ε) p + ε / K and s̃
    likewise (ε = ``smoothing``; 0: the plain KL(p ‖ s)). ``start`` is one law ``[K]`` or one
    per row (``p``'s shape). Mixing both with the same share of the uniform law is an additive
    (Laplace-type) estimate for empirical laws: a finite sample leaves outcomes empty where the
    other has some, and the plain KL would be infinite. Zero exactly where ``p`` equals its
    start; finite for ε > 0, and by the joint convexity of KL never above KL(p ‖ s).
    Explained in :ref:`sec-three-tails`.
    """
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1); got {smoothing}")
    p, start = np.asarray(p, dtype=float), np.asarray(start, dtype=float)
    if start.shape not in (p.shape[-1:], p.shape):
        raise ValueError(f"start must be one law [K] or one per row of p {p.shape}; got {start.shape}")
    k = p.shape[-1]
    if smoothing:
        p, start = (1 - smoothing) * p + smoothing / k, (1 - smoothing) * start + smoothing / k
    return metrics.kl_divergence(p, start)


def categorical_measures(p: np.ndarray, reference: np.ndarray, start: np.ndarray, *, q: float = 0.1,
                         n: int = 100, quality: np.ndarray | float | None = None,
                         smoothing: float = 0.0) -> pd.DataFrame:  # fmt: skip
    """The common tail measures (:data:`COLUMNS`) of each row of ``p``, shape ``[..., K]``.

    ``reference`` is a single distribution over the same ``K`` outcomes (it may have zeros:
    those outcomes are the error region; the q-tail is taken over the reference's support);
    ``start`` is one law ``[K]`` or one per row of ``p`` (each replicate's own start), and
    ``kl_from_start`` is :func:`kl_from_start` with ``smoothing``. Returns one row per leading
    index of ``p``. Explained in :ref:`sec-three-tails`.
    """
    p = np.asarray(p, dtype=float)
    ref = np.asarray(reference, dtype=float)
    start = np.asarray(start, dtype=float)
    if p.shape[-1] != ref.shape[-1] or start.shape not in (ref.shape, p.shape) or ref.ndim != 1:
        raise ValueError(
            f"p [..., K], reference [K] and start ([K] or p's shape) must agree; got {p.shape}, {ref.shape}, "
            f"{start.shape}"
        )
    flat = p.reshape(-1, p.shape[-1])
    inside = ref > 0
    tail = np.zeros_like(inside)
    tail[inside] = metrics.tail_set(ref[inside] / ref[inside].sum(), q)
    tail_real = ref[tail].sum()
    out = pd.DataFrame({
        "support": metrics.expected_distinct(flat, n) / metrics.expected_distinct(ref, n),
        "q_tail_mass": flat[:, tail].sum(-1) / tail_real if tail_real > 0 else np.nan,
        "error_mass": flat[:, ~inside].sum(-1),
        "mode_share": flat.max(-1),
        "kl_from_start": kl_from_start(flat, start.reshape(-1, start.shape[-1]) if start.ndim > 1 else start,
                                       smoothing=smoothing),
        "quality": np.broadcast_to(np.nan if quality is None else np.asarray(quality, dtype=float).ravel(),
                                   (flat.shape[0],)),
    })  # fmt: skip
    return out
