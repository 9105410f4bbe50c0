r"""Chapter 7's theory line: the exact predictive error of a least-squares fit, as a function
of how much of the input space the data covers.

Model: ``y = α + βᵀx + ε``, ``ε ~ N(0, σ²)``, fitted by least squares with an intercept
(the minimum-norm solution when the data spans only part of the space). For a design
``x_1, …, x_n`` with mean ``x̄`` and scatter matrix ``S = Σ (x_i − x̄)(x_i − x̄)ᵀ``, the
expected squared error of the fitted value at a test point ``x₀``, given the design, is

    E[(ŷ(x₀) − f(x₀))²] = σ² (1/n + (x₀ − x̄)ᵀ S⁺ (x₀ − x̄)) + ((I − P) β)ᵀ x₀)²,

where ``P`` projects on the span of the centred design (its rank ``r``): the variance
term grows with the distance from the data in the directions it covers, and the bias term
is the part of the truth the data never saw. In one dimension with full coverage it is
the textbook ``σ² (1/n + (x₀ − x̄)² / S_xx)``. Fits are batched over replicates
(``torch.linalg.lstsq`` on ``[R, n, d + 1]``).
Explained in :ref:`sec-quality-theory`.
"""

from __future__ import annotations

import numpy as np
import torch

from .task import DTYPE, generator


