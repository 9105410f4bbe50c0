"""Reward optimisation shared by the chapters of Part II: group-relative advantages, the
one policy-gradient loss, the exploration rewards, KL-shaped rewards and the
KL-regularised optimum.

The GRPO-style training loops themselves live next to the policies they train (chapter
3's answer policies in :mod:`vanishing_tails.experiments.sharpening.policies`, chapter 4's
language models in :mod:`vanishing_tails.experiments.formats.echo`); the pieces every loop
needs are here.
"""

from __future__ import annotations

import numpy as np
import torch

from .checks import check_beta


def group_advantages(rewards: torch.Tensor, *, normalize: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """GRPO advantages (Shao et al. 2024, DeepSeekMath): A_i = (r_i - mean_g r) / (std_g r + eps).

    ``rewards`` has the group (samples of one prompt) on its last axis, shape ``[..., G]``.
    With ``normalize=False`` only the group mean is subtracted (Dr. GRPO-style). When
    every sample of a group gets the same reward the advantages are exactly zero, so a
    group that never finds a correct answer contributes no gradient.
    Explained in :ref:`sec-sharpening-policy`.
    """
    if rewards.shape[-1] < 2:
        raise ValueError(f"the group size must be >= 2 (last axis), got {rewards.shape[-1]}")
    # A group of equal rewards gets exactly zero (rounding in the mean could leave ~1e-16).
    equal = (rewards == rewards[..., :1]).all(dim=-1, keepdim=True)
    centred = torch.where(equal, torch.zeros_like(rewards), rewards - rewards.mean(dim=-1, keepdim=True))
    if not normalize:
        return centred
    std = rewards.std(dim=-1, keepdim=True, unbiased=False)
    return torch.where(equal | (std == 0), torch.zeros_like(centred), centred / (std + eps))


def kl_regularised_optimum(p_ref: np.ndarray, reward: np.ndarray, beta: float) -> np.ndarray:
    """argmax_p E_p[r] - beta KL(p || p_ref) = p_ref exp(r / beta) / Z (Korbak et al. 2022).

    Works along the last axis; ``beta`` in (0, inf]. As beta -> 0 the optimum puts all
    mass on the reward-maximising outcomes that p_ref supports; at beta = inf it is p_ref.
    Explained in :ref:`chapter-one-format-wins`.
    """
    beta = check_beta(beta, allow_inf=True)
    p_ref = np.asarray(p_ref, dtype=float)
    with np.errstate(divide="ignore"):
        logits = np.log(p_ref) + np.asarray(reward, dtype=float) / beta
    logits = logits - logits.max(axis=-1, keepdims=True)
    w = np.exp(logits)
    return w / w.sum(axis=-1, keepdims=True)


# --- Exploration rewards and the policy-gradient loss (chapter 3, "Sharpening spreads") ---------


def ucb_bonus(
    counts: torch.Tensor, answers: torch.Tensor, c: float, *, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Historical exploration bonus (Song, Kempe & Munos 2025, "Outcome-based Exploration for
    LLM Reasoning"): b_i = c * min(1, 1 / sqrt(N(x, a_i))).

    ``counts`` holds N(x, a), how often answer ``a`` was sampled for problem ``x`` *before*
    this batch, shape ``[..., K]``; ``answers`` the sampled answer indices, shape ``[..., G]``
    (same leading axes). An answer never seen (N = 0) gets the full bonus c, the UCB-style
    optimism of Auer et al. 2002. (A constant subtracted from the bonus would cancel in the
    group-relative advantage.) Explained in :ref:`sec-sharpening-bonuses`.
    """
    if not c >= 0:
        raise ValueError(f"the UCB bonus scale c must be >= 0, got {c!r}")
    n = counts.gather(-1, answers).to(dtype)
    return c * torch.clamp(torch.rsqrt(n), max=1.0)


def batch_repetition_penalty(answers: torch.Tensor, coef: float, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Batch exploration reward (Song, Kempe & Munos 2025): r_i = -(coef / n) * sum_{j != i} 1[a_i = a_j].

    ``answers`` has the group (the n samples of one problem) on its last axis, shape
    ``[..., n]``; the result has the same shape and is 0 for a sample whose answer no other
    sample of its group repeats. It pays for spread *within* one batch, not across training
    history. Explained in :ref:`sec-sharpening-bonuses`.
    """
    if not coef >= 0:
        raise ValueError(f"the batch penalty coefficient must be >= 0, got {coef!r}")
    n = answers.shape[-1]
    if n < 2:
        raise ValueError(f"the group size must be >= 2 (last axis), got {n}")
    same = (answers.unsqueeze(-1) == answers.unsqueeze(-2)).sum(-1) - 1
    return -(coef / n) * same.to(dtype)


def policy_gradient_loss(logp_taken: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """REINFORCE / GRPO surrogate -mean_i A_i log pi(a_i | x) over the last two axes (problems x group).

    Returns one loss per leading index (e.g. per seed), shape ``logp_taken.shape[:-2]``; its
    gradient is the on-policy GRPO gradient without clipping (a single update per batch, so
    the importance ratio is 1; Shao et al. 2024). Advantages are treated as constants.
    Explained in :ref:`sec-sharpening-policy`.
    """
    return -(advantages.detach() * logp_taken).mean(dim=(-2, -1))


def kl_shaped_advantages(
    logp: torch.Tensor, logp_ref: torch.Tensor, rewards: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group-centred advantages of the KL-shaped reward r − β (log π − log π_ref).

    ``logp``, ``logp_ref`` and ``rewards`` have the group on their last axis, shape
    ``[..., G]``. Folding the penalty into the reward makes the expected update the
    gradient of E[r] − β KL(π‖π_ref), whose optimum is :func:`kl_regularised_optimum`
    (Korbak et al. 2022). Returns (advantages, per-sample log π − log π_ref, whose mean
    estimates KL(π‖π_ref)). Use with :func:`policy_gradient_loss`.
    Explained in :ref:`chapter-one-format-wins`.
    """
    beta = check_beta(beta)
    log_ratio = logp.detach() - logp_ref
    return group_advantages(rewards - beta * log_ratio, normalize=False), log_ratio
