"""Gaussian mixtures refit by scikit-learn to their own samples: chapter 2, section 1.

The real distribution is a fixed 2-D mixture (:data:`REAL_MIXTURE`) whose smallest
component holds 4% of the mass. Generation 0 is ``GaussianMixture`` fit by EM to ``n``
real points; every later generation is a fresh EM fit to the data of the regime
(as in the Gaussian-mixture experiment of Shumailov et al. 2024; the loop is
:func:`vanishing_tails.core.collapse.recursive_fit`).

Two tail measures, both relative to the real mixture p0 and estimated by Monte Carlo
with ``n_measure`` draws from the fitted model:

* *component regions*: R_k = {x : argmax_j w_j N(x; mu_j, S_j) = k}, the points the real
  mixture attributes to component k. ``mass_k = P_model(R_k) / P_0(R_k)``; the rare
  component's region is the rare event.
* *low-density region*: L = {x : p0(x) < c_q}, with c_q the q-quantile of p0(X), X ~ p0
  (its least-probable ``q`` of the mass). ``low_density = P_model(L) / q``.

Chains are batched: data are arrays ``[chains, n, 2]``; EM runs once per chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import special

from vanishing_tails.core import collapse


@dataclass(frozen=True)
class Mixture:
    """A K-component Gaussian mixture in d dimensions (weights [K], means [K, d], covs [K, d, d])."""

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` i.i.d. points ``[n, d]``: component counts by a multinomial, then N(mu, S)."""
        k = rng.choice(len(self.weights), size=n, p=self.weights / self.weights.sum())
        z = rng.standard_normal((n, self.means.shape[1]))
        chol = np.linalg.cholesky(self.covs)  # [K, d, d]
        return self.means[k] + np.einsum("nij,nj->ni", chol[k], z)

    def component_logpdf(self, x: np.ndarray) -> np.ndarray:
        """log w_k + log N(x; mu_k, S_k), shape ``[..., K]`` for points ``x`` ``[..., d]``."""
        d = x.shape[-1]
        prec = np.linalg.inv(self.covs)  # [K, d, d]
        _, logdet = np.linalg.slogdet(self.covs)
        diff = x[..., None, :] - self.means  # [..., K, d]
        maha = np.einsum("...ki,kij,...kj->...k", diff, prec, diff)
        return np.log(self.weights) - 0.5 * (maha + logdet + d * np.log(2 * np.pi))

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        return special.logsumexp(self.component_logpdf(x), axis=-1)


#: The real distribution of chapter 2: two common components and a rare one (4%).
REAL_MIXTURE = Mixture(
    weights=np.array([0.60, 0.36, 0.04]),
    means=np.array([[-2.5, 0.0], [2.5, 0.0], [0.0, 5.5]]),
    covs=np.array([[[1.2, 0.4], [0.4, 0.8]], [[1.0, -0.3], [-0.3, 1.0]], [[0.3, 0.0], [0.0, 0.3]]]),
)
RARE = int(np.argmin(REAL_MIXTURE.weights))
#: A component's region counts as *lost* by a model that keeps less than this share of its real mass.
LOST = 0.2


@lru_cache(maxsize=8)
def _reference(q: float, n_mc: int = 200_000) -> tuple[float, np.ndarray]:
    """(c_q, P_0(R_k)) for :data:`REAL_MIXTURE` by a fixed, large Monte Carlo (seed 0)."""
    x = REAL_MIXTURE.sample(n_mc, np.random.default_rng(0))
    c = float(np.quantile(REAL_MIXTURE.logpdf(x), q))
    region = REAL_MIXTURE.component_logpdf(x).argmax(-1)
    return c, np.bincount(region, minlength=len(REAL_MIXTURE.weights)) / n_mc


def tail_measures(points: np.ndarray, q: float = 0.05) -> dict[str, np.ndarray]:
    """Mass on each real component's region and on the real low-density region, relative to
    the real mixture's, from points ``[chains, m, 2]`` drawn from the models (module docstring)."""
    c, region_mass = _reference(q)
    comp = REAL_MIXTURE.component_logpdf(points)
    region = comp.argmax(-1)  # [chains, m]
    low = special.logsumexp(comp, axis=-1) < c
    out = {"low_density": low.mean(-1) / q}
    for k in range(len(REAL_MIXTURE.weights)):
        name = "rare" if k == RARE else f"common_{k}"
        out[f"mass_{name}"] = (region == k).mean(-1) / region_mass[k]
    return out


def _fit_one(x: np.ndarray, k: int, seed: int) -> Mixture:
    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(n_components=k, covariance_type="full", n_init=1, max_iter=200,
                         reg_covar=1e-6, random_state=seed).fit(x)
    return Mixture(gm.weights_, gm.means_, gm.covariances_)


def mixture_chains(
    n: int,
    generations: int,
    chains: int,
    *,
    regime: str = "replace",
    real_fraction: float = 0.0,
    n_components: int = 3,
    q: float = 0.05,
    n_measure: int = 2000,
    snapshot_generations: tuple[int, ...] = (),
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[int, np.ndarray]]:
    """Refit a ``n_components`` Gaussian mixture (scikit-learn EM) to its own samples.

    Runs :func:`~vanishing_tails.core.collapse.recursive_fit` once with ``chains`` batched
    chains. Each generation draws ``n`` points ``[chains, n, 2]`` from the previous fits
    (own numpy sampler, seeded by the loop's ``rng``), fits a fresh ``GaussianMixture``
    per chain (k-means initialisation, ``random_state`` drawn from ``rng``) and measures
    :func:`tail_measures` on ``n_measure`` model draws per chain.

    Returns ``(frame, snapshots)``: the long frame (``generation``, ``quantity``,
    ``chain``, ``value``; quantities ``low_density``, ``mass_rare``, ``mass_common_k``,
    ``weight_rare`` — the fitted weight of the component nearest the rare mean) and,
    for each generation in ``snapshot_generations``, ``n_measure`` points from chain 0's
    model (for scatter plots).
    """
    collapse._check_sizes(n=(n, 10), generations=(generations, 0), chains=(chains, 1),
                          n_components=(n_components, 1), n_measure=(n_measure, 10))
    if not 0 < q < 0.5:
        raise ValueError(f"q must lie in (0, 0.5); got {q!r}")
    snapshots: dict[int, np.ndarray] = {}

    def real_sample(m, rng):
        return np.stack([REAL_MIXTURE.sample(m, rng) for _ in range(chains)])

    def fit(x, rng):
        seeds = rng.integers(0, 2**31 - 1, size=chains)
        return [_fit_one(xc, n_components, int(s)) for xc, s in zip(x, seeds)]

    def sample(models, m, rng):
        return np.stack([mod.sample(m, rng) for mod in models])

    def measure(models, t, rng):
        pts = sample(models, n_measure, rng)
        if t in snapshot_generations:
            snapshots[t] = pts[0]
        out = tail_measures(pts, q)
        rare_mean = REAL_MIXTURE.means[RARE]
        out["weight_rare"] = np.array([
            mod.weights[np.argmin(np.sum((mod.means - rare_mean) ** 2, -1))] for mod in models])
        return out

    frame = collapse.recursive_fit(
        fit, sample, measure, real_sample=real_sample, n=n, generations=generations,
        regime=regime, real_fraction=real_fraction,
        concat=lambda parts: np.concatenate(parts, axis=1),
        subsample=lambda x, m, rng: np.stack([xc[rng.choice(len(xc), m, replace=False)] for xc in x]),
        seed=seed,
    )
    return frame, snapshots