def design_scatter(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean ``x̄`` ``[R, d]`` and scatter matrix ``S`` ``[R, d, d]`` of designs ``X`` ``[R, n, d]``.

    Explained in :ref:`sec-quality-theory`.
    """
    mean = X.mean(1)
    C = X - mean[:, None]
    return mean, C.transpose(1, 2) @ C


def scatter_pinv(S: torch.Tensor, *, rcond: float = 1e-9) -> torch.Tensor:
    """The Moore–Penrose pseudo-inverse of symmetric scatter matrices ``[R, d, d]`` (eigenvalues
    below ``rcond`` times the largest count as zero).

    Explained in :ref:`sec-quality-theory`.
    """
    lam, V = torch.linalg.eigh(S)
    keep = lam > rcond * lam.amax(-1, keepdim=True).clamp_min(1e-300)
    inv = torch.where(keep, 1 / torch.where(keep, lam, torch.ones_like(lam)), torch.zeros_like(lam))
    return (V * inv[..., None, :]) @ V.transpose(-1, -2)


def predictive_error(
    X: torch.Tensor, x0: torch.Tensor, beta: torch.Tensor, *, noise: float, rcond: float = 1e-9
) -> torch.Tensor:
    """The exact expected squared error ``[R, m]`` of the least-squares fit at test points
    ``x0`` ``[R, m, d]`` (or ``[m, d]``), given designs ``X`` ``[R, n, d]`` and true slopes
    ``beta`` ``[R, d]`` (module docstring): variance ``σ²(1/n + (x₀ − x̄)ᵀS⁺(x₀ − x̄))``
    plus the squared bias ``(((I − P)β)ᵀx₀)²`` of the directions the design does not span.

    Explained in :ref:`sec-quality-theory`.
    """
    n = X.shape[1]
    mean, S = design_scatter(X)
    x0 = x0.expand(X.shape[0], *x0.shape[-2:]) if x0.dim() == 2 else x0
    S_pinv = scatter_pinv(S, rcond=rcond)
    P = S_pinv @ S  # projection on the design's span
    D = x0 - mean[:, None]
    var = noise**2 * (1 / n + torch.einsum("rmd,rde,rme->rm", D, S_pinv, D))
    beta_perp = beta - (P @ beta[..., None])[..., 0]
    bias = torch.einsum("rmd,rd->rm", x0, beta_perp) ** 2
    return var + bias


def fit_predict(X: torch.Tensor, y: torch.Tensor, x0: torch.Tensor, *, rcond: float = 1e-9) -> torch.Tensor:
    """Least-squares fits with an intercept (minimum norm), one per replicate, evaluated
    at ``x0``: ``[R, m]`` from ``X`` ``[R, n, d]``, ``y`` ``[R, n]``, ``x0`` ``[R, m, d]`` or ``[m, d]``.

    Explained in :ref:`sec-quality-theory`.
    """
    mean, S = design_scatter(X)
    C = X - mean[:, None]
    ybar = y.mean(1, keepdim=True)
    slope = scatter_pinv(S, rcond=rcond) @ (C.transpose(1, 2) @ (y - ybar)[..., None])  # min-norm solution
    x0 = x0.expand(X.shape[0], *x0.shape[-2:]) if x0.dim() == 2 else x0
    return ybar + ((x0 - mean[:, None]) @ slope)[..., 0]


def line_experiment(
    *, widths: list[float], n: int, noise: float, replicates: int, x0: np.ndarray, seed: int
) -> dict[float, dict[str, np.ndarray]]:
    """One dimension, a fixed design of ``n`` evenly spaced points on ``[−w, w]`` for each
    coverage half-width ``w`` in ``widths``, ``replicates`` fresh noise draws each.

    Returns, per width, the squared errors ``err`` ``[replicates, m]`` at the test points
    ``x0`` ``[m]`` and the exact expected error ``theory`` ``[m]``
    (``σ²(1/n + (x₀ − x̄)²/S_xx)``; the design is fixed, so it is one curve).
    Explained in :ref:`sec-quality-theory`.
    """
    g = generator(seed)
    out = {}
    x0t = torch.as_tensor(np.asarray(x0, dtype=float), dtype=DTYPE)[:, None]
    for w in widths:
        design = torch.linspace(-w, w, n, dtype=DTYPE)[None, :, None].expand(replicates, n, 1)
        alpha, beta = 0.3, torch.full((replicates, 1), 1.0, dtype=DTYPE)  # the truth; the error does not depend on it
        y = alpha + (design @ beta[..., None])[..., 0] + noise * torch.randn(replicates, n, generator=g, dtype=DTYPE)
        truth = alpha + (x0t @ beta[0])[None, :]
        err = (fit_predict(design, y, x0t) - truth) ** 2
        theory = predictive_error(design[:1], x0t, beta[:1], noise=noise)[0]
        out[w] = {"err": err.numpy(), "theory": theory.numpy()}
    return out


def subspace_experiment(
    *, ranks: list[int], dim: int, n: int, noise: float, replicates: int, n_points: int, seed: int
) -> dict[int, dict[str, np.ndarray]]:
    """``dim`` dimensions; the data covers the first ``r`` coordinates only (``x = (z_1..z_r, 0, …)``,
    ``z ~ N(0, I)``), for each ``r`` in ``ranks``; the truth ``β ~ N(0, I/dim)`` is drawn per
    replicate. Test points: ``n_points`` *in the span* (ID) and ``n_points`` *generic*,
    ``x₀ ~ N(0, I_dim)`` (OOD).

    Returns, per rank, ``err_id``, ``err_ood`` (squared errors ``[replicates, n_points]``) and
    ``theory_id``, ``theory_ood`` (the exact conditional expectations,
    :func:`predictive_error`, for each replicate's design and truth).
    Explained in :ref:`sec-quality-theory`.
    """
    g = generator(seed)
    out = {}
    for r in ranks:
        if not 1 <= r <= dim or n <= r + 1:
            raise ValueError(f"need 1 <= r <= dim and n > r + 1; got r = {r}, dim = {dim}, n = {n}")
        mask = (torch.arange(dim) < r).to(DTYPE)
        X = torch.randn(replicates, n, dim, generator=g, dtype=DTYPE) * mask
        beta = torch.randn(replicates, dim, generator=g, dtype=DTYPE) / np.sqrt(dim)
        alpha = torch.randn(replicates, 1, generator=g, dtype=DTYPE)
        y = alpha + (X @ beta[..., None])[..., 0] + noise * torch.randn(replicates, n, generator=g, dtype=DTYPE)
        x_id = torch.randn(replicates, n_points, dim, generator=g, dtype=DTYPE) * mask
        x_ood = torch.randn(replicates, n_points, dim, generator=g, dtype=DTYPE)
        res = {}
        for name, x0 in (("id", x_id), ("ood", x_ood)):
            truth = alpha + (x0 @ beta[..., None])[..., 0]
            res[f"err_{name}"] = ((fit_predict(X, y, x0) - truth) ** 2).numpy()
            res[f"theory_{name}"] = predictive_error(X, x0, beta, noise=noise).numpy()
        out[r] = res
    return out


def expected_subspace_error(r: int, *, dim: int, n: int, noise: float, generic: bool) -> float:
    """The error of :func:`subspace_experiment` averaged over designs, truths and test points:
    ``σ²(1/n + (1 + 1/n) r/(n − r − 2))`` in the span (the inverse-Wishart mean), plus
    ``(dim − r)/dim`` (the unseen part of ``β``, ``E‖(I − P)β‖² = (dim − r)/dim``) at a generic point.

    Explained in :ref:`sec-quality-theory`.
    """
    if n <= r + 2:
        raise ValueError(f"the mean is finite only for n > r + 2; got n = {n}, r = {r}")
    var = noise**2 * (1 / n + (1 + 1 / n) * r / (n - r - 2))
    return var + ((dim - r) / dim if generic else 0.0)
