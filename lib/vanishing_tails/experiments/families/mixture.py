"""Gaussian mixtures refit by EM to their own samples: chapter 2, section 1.

The real distribution is a fixed 2-D mixture (:data:`REAL_MIXTURE`) whose smallest
component holds 4% of the mass. Generation 0 is a ``k``-component mixture fit by EM to
``n`` real points; every later generation is a fresh EM fit to the data of the regime
(the Gaussian-mixture experiment of Shumailov et al. 2024; the loop is
:func:`vanishing_tails.core.collapse.recursive_fit`).

EM runs on all chains at once (:func:`fit_mixtures`): data are arrays ``[chains, n, d]``
and every step of k-means++ seeding, Lloyd's k-means and EM is one array operation over
the chains, with the procedure of scikit-learn's ``GaussianMixture`` (k-means
initialisation, full covariances, ``reg_covar`` added to the diagonal, stop when the mean
log-likelihood changes by less than ``tol``).

Two tail measures, both relative to the real mixture p0 and estimated by Monte Carlo
with ``n_measure`` draws from each fitted model:

* *component regions*: R_k = {x : argmax_j w_j N(x; mu_j, S_j) = k}, the points the real
  mixture attributes to component k. ``mass_k = P_model(R_k) / P_0(R_k)``; the rare
  component's region is the rare event.
* *low-density region*: L = {x : p0(x) < c_q}, with c_q chosen so that P_0(L) = q
  (p0's least-probable ``q`` of the mass). ``low_density = P_model(L) / q``.

P_0(R_k) and c_q are computed once by quadrature on a fine grid (:func:`reference_constants`).
Explained in :ref:`sec-families-mixture`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import special

from vanishing_tails.core import collapse, metrics

_EPS = 10 * np.finfo(float).eps  # added to component counts, as scikit-learn does


def _component_logpdf(xt: np.ndarray, weights: np.ndarray, means: np.ndarray, covs: np.ndarray) -> np.ndarray:
    """log w_k + log N(x; mu_k, S_k) for batched mixtures, coordinate-major.

    ``xt`` ``[d, C, m]`` (coordinate first: every array below is a contiguous ``[C, m]``);
    ``weights`` ``[C, K]``, ``means`` ``[C, K, d]``, ``covs`` ``[C, K, d, d]``. Returns ``[K, C, m]``.
    """
    d = xt.shape[0]
    chol = np.linalg.cholesky(covs)  # [C, K, d, d]
    inv_chol = np.linalg.inv(chol)  # y = L^-1 (x - mu); maha = |y|^2
    logdet = 2 * np.sum(np.log(np.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)  # [C, K]
    with np.errstate(divide="ignore"):
        logw = np.log(weights)
    out = np.empty((weights.shape[1], *xt.shape[1:]))
    for k in range(weights.shape[1]):
        diff = [xt[e] - means[:, k, e, None] for e in range(d)]
        maha = 0.0
        for i in range(d):
            y = sum(inv_chol[:, k, i, j, None] * diff[j] for j in range(i + 1))  # L^-1 is lower triangular
            maha = maha + y * y
        out[k] = (logw[:, k] - 0.5 * (logdet[:, k] + d * np.log(2 * np.pi)))[:, None] - 0.5 * maha
    return out


def _logsumexp0(a: np.ndarray) -> np.ndarray:
    """log sum exp over the first axis (the components)."""
    top = a.max(0)
    return top + np.log(np.sum(np.exp(a - top), axis=0))


@dataclass(frozen=True)
class Mixture:
    """Gaussian mixtures with a leading chain axis: weights ``[C, K]``, means ``[C, K, d]``,
    covariances ``[C, K, d, d]`` (``C = 1`` for a single mixture).

    Explained in :ref:`sec-families-mixture`.
    """

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray

    @property
    def chains(self) -> int:
        return self.weights.shape[0]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` i.i.d. points from every mixture, ``[C, n, d]``: a component by its weight, then N(mu, S)."""
        C, K = self.weights.shape
        cum = np.cumsum(self.weights / self.weights.sum(-1, keepdims=True), axis=-1)
        k = np.minimum((rng.random((C, n))[..., None] > cum[:, None, :]).sum(-1), K - 1)  # [C, n]
        z = rng.standard_normal((C, n, self.means.shape[-1]))
        chol = np.linalg.cholesky(self.covs)  # [C, K, d, d]
        rows = np.arange(C)[:, None]
        return self.means[rows, k] + np.einsum("cnij,cnj->cni", chol[rows, k], z)

    def component_logpdf(self, x: np.ndarray) -> np.ndarray:
        """log w_k + log N(x; mu_k, S_k), ``[C, m, K]`` for points ``x`` ``[C, m, d]``
        (a single mixture, ``C = 1``, broadcasts over any leading chain axis of ``x``)."""
        C = x.shape[0]
        w, mu, S = self.weights, self.means, self.covs
        if self.chains == 1 and C != 1:
            w, mu, S = (np.broadcast_to(a, (C, *a.shape[1:])) for a in (w, mu, S))
        return np.moveaxis(_component_logpdf(np.moveaxis(x, -1, 0), w, mu, S), 0, -1)

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        """log p(x), ``[C, m]`` for points ``[C, m, d]``."""
        return special.logsumexp(self.component_logpdf(x), axis=-1)


