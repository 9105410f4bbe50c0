"""The entropy mechanism of Cui et al. 2025 ("The Entropy Mechanism of Reinforcement Learning
for Reasoning Language Models", arXiv 2505.22617), as functions the chapter and its tests use.

For a softmax policy π = softmax(z) at one state, a small change Δz of the logits changes
the entropy by, to first order (their Lemma 1),

.. math:: \\Delta H \\approx -\\operatorname{Cov}_{a\\sim\\pi}\\big(\\log\\pi(a),\\ \\Delta z(a)\\big).

Adding a constant to every logit changes neither side, so Δz may be the change of the logits
or of the log-probabilities. With a policy-gradient step on a tabular softmax, Δz is
proportional to the advantage: vanilla PG gives Δz = η π(a)(A(a) − E_π A) and
ΔH ≈ −η Cov(log π, π(A − E_π A)) (their Theorem 2, where E_π A = 0); natural PG gives
Δz = η A and ΔH ≈ −η Cov(log π, A) (Theorem 3). A probable action with a high advantage
lowers the entropy; a rare one with a high advantage raises it.

The same paper fits validation reward against entropy over training with
R = −a·e^H + b (:func:`fit_entropy_law`): reward is bought with entropy, and the ceiling at
H = 0 is b − a.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def entropy_change_first_order(logp: torch.Tensor, dz: torch.Tensor) -> torch.Tensor:
    """−Cov_{a∼π}(log π(a), Δz(a)) along the last axis: the first-order entropy change.

    ``logp`` ``[..., A]`` are the log-probabilities before the step, ``dz`` the change of
    the logits (or of the log-probabilities); returns ``[...]`` in nats.
    Explained in :ref:`sec-search-mechanism`.
    """
    p = logp.exp()
    lc = logp - (p * logp).sum(-1, keepdim=True)
    dc = dz - (p * dz).sum(-1, keepdim=True)
    return -(p * lc * dc).sum(-1)


def entropy_change_second_order(logp: torch.Tensor, dz: torch.Tensor) -> torch.Tensor:
    """The first- plus second-order entropy change of a softmax along a logit change ``dz``.

    With ℓ̃ = log π − E_π log π and d = Δz − E_π Δz, the Hessian of H in the logits gives

    .. math:: \\Delta H \\approx -\\operatorname{Cov}_\\pi(\\log\\pi, \\Delta z)
              - \\tfrac12\\big(E_\\pi[\\tilde\\ell\\, d^2] + \\operatorname{Var}_\\pi(\\Delta z)\\big).

    The variance term is never positive: a finite step lowers the entropy a little more than
    the first-order covariance says. Shapes as :func:`entropy_change_first_order`.
    Explained in :ref:`sec-search-mechanism`.
    """
    p = logp.exp()
    lc = logp - (p * logp).sum(-1, keepdim=True)
    dc = dz - (p * dz).sum(-1, keepdim=True)
    second = (p * lc * dc * dc).sum(-1) + (p * dc * dc).sum(-1)
    return entropy_change_first_order(logp, dz) - 0.5 * second


def pg_logit_change(logp: torch.Tensor, advantage: torch.Tensor, lr: float, *, natural: bool) -> torch.Tensor:
    """The logit change of one exact policy-gradient step on a tabular softmax.

    Vanilla PG ascends J = Σ_a π(a) A(a): Δz = lr·π(a)(A(a) − E_π A); natural PG moves
    the logits along the advantage itself, Δz = lr·A(a). Shapes ``[..., A]``.
    Explained in :ref:`sec-search-mechanism`.
    """
    if natural:
        return lr * advantage
    p = logp.exp()
    return lr * p * (advantage - (p * advantage).sum(-1, keepdim=True))


def batch_covariance(logp_taken: torch.Tensor, advantage: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cui et al.'s practical covariance: the mean centred product of the log-probability of
    each sampled action and its advantage over the acted positions of a batch.

    ``logp_taken``, ``advantage`` and ``mask`` are ``[M, ...]`` (one batch per replica, the
    advantage of an episode broadcast to its actions); returns ``[M]``. Positive values
    mean the step mostly raises actions that were already probable: the entropy falls.
    Explained in :ref:`sec-search-mechanism`.
    """
    m = mask.to(logp_taken.dtype).flatten(1)
    n = m.sum(1).clamp(min=1)
    lp, adv = logp_taken.flatten(1), advantage.to(logp_taken.dtype).flatten(1)
    lc = lp - (lp * m).sum(1, keepdim=True) / n[:, None]
    ac = adv - (adv * m).sum(1, keepdim=True) / n[:, None]
    return (lc * ac * m).sum(1) / n


@dataclass(frozen=True)
class EntropyLaw:
    """The least-squares fit R = −a·e^H + b over the points of one run, its R², and the
    predicted ceiling b − a at H = 0. Explained in :ref:`sec-search-law`.
    """

    a: float
    b: float
    r2: float

    @property
    def ceiling(self) -> float:
        return self.b - self.a

    def predict(self, H: np.ndarray) -> np.ndarray:
        return -self.a * np.exp(np.asarray(H, dtype=float)) + self.b


def fit_entropy_law(H: np.ndarray, R: np.ndarray) -> EntropyLaw:
    """Fit R = −a·e^H + b by least squares (linear in e^H); NaN where it cannot be fitted.

    R² is 1 − SS_res/SS_tot (NaN when R does not vary). Explained in :ref:`sec-search-law`.
    """
    H, R = np.asarray(H, dtype=float), np.asarray(R, dtype=float)
    ok = np.isfinite(H) & np.isfinite(R)
    H, R = H[ok], R[ok]
    if H.size < 3 or np.ptp(H) == 0:
        return EntropyLaw(np.nan, np.nan, np.nan)
    X = np.column_stack([-np.exp(H), np.ones_like(H)])
    (a, b), *_ = np.linalg.lstsq(X, R, rcond=None)
    ss_tot = float(((R - R.mean()) ** 2).sum())
    r2 = 1.0 - float(((R - X @ np.array([a, b])) ** 2).sum()) / ss_tot if ss_tot > 0 else np.nan
    return EntropyLaw(float(a), float(b), r2)
