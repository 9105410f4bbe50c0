"""Chapter 7's model: a ridge-penalised logistic regression on local features, batched.

The features of ``x = (u, v)`` are a global linear part and one Gaussian bump per segment,
each with its own offset and slope in ``v``:

    φ(x) = [1, u, v, ψ_1(u), …, ψ_K(u), ψ_1(u)·v, …, ψ_K(u)·v],
    ψ_j(u) = exp(−(u − μ_j)² / (2 w²)),

with ``μ_j`` the centre of segment ``j`` and ``w`` the segment width. The model's boundary
in segment ``j`` is learned from the examples near ``μ_j``; where there are none, only the
global part and the neighbouring bumps speak. The weights ``θ`` of every model in a batch
(cells of the knob grid × seeds, or loop replicates) are fitted at once, minimising

    Σ_i log(1 + exp(−(2y_i − 1) θ·φ(x_i))) + (ridge / 2) ‖θ‖²

by Newton's method (batched ``[B, F, F]`` solves). The penalty is what makes a model
*confident* only where it has seen data: a bump's weights grow with the number of
examples under it.
Explained in :ref:`sec-quality-model`.
"""

from __future__ import annotations

import torch

from .task import DTYPE


def features(u: torch.Tensor, v: torch.Tensor, *, n_segments: int) -> torch.Tensor:
    """The feature tensor ``[B, n, 3 + 2K]`` of inputs ``u, v`` ``[B, n]`` (module docstring).

    Explained in :ref:`sec-quality-model`.
    """
    width = 2.0 / n_segments
    centres = -1 + width * (torch.arange(n_segments, dtype=DTYPE) + 0.5)
    bumps = torch.exp(-0.5 * ((u[..., None] - centres) / width) ** 2)
    return torch.cat([torch.ones_like(u)[..., None], u[..., None], v[..., None], bumps, bumps * v[..., None]], -1)


def _logits(X: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    return (X @ theta[..., None])[..., 0]


def fit(X: torch.Tensor, y: torch.Tensor, *, ridge: float, newton_steps: int) -> torch.Tensor:
    """Weights ``[B, F]`` of the ridge-penalised logistic regressions of ``y`` ``[B, n]`` on
    ``X`` ``[B, n, F]``, one per row, by ``newton_steps`` Newton steps from zero (halving a
    step where it would raise the objective).

    Explained in :ref:`sec-quality-model`.
    """
    if ridge <= 0:
        raise ValueError(f"ridge must be positive; got {ridge}")
    B, _, F = X.shape
    theta = torch.zeros(B, F, dtype=DTYPE)
    eye = torch.eye(F, dtype=DTYPE)
    sign = 2 * y - 1

    def objective(t: torch.Tensor) -> torch.Tensor:
        z = _logits(X, t)
        return torch.nn.functional.softplus(-sign * z).sum(1) + 0.5 * ridge * (t * t).sum(1)

    loss = objective(theta)
    for _ in range(newton_steps):
        p = torch.sigmoid(_logits(X, theta))
        grad = (X.transpose(1, 2) @ (p - y)[..., None])[..., 0] + ridge * theta
        hess = (X * (p * (1 - p))[..., None]).transpose(1, 2) @ X + ridge * eye
        step = torch.linalg.solve(hess, grad[..., None])[..., 0]
        scale = torch.ones(B, 1, dtype=DTYPE)
        for _ in range(8):  # backtracking, per model
            trial = theta - scale * step
            new = objective(trial)
            worse = (new > loss + 1e-12)[:, None]
            if not worse.any():
                break
            scale = torch.where(worse, scale / 2, scale)
        theta = torch.where(worse, theta, trial)
        loss = torch.where(worse[:, 0], loss, new)
    return theta


def gradient_norm(theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor, *, ridge: float) -> torch.Tensor:
    """The norm of the objective's gradient at ``theta``, per row (0 at the optimum).

    Explained in :ref:`sec-quality-model`.
    """
    p = torch.sigmoid(_logits(X, theta))
    return ((X.transpose(1, 2) @ (p - y)[..., None])[..., 0] + ridge * theta).norm(dim=1)


def predict(theta: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, n_segments: int) -> torch.Tensor:
    """The models' probabilities ``P(y = 1 | x)`` ``[B, n]`` at inputs ``u, v``.

    Explained in :ref:`sec-quality-model`.
    """
    return torch.sigmoid(_logits(features(u, v, n_segments=n_segments), theta))


def accuracy(theta: torch.Tensor, data: dict[str, torch.Tensor], *, n_segments: int) -> torch.Tensor:
    """Accuracy ``[B]`` of each model on its row of ``data`` (``u``, ``v``, ``y``).

    Explained in :ref:`sec-quality-model`.
    """
    p = predict(theta, data["u"], data["v"], n_segments=n_segments)
    return ((p > 0.5).to(DTYPE) == data["y"]).to(DTYPE).mean(1)