#: The real distribution of chapter 2: two common components and a rare one (4%).
REAL_MIXTURE = Mixture(
    weights=np.array([[0.60, 0.36, 0.04]]),
    means=np.array([[[-2.5, 0.0], [2.5, 0.0], [0.0, 5.5]]]),
    covs=np.array([[[[1.2, 0.4], [0.4, 0.8]], [[1.0, -0.3], [-0.3, 1.0]], [[0.3, 0.0], [0.0, 0.3]]]]),
)
RARE = int(np.argmin(REAL_MIXTURE.weights[0]))
#: A component's region counts as *lost* by a model that keeps less than this share of its real mass.
LOST = 0.2
#: k of the k-nearest-neighbour precision and recall (Kynkäänniemi et al. 2019 use k = 3).
PR_K = 3


def real_sample(n: int, chains: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points of :data:`REAL_MIXTURE` for each of ``chains`` chains, ``[chains, n, 2]``.

    Explained in :ref:`sec-families-mixture`.
    """
    one = REAL_MIXTURE
    batch = Mixture(*(np.repeat(a, chains, axis=0) for a in (one.weights, one.means, one.covs)))
    return batch.sample(n, rng)


@lru_cache(maxsize=8)
def reference_constants(q: float, cells: int = 600) -> tuple[float, np.ndarray]:
    """(log c_q, P_0(R_k)) of :data:`REAL_MIXTURE` by quadrature on a ``cells`` x ``cells`` grid.

    c_q is the density level below which p0 holds mass ``q`` (its least-probable ``q``);
    P_0(R_k) the real mass of each component's region. Deterministic (no Monte Carlo).
    Explained in :ref:`sec-families-mixture`.
    """
    collapse._check_tail_q(q)
    xs = np.linspace(-12.0, 12.0, cells)
    ys = np.linspace(-10.0, 16.0, cells)
    area = (xs[1] - xs[0]) * (ys[1] - ys[0])
    grid = np.stack(np.meshgrid(xs, ys), -1).reshape(1, -1, 2)
    comp = REAL_MIXTURE.component_logpdf(grid)[0]  # [cells^2, K]
    logp = special.logsumexp(comp, axis=-1)
    mass = np.exp(logp) * area
    order = np.argsort(logp)
    cum = np.cumsum(mass[order]) / mass.sum()
    c = float(logp[order][np.searchsorted(cum, q)])
    region = comp.argmax(-1)
    region_mass = np.bincount(region, weights=mass, minlength=comp.shape[-1]) / mass.sum()
    return c, region_mass


def tail_measures(points: np.ndarray, q: float) -> dict[str, np.ndarray]:
    """Mass on each real component's region and on the real low-density region, relative to
    the real mixture's, from points ``[chains, m, 2]`` drawn from the models (module docstring).

    Explained in :ref:`sec-families-mixture`.
    """
    c, region_mass = reference_constants(q)
    comp = REAL_MIXTURE.component_logpdf(points)
    region = comp.argmax(-1)  # [chains, m]
    low = special.logsumexp(comp, axis=-1) < c
    out = {"low_density": low.mean(-1) / q}
    for k in range(REAL_MIXTURE.weights.shape[-1]):
        name = "rare" if k == RARE else f"common_{k}"
        out[f"mass_{name}"] = (region == k).mean(-1) / region_mass[k]
    return out


# ----------------------------------------------------------------------------- batched EM
def _sq_dist(xt: np.ndarray, centers: np.ndarray, j: int) -> np.ndarray:
    """Squared distances ``[C, n]`` of points ``xt`` ``[d, C, n]`` to each chain's centre ``j``."""
    return sum((xt[e] - centers[:, j, e, None]) ** 2 for e in range(xt.shape[0]))


def _nearest(xt: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index ``[C, n]`` of the nearest centre (``centers`` ``[C, k, d]``), by a running minimum over
    contiguous ``[C, n]`` arrays."""
    best, label = _sq_dist(xt, centers, 0), np.zeros(xt.shape[1:], dtype=np.intp)
    for j in range(1, centers.shape[1]):
        dj = _sq_dist(xt, centers, j)
        label[dj < best] = j
        np.minimum(best, dj, out=best)
    return label


def _kmeans(xt: np.ndarray, k: int, rng: np.random.Generator, max_iter: int = 300) -> np.ndarray:
    """Centres ``[C, k, d]`` of k-means (k-means++ seeding, then Lloyd) on every chain at once; ``xt`` ``[d, C, n]``.

    A chain stops when its labels no longer change or its centres move by less than
    scikit-learn's tolerance (1e-4 of the data's mean variance, squared shift summed).
    """
    d, C, n = xt.shape
    rows = np.arange(C)
    centers = np.empty((C, k, d))
    centers[:, 0] = xt[:, rows, rng.integers(0, n, C)].T
    d2 = _sq_dist(xt, centers, 0)
    for j in range(1, k):
        cum = np.cumsum(d2, axis=1)
        u = rng.random(C) * cum[:, -1]
        pick = np.minimum((cum < u[:, None]).sum(1), n - 1)
        centers[:, j] = xt[:, rows, pick].T
        d2 = np.minimum(d2, _sq_dist(xt, centers, j))
    tol = 1e-4 * np.mean(np.var(xt, axis=2), axis=0)  # [C]
    labels = np.full((C, n), -1)
    active = rows
    x = xt
    for _ in range(max_iter):
        c = centers[active]
        new = _nearest(x, c)
        unchanged = np.all(new == labels[active], axis=1)
        labels[active] = new
        moved = np.zeros(active.size)
        for j in range(k):
            member = new == j
            count = member.sum(1)
            for e in range(d):  # an empty cluster keeps its centre
                mean = (member * x[e]).sum(1) / np.maximum(count, 1)
                updated = np.where(count > 0, mean, c[:, j, e])
                moved += (updated - c[:, j, e]) ** 2
                c[:, j, e] = updated
        centers[active] = c
        done = unchanged | (moved <= tol[active])
        if done.all():
            break
        if done.any():
            active = active[~done]
            x = xt[:, active]
    return centers


def _m_step(xt: np.ndarray, resp: np.ndarray, reg_covar: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights ``[C, K]``, means ``[C, K, d]``, covariances ``[C, K, d, d]`` from responsibilities ``[K, C, n]``."""
    d, C, n = xt.shape
    K = resp.shape[0]
    nk = resp.sum(2) + _EPS  # [K, C]
    means = np.empty((C, K, d))
    covs = np.empty((C, K, d, d))
    for k in range(K):
        for e in range(d):
            means[:, k, e] = (resp[k] * xt[e]).sum(1) / nk[k]
        diff = [xt[e] - means[:, k, e, None] for e in range(d)]
        weighted = [resp[k] * de for de in diff]
        for i in range(d):
            for j in range(i + 1):
                covs[:, k, i, j] = covs[:, k, j, i] = (weighted[i] * diff[j]).sum(1) / nk[k]
    covs += reg_covar * np.eye(d)
    return (nk / n).T, means, covs


def fit_mixtures(
    x: np.ndarray,
    k: int,
    *,
    seed: int,
    max_iter: int = 200,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    init_points: int = 1000,
) -> Mixture:
    """Fit a ``k``-component full-covariance Gaussian mixture by EM to each chain's data ``x`` ``[C, n, d]``.

    Initialisation as scikit-learn's default: k-means labels (k-means++ seeding drawn from
    ``seed``) give the first responsibilities — k-means runs on at most ``init_points`` of the
    points (a random subset: the initialisation needs only the clusters' rough places, and
    the accumulated data sets of a long chain grow to thousands of points), and every
    point takes the label of its nearest centre. EM then runs on every chain at once; a chain
    stops when its mean log-likelihood changes by less than ``tol`` (its parameters are
    frozen while the others continue), all stop after ``max_iter`` iterations.
    Explained in :ref:`sec-families-mixture`.
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 3:
        raise ValueError(f"x must be [chains, n, d]; got shape {x.shape}")
    collapse._check_sizes(k=(k, 1), max_iter=(max_iter, 1))
    if x.shape[1] < k:
        raise ValueError(f"each chain needs at least k = {k} points; got {x.shape[1]}")
    xt = np.ascontiguousarray(np.moveaxis(x, -1, 0))  # [d, C, n]: coordinate-major, contiguous rows
    rng = np.random.default_rng(seed)
    n = x.shape[1]
    seed_points = xt if n <= init_points else xt[:, :, np.sort(rng.choice(n, init_points, replace=False))]
    labels = _nearest(xt, _kmeans(seed_points, k, rng))
    weights, means, covs = _m_step(xt, (labels == np.arange(k)[:, None, None]).astype(float), reg_covar)
    active = np.ones(x.shape[0], dtype=bool)
    lower = np.full(x.shape[0], -np.inf)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        xa = xt[:, idx] if idx.size < x.shape[0] else xt
        comp = _component_logpdf(xa, weights[idx], means[idx], covs[idx])  # [K, Ca, n]
        norm = _logsumexp0(comp)  # [Ca, n]
        w, mu, S = _m_step(xa, np.exp(comp - norm), reg_covar)
        weights[idx], means[idx], covs[idx] = w, mu, S
        new = norm.mean(1)
        done = np.abs(new - lower[idx]) < tol
        lower[idx] = new
        active[idx[done]] = False
    return Mixture(weights, means, covs)


def mixture_chains(
    n: int,
    generations: int,
    chains: int,
    *,
    regime: str,
    real_fraction: float,
    q: float,
    seed: int,
    pr_points: int,
    pr_generations: tuple[int, ...],
    n_components: int = 3,
    n_measure: int = 2000,
    snapshot_generations: tuple[int, ...] = (),
) -> tuple[pd.DataFrame, dict[int, np.ndarray]]:
    """Refit a ``n_components`` Gaussian mixture by EM to its own samples, ``chains`` chains at once.

    Runs :func:`~vanishing_tails.core.collapse.recursive_fit` with batched chains. Each
    generation draws ``n`` points ``[chains, n, 2]`` from the previous fits, fits fresh
    mixtures (:func:`fit_mixtures`, seeded from the loop's ``rng``) and measures
    :func:`tail_measures` on ``n_measure`` model draws per chain. ``regime="mix"`` with
    ``real_fraction = 0`` is ``replace``.

    Returns ``(frame, snapshots)``: the long frame (``generation``, ``quantity``,
    ``chain``, ``value``; quantities ``low_density``, ``mass_rare``, ``mass_common_k``,
    ``weight_rare`` — the fitted weight of the component nearest the rare mean; with
    ``pr_points > 0``, at the generations in ``pr_generations``, also ``precision`` and
    ``recall``, the k-NN precision and recall
    (:func:`vanishing_tails.core.metrics.precision_recall`, k = :data:`PR_K`) of ``pr_points``
    of the model draws against ``pr_points`` real points per chain drawn once from a stream of
    their own) and,
    for each generation in ``snapshot_generations``, ``n_measure`` points from chain 0's
    model (for scatter plots).
    Explained in :ref:`sec-families-mixture`.
    """
    collapse._check_sizes(
        n=(n, 10),
        generations=(generations, 0),
        chains=(chains, 1),
        n_components=(n_components, 1),
        n_measure=(n_measure, 10),
        pr_points=(pr_points, 0),
    )
    collapse._check_tail_q(q)
    if 0 < pr_points <= PR_K or pr_points > n_measure:
        raise ValueError(f"pr_points must be 0 or an integer in ({PR_K}, n_measure = {n_measure}]; got {pr_points!r}")
    snapshots: dict[int, np.ndarray] = {}
    rare_mean = REAL_MIXTURE.means[0, RARE]
    # the real reference of precision / recall: its own stream (the loop uses children 0 and 1)
    real_ref = real_sample(pr_points, chains, np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2]))

    def fit(x, rng):
        return fit_mixtures(x, n_components, seed=int(rng.integers(2**62)))

    def sample(models, m, rng):
        return models.sample(m, rng)

    def measure(models, t, rng):
        pts = models.sample(n_measure, rng)
        if t in snapshot_generations:
            snapshots[t] = pts[0]
        out = tail_measures(pts, q)
        nearest = np.argmin(np.sum((models.means - rare_mean) ** 2, -1), axis=1)
        out["weight_rare"] = models.weights[np.arange(models.chains), nearest]
        if pr_points and t in pr_generations:
            out["precision"], out["recall"] = metrics.precision_recall(real_ref, pts[:, :pr_points], k=PR_K)
        return out

    frame = collapse.recursive_fit(
        fit,
        sample,
        measure,
        real_sample=lambda m, rng: real_sample(m, chains, rng),
        n=n,
        generations=generations,
        regime=regime,
        real_fraction=real_fraction,
        concat=lambda parts: np.concatenate(parts, axis=1),
        subsample=lambda x, m, rng: np.stack([xc[rng.choice(len(xc), m, replace=False)] for xc in x]),
        seed=seed,
    )
    return frame, snapshots


# ----------------------------------------------------------------------------- the book's common tail measures
#: The quadrature grid of :func:`trajectory`: cell centres of a ``GRID_STEP`` lattice over the box
#: [-12, 12] x [-10, 16], which holds all but a negligible share of the real mixture and of its refits.
GRID_STEP = 0.25
#: The real law "has no mass" outside every real component's ellipse of this chi-square(2) level.
ERROR_LEVEL = 0.999


@lru_cache(maxsize=4)
def _grid(q: float) -> dict[str, np.ndarray]:
    """The grid of :func:`trajectory` and the real law on it (deterministic, cached per ``q``)."""
    xs = np.arange(-12.0, 12.0, GRID_STEP) + GRID_STEP / 2
    ys = np.arange(-10.0, 16.0, GRID_STEP) + GRID_STEP / 2
    pts = np.stack(np.meshgrid(xs, ys, indexing="ij"), -1)  # [nx, ny, 2]
    flat = pts.reshape(1, -1, 2)
    logp0 = REAL_MIXTURE.logpdf(flat)[0]
    mass0 = np.exp(logp0) * GRID_STEP**2
    mass0 = mass0 / mass0.sum()
    # error region E: outside every real component's ERROR_LEVEL ellipse (Mahalanobis^2 > chi2_2 quantile)
    diff = flat[0][:, None, :] - REAL_MIXTURE.means[0][None]  # [G, K, 2]
    maha = np.einsum("gki,kij,gkj->gk", diff, np.linalg.inv(REAL_MIXTURE.covs[0]), diff)
    error = maha.min(-1) > -2 * np.log1p(-ERROR_LEVEL)  # chi2 with 2 dof: quantile = -2 log(1 - level)
    # q-tail: p0's least-probable q of the mass, outside E (E is the error tail, counted apart)
    order = np.argsort(logp0)
    below = np.zeros(logp0.size, dtype=bool)
    below[order[np.cumsum(mass0[order]) <= q]] = True
    tail = below & ~error
    return {"points": flat[0], "shape": np.array(pts.shape[:2]), "logp0": logp0, "mass0": mass0,
            "error": error, "tail": tail}  # fmt: skip


def _blocks(mass: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Cell masses ``[..., G]`` summed over 2 x 2 blocks of the grid: ``[..., G / 4]`` (cells of side 2 h)."""
    nx, ny = (int(s) for s in shape)
    m = mass.reshape(*mass.shape[:-1], nx // 2, 2, ny // 2, 2)
    return m.sum((-3, -1)).reshape(*mass.shape[:-1], -1)


def grid_measures(models: Mixture, start: Mixture, *, q: float, n: int) -> dict[str, np.ndarray]:
    """The common tail measures (:data:`vanishing_tails.core.tails.COLUMNS`) of every chain's
    mixture, by quadrature on a fixed grid (no Monte Carlo).

    With cell masses m_i = p(x_i) h^2 / Σ_j p(x_j) h^2 on the grid of step ``h`` =
    :data:`GRID_STEP` (model p, real law p0, start s = the chain's generation-0 fit):

    * ``support`` — Σ_b 1 − (1 − m_b)^n over blocks b of 2 x 2 cells (side 2h), relative to
      the same for p0: the expected number of distinct places ``n`` draws visit;
    * ``q_tail_mass`` — Σ_{i ∈ T} m_i / Σ_{i ∈ T} m0_i, T = p0's least-probable ``q`` of the
      mass (density below c_q) outside the error region E;
    * ``error_mass`` — Σ_{i ∈ E} m_i, E = the points outside every real component's
      :data:`ERROR_LEVEL` ellipse (Mahalanobis² above the chi-square(2) quantile), where p0
      puts at most 1 − ERROR_LEVEL of its mass: mass the fit adds where the real law has none;
    * ``mode_share`` — the largest block mass;
    * ``kl_from_start`` — Σ_i m_i log(m_i / s_i) (0 at generation 0);
    * ``quality`` — −KL(p0 ‖ p) = Σ_i m0_i log(m_i / m0_i) in nats (0 = the real law).

    Returns arrays of one value per chain. Explained in :ref:`sec-families-mixture`.
    """
    g = _grid(q)
    C = models.chains
    xt = np.broadcast_to(g["points"].T[:, None, :], (2, C, g["points"].shape[0]))

    def log_cells(m: Mixture) -> np.ndarray:
        w, mu, S = m.weights, m.means, m.covs
        if m.chains == 1 and C != 1:
            w, mu, S = (np.broadcast_to(a, (C, *a.shape[1:])) for a in (w, mu, S))
        lp = _logsumexp0(_component_logpdf(xt, w, mu, S))  # [C, G]
        return lp - special.logsumexp(lp, axis=-1, keepdims=True)

    lm, ls = log_cells(models), log_cells(start)
    m = np.exp(lm)
    log_m0 = np.log(g["mass0"])
    blocks, blocks0 = _blocks(m, g["shape"]), _blocks(g["mass0"], g["shape"])
    distinct = -np.expm1(n * np.log1p(-np.minimum(blocks, 1 - 1e-16))).sum(-1)
    distinct0 = -np.expm1(n * np.log1p(-blocks0)).sum()
    return {
        "support": distinct / distinct0,
        "q_tail_mass": m[:, g["tail"]].sum(-1) / g["mass0"][g["tail"]].sum(),
        "error_mass": m[:, g["error"]].sum(-1),
        "mode_share": blocks.max(-1),
        "kl_from_start": np.maximum((m * (lm - ls)).sum(-1), 0.0),
        "quality": (g["mass0"] * (lm - log_m0)).sum(-1),
    }


def _measure_from_start(q: float, n: int):
    """A ``measure(models, t)`` callback: :func:`grid_measures` against the generation-0 models it saw."""
    start: list[Mixture] = []

    def measure(models, t):
        if t == 0:
            start[:] = [models]
        return grid_measures(models, start[0], q=q, n=n)

    return measure


def trajectory(
    *, n: int, generations: int, n_seeds: int, q: float, real_fractions: list[float], seed: int
) -> pd.DataFrame:
    """The book's common tail measures of the refit Gaussian mixture, per arm, chain
    (``replicate``) and generation (``step``).

    Arms (all paired: the same real data and the same generation-0 fit per chain, from the
    seed stream ``streams(seed)["mixture-trajectory"]``): ``replace``, ``accumulate``,
    ``accumulate-subsample`` and ``mix <rf>`` for every ``rf`` in ``real_fractions`` (each
    generation trains on round(rf n) fresh real points and the rest from the previous fit;
    ``mix 1`` trains on fresh real data alone, the null arm). ``mechanism`` is ``error`` for
    every arm: sampling is at temperature 1, but EM always fits three components and puts the
    mass of a lost one where the real law has none. The columns are those of
    :func:`grid_measures`: ``q_tail_mass`` the mass on p0's least-probable ``q`` (outside
    E), ``error_mass`` the mass outside every real component's ellipse, ``support`` the
    expected distinct grid blocks in ``n`` draws, ``quality`` = −KL(p0 ‖ model) in nats.
    Explained in :ref:`sec-families-mixture`.
    """
    from vanishing_tails.core.seeds import streams

    collapse._check_sizes(n=(n, 10), generations=(generations, 0), n_seeds=(n_seeds, 1))
    collapse._check_tail_q(q)
    collapse._check_fractions(real_fractions=list(real_fractions))
    base = streams(seed)["mixture-trajectory"]
    arms = [("replace", "replace", 0.0), ("accumulate", "accumulate", 0.0)]
    arms += [("accumulate-subsample", "accumulate-subsample", 0.0)]
    arms += [(f"mix {rf:g}", "mix", float(rf)) for rf in real_fractions]
    frames = []
    for arm, regime, rf in arms:
        measure = _measure_from_start(q, n)

        f = collapse.recursive_fit(
            lambda x, rng: fit_mixtures(x, 3, seed=int(rng.integers(2**62))),
            lambda models, m, rng: models.sample(m, rng),
            measure,
            real_sample=lambda m, rng: real_sample(m, n_seeds, rng),
            n=n,
            generations=generations,
            regime=regime,
            real_fraction=rf,
            concat=lambda parts: np.concatenate(parts, axis=1),
            subsample=lambda x, m, rng: np.stack([xc[rng.choice(len(xc), m, replace=False)] for xc in x]),
            seed=base,
        )
        wide = f.pivot_table(index=["chain", "generation"], columns="quantity", values="value").reset_index()
        wide = wide.rename(columns={"chain": "replicate", "generation": "step"}).assign(arm=arm)
        frames.append(wide)
    from vanishing_tails.core.tails import COLUMNS

    out = pd.concat(frames, ignore_index=True)
    out["experiment"] = "families"
    out["mechanism"] = "error"
    return out[["experiment", "arm", "replicate", "step", "mechanism", *COLUMNS]]
