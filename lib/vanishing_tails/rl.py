"""Reward optimisation shared by the chapters of Part II: group-relative advantages and
the KL-regularised optimum.

The GRPO-style training loops themselves live next to the policies they train
(chapter 3's answer policies in this module, chapter 4's language models in
``formats``); the two pieces every loop needs are here.
"""

from __future__ import annotations

import numpy as np
import torch


def group_advantages(rewards: torch.Tensor, *, normalize: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """GRPO advantages (Shao et al. 2024, DeepSeekMath): A_i = (r_i - mean_g r) / (std_g r + eps).

    ``rewards`` has the group (samples of one prompt) on its last axis, shape ``[..., G]``.
    With ``normalize=False`` only the group mean is subtracted (Dr. GRPO-style). When
    every sample of a group gets the same reward the advantages are exactly zero, so a
    group that never finds a correct answer contributes no gradient (chapter 3).
    """
    if rewards.shape[-1] < 2:
        raise ValueError(f"the group size must be >= 2 (last axis), got {rewards.shape[-1]}")
    centred = rewards - rewards.mean(dim=-1, keepdim=True)
    if not normalize:
        return centred
    std = rewards.std(dim=-1, keepdim=True, unbiased=False)
    return torch.where(std > 0, centred / (std + eps), torch.zeros_like(centred))


def kl_regularised_optimum(p_ref: np.ndarray, reward: np.ndarray, beta: float) -> np.ndarray:
    """argmax_p E_p[r] - beta KL(p || p_ref) = p_ref exp(r / beta) / Z (Korbak et al. 2022).

    Works along the last axis; ``beta > 0``. As beta -> 0 the optimum puts all mass on
    the reward-maximising outcomes that p_ref supports; as beta -> inf it returns p_ref.
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta!r}")
    p_ref = np.asarray(p_ref, dtype=float)
    with np.errstate(divide="ignore"):
        logits = np.log(p_ref) + np.asarray(reward, dtype=float) / beta
    logits = logits - logits.max(axis=-1, keepdims=True)
    w = np.exp(logits)
    return w / w.sum(axis=-1, keepdims=True)
