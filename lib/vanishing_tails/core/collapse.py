"""Recursive-training engines: refit a model on its own samples, generation after generation.

The exactly solvable engines — a Gaussian refit to its own samples
(:func:`gaussian_chains`) and a categorical distribution refit by counts, i.e.
Wright–Fisher resampling (:func:`categorical_paths`, :func:`categorical_chains`) — and
their exact theory are explained in :ref:`chapter-tails-vanish-first`; chapter 2
(:ref:`chapter-model-families`) reuses the generic loop :func:`recursive_fit` for
mixtures, a VAE and a language model.

Data regimes (one vocabulary across the book):

``replace``
    generation t is fit on ``n`` samples from model t-1 only (Shumailov et al. 2024).
``accumulate``
    generation t is fit on *all* data so far: the real sample of generation 1 plus
    every synthetic sample since (Gerstgrasser et al. 2024).
``accumulate-subsample``
    generation t is fit on a random ``n`` of all data so far (Kazdan et al. 2024):
    the data budget stays fixed while the pool keeps the real data.
``mix``
    generation t is fit on ``n`` samples of which a ``real_fraction`` is drawn fresh
    from the real distribution and the rest from model t-1.

Generation 0 is the real distribution itself; generation 1 is the model fitted to
``n`` real samples, so every regime starts from the same place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from . import metrics

REGIMES = ("replace", "accumulate", "accumulate-subsample", "mix")
FITS = ("mle", "unbiased")
TAIL_SIGMAS = 3.0


def check_regime(regime: str, real_fraction: float) -> None:
    """Validate the shared ``regime`` / ``real_fraction`` vocabulary (ValueError naming the parameter).

    Explained in :ref:`sec-tails-regimes`.
    """
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {', '.join(REGIMES)}; got {regime!r}")
    if not 0.0 <= real_fraction <= 1.0:
        raise ValueError(f"real_fraction must lie in [0, 1]; got {real_fraction!r}")
    if real_fraction > 0 and regime != "mix":
        raise ValueError(f"real_fraction applies to regime 'mix' only; got regime {regime!r}")


def _check_tail_q(q: float) -> None:
    if not 0 < q < 0.5:
        raise ValueError(f"q must lie in (0, 0.5); got {q!r}")


def _check_fractions(**fractions: Any) -> None:
    """Each value (a fraction, or a list of them) must lie in [0, 1]; the error names its parameter."""
    for name, values in fractions.items():
        for v in values if isinstance(values, (list, tuple)) else [values]:
            if not 0 <= v <= 1:
                raise ValueError(f"{name} must lie in [0, 1]; got {v!r}")


def _check_sizes(**sizes: Any) -> None:
    for name, (value, low) in sizes.items():
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature!r}")


def _distinct_indices(rng: np.random.Generator, pool: int, n: int, rows: int) -> np.ndarray:
    """``rows`` independent draws of ``n`` distinct indices from range(pool) (order irrelevant).

    Draw with replacement, then redraw duplicates until none remain: exact sampling
    without replacement, vectorised over rows.
    """
    if n == pool:
        return np.broadcast_to(np.arange(pool), (rows, n)).copy()
    idx = np.sort(rng.integers(0, pool, size=(rows, n)), axis=1)
    while True:
        dup = np.zeros_like(idx, dtype=bool)
        dup[:, 1:] = idx[:, 1:] == idx[:, :-1]
        k = int(dup.sum())
        if k == 0:
            return idx
        idx[dup] = rng.integers(0, pool, size=k)
        idx.sort(axis=1)


# ----------------------------------------------------------------------------- Gaussian
def gaussian_tail_mass(mean: np.ndarray, sd: np.ndarray, k: float = TAIL_SIGMAS) -> np.ndarray:
    """Mass a N(mean, sd^2) model puts beyond +-k real standard deviations: Phi((-k-mu)/s) + Phi((mu-k)/s).

    Explained in :ref:`sec-tails-gaussian-tail`.
    """
    return special.ndtr((-k - mean) / sd) + special.ndtr((mean - k) / sd)


def gaussian_central_mass(mean: np.ndarray, sd: np.ndarray, k: float = 1.0) -> np.ndarray:
    """Mass a N(mean, sd^2) model puts within +-k of the real mean.

    Explained in :ref:`sec-tails-gaussian-tail`.
    """
    return special.ndtr((k - mean) / sd) - special.ndtr((-k - mean) / sd)


def expected_variance_mle(n: int, t: np.ndarray, sigma0_sq: float = 1.0) -> np.ndarray:
    """E[sigma_t^2] = sigma_0^2 ((n-1)/n)^t under replace with the MLE fit.

    Each refit multiplies the variance by chi^2_{n-1}/n, whose mean is (n-1)/n; the
    factors are independent across generations. With fresh real data, a temperature or
    the unbiased fit, see :func:`expected_gaussian_moments`.
    Explained in :ref:`sec-tails-gaussian`.
    """
    return sigma0_sq * ((n - 1) / n) ** np.asarray(t, dtype=float)


def expected_log_variance(n: int, t: np.ndarray, fit: str = "unbiased", sigma0_sq: float = 1.0) -> np.ndarray:
    """E[log sigma_t^2] under replace: log sigma_0^2 + t E[log F], F the per-generation factor.

    F = chi^2_{n-1}/(n-1) for the unbiased fit, chi^2_{n-1}/n for the MLE, and
    E[log chi^2_k] = psi(k/2) + log 2, so the drift is psi((n-1)/2) - log((n-1)/2)
    (unbiased) or psi((n-1)/2) - log(n/2) (MLE). The unbiased factor has *mean* 1 (so
    E[sigma_t^2] = sigma_0^2 for every t) but a negative log-mean (Jensen): log-variance
    is a random walk with negative drift, so almost every chain collapses while the
    expectation is held up by ever rarer chains that blow up.
    Explained in :ref:`sec-tails-gaussian`.
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}; got {fit!r}")
    h = (n - 1) / 2
    scale = h if fit == "unbiased" else n / 2
    return np.log(sigma0_sq) + np.asarray(t, dtype=float) * (special.digamma(h) - np.log(scale))


def expected_gaussian_moments(
    n: int, t: np.ndarray, *, fit: str = "mle", real_fraction: float = 0.0, temperature: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``(E[sigma_t^2], E[mu_t^2])`` of :func:`gaussian_chains` under ``replace`` or ``mix``.

    Generation t fits ``a = round(real_fraction * n)`` fresh N(0, 1) draws and
    ``b = n - a`` draws from N(mu, T sigma^2), the previous model at temperature T.
    Given the previous model, the sum of squares about the sample mean has expectation
    (a + b T sigma^2)(n - 1)/n + mu^2 ab/n, and the sample mean's square
    (a + b T sigma^2)/n^2 + mu^2 b^2/n^2. Both are linear in (sigma^2, mu^2), so the
    expectations follow a linear recursion from (1, 0) at generation 0:

    s_t = [(a + b T s_{t-1})(n - 1)/n + u_{t-1} ab/n] / (n - ddof),
    u_t = (a + b T s_{t-1})/n^2 + b^2 u_{t-1}/n^2,

    with ddof = 0 (MLE) or 1 (unbiased). Under ``replace`` (a = 0, T = 1, MLE) this is
    s_t = ((n-1)/n)^t (:func:`expected_variance_mle`); with ``real_fraction = 1`` every
    generation is a fresh fit and s_t = (n - 1)/(n - ddof). ``t`` may be an array.
    Explained in :ref:`sec-tails-gaussian`.
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}; got {fit!r}")
    _check_sizes(n=(n, 2))
    check_regime("mix", real_fraction)
    _check_temperature(temperature)
    t = np.asarray(t)
    a = int(round(real_fraction * n))
    b = n - a
    ddof = 0 if fit == "mle" else 1
    horizon = int(np.max(t)) if t.size else 0
    s, u = np.ones(horizon + 1), np.zeros(horizon + 1)
    for k in range(1, horizon + 1):
        fresh = a + b * temperature * s[k - 1]
        s[k] = (fresh * (n - 1) / n + u[k - 1] * a * b / n) / (n - ddof)
        u[k] = fresh / n**2 + b**2 * u[k - 1] / n**2
    return s[t], u[t]


def gaussian_chains(
    n: int,
    generations: int,
    chains: int,
    *,
    regime: str,
    real_fraction: float = 0.0,
    fit: str = "mle",
    temperature: float = 1.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Recursively fit a 1-D Gaussian to ``n`` samples and sample the next generation.

    The real distribution is N(0, 1); generation 0 *is* that distribution (mean 0,
    variance 1). Generation t >= 1 is the Gaussian fitted (``fit="mle"``: divide by
    N; ``"unbiased"``: divide by N - 1) to the data of the ``regime`` (module
    docstring). Sampling at ``temperature`` T draws from p^(1/T), i.e. N(mu, T sigma^2).
    Theory: :func:`expected_variance_mle`, :func:`expected_log_variance`,
    :func:`expected_gaussian_moments` (Shumailov et al. 2024, Sec. "Theoretical intuition").

    Vectorised over chains: one batch draw ``[chains, n]`` per generation; the
    accumulating regimes keep running sums (``accumulate``) or the pool itself
    (``accumulate-subsample``).

    Returns a long frame, one row per chain x generation, with columns ``chain``,
    ``generation``, ``mean``, ``variance``, ``tail_mass`` (model mass beyond +-3 real
    standard deviations), ``central_mass`` (model mass within +-1) and ``data_size``.
    Explained in :ref:`sec-tails-gaussian`.
    """
    _check_sizes(n=(n, 2), generations=(generations, 1), chains=(chains, 1))
    check_regime(regime, real_fraction)
    _check_temperature(temperature)
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}; got {fit!r}")
    rng = np.random.default_rng(seed)
    ddof = 0 if fit == "mle" else 1
    mean = np.zeros((generations + 1, chains))
    var = np.ones((generations + 1, chains))
    size = np.zeros(generations + 1, dtype=np.int64)
    n_real = int(round(real_fraction * n)) if regime == "mix" else 0
    sum1 = np.zeros(chains)
    sum2 = np.zeros(chains)
    pool = np.empty((chains, generations * n)) if regime == "accumulate-subsample" else None
    for t in range(1, generations + 1):
        mu, sd = mean[t - 1], np.sqrt(var[t - 1] * temperature)
        z = rng.standard_normal((chains, n))
        if n_real:  # fresh real data: the first n_real columns come from N(0, 1)
            x_syn = mu[:, None] + sd[:, None] * z[:, n_real:]
            x = np.concatenate([z[:, :n_real], x_syn], axis=1)
        else:
            x = z
            x *= sd[:, None]
            x += mu[:, None]
        if regime in ("replace", "mix"):
            m_t = x.mean(axis=1)
            x -= m_t[:, None]  # squares about the mean: no cancellation when sigma << |mu|
            v_t = np.einsum("ij,ij->i", x, x) / (n - ddof)
            size[t] = n
        elif regime == "accumulate":
            sum1 += x.sum(axis=1)
            sum2 += np.einsum("ij,ij->i", x, x)
            N = t * n
            m_t = sum1 / N
            v_t = np.maximum(sum2 / N - m_t**2, 0.0) * N / (N - ddof)
            size[t] = N
        else:  # accumulate-subsample
            pool[:, (t - 1) * n : t * n] = x
            idx = _distinct_indices(rng, t * n, n, chains)
            sub = np.take_along_axis(pool[:, : t * n], idx, axis=1)
            m_t = sub.mean(axis=1)
            v_t = sub.var(axis=1, ddof=ddof)
            size[t] = n
        mean[t], var[t] = m_t, v_t
    sd_all = np.sqrt(var)
    gen = np.repeat(np.arange(generations + 1), chains)
    return pd.DataFrame(
        {
            "chain": np.tile(np.arange(chains), generations + 1),
            "generation": gen,
            "mean": mean.ravel(),
            "variance": var.ravel(),
            "tail_mass": gaussian_tail_mass(mean, np.maximum(sd_all, 1e-300)).ravel(),
            "central_mass": gaussian_central_mass(mean, np.maximum(sd_all, 1e-300)).ravel(),
            "data_size": size[gen],
        }
    )


REAL_GAUSSIAN_TAIL_MASS = float(2 * stats.norm.sf(TAIL_SIGMAS))


# ----------------------------------------------------------------------------- categorical
def temper(p: np.ndarray, temperature: float) -> np.ndarray:
    """p^(1/T) / sum p^(1/T) along the last axis (zeros stay zero).

    Explained in :ref:`sec-tails-mean-typical`.
    """
    _check_temperature(temperature)
    if temperature == 1.0:
        return p
    with np.errstate(divide="ignore"):
        logp = np.log(p) / temperature
    logp -= logp.max(axis=-1, keepdims=True)
    w = np.exp(logp)
    return w / w.sum(axis=-1, keepdims=True)


def categorical_paths(
    p0: np.ndarray,
    m: int,
    generations: int,
    chains: int,
    *,
    regime: str,
    real_fraction: float = 0.0,
    temperature: float = 1.0,
    seed: int = 0,
):
    """Yield ``(t, p_t)`` for t = 0..generations, p_t of shape ``[chains, K]`` (see
    :func:`categorical_chains`). Memory stays O(chains x K) whatever the generation count.

    Generation t >= 2 draws from the previous model at ``temperature``; generation 1
    draws from ``p0`` itself. A type with p_t = 0 is never drawn again unless fresh real
    data (``mix``) or the accumulated pool puts it back.
    Explained in :ref:`sec-tails-words`.
    """
    p0 = metrics.as_distribution(p0, name="p0")
    if p0.ndim != 1:
        raise ValueError(f"p0 must be one distribution (1-D); got shape {p0.shape}")
    _check_sizes(m=(m, 1), generations=(generations, 1), chains=(chains, 1))
    check_regime(regime, real_fraction)
    _check_temperature(temperature)
    rng = np.random.default_rng(seed)
    p = np.broadcast_to(p0, (chains, p0.size)).copy()
    pool = np.zeros((chains, p0.size))  # accumulated counts (accumulating regimes)
    m_real = int(round(real_fraction * m)) if regime == "mix" else 0
    yield 0, p
    for t in range(1, generations + 1):
        # model t-1 generates m - m_real items (generation 1's source is the real p0)
        counts = rng.multinomial(m - m_real, p if t == 1 else temper(p, temperature))
        if m_real:
            counts += rng.multinomial(m_real, p0, size=chains)
        pool += counts
        if regime == "accumulate":
            p = pool / pool.sum(axis=1, keepdims=True)
        elif regime == "accumulate-subsample":
            p = rng.multinomial(m, pool / pool.sum(axis=1, keepdims=True)) / m
        else:
            p = counts / m
        yield t, p


def categorical_chains(
    p0: np.ndarray,
    m: int,
    generations: int,
    chains: int,
    *,
    regime: str,
    real_fraction: float = 0.0,
    temperature: float = 1.0,
    q: float = 0.1,
    seed: int = 0,
) -> pd.DataFrame:
    """Refit a categorical distribution by the counts of ``m`` samples, every generation.

    With ``regime="replace"`` and T = 1 this is Wright–Fisher resampling (Kimura
    1955): each type's share p_t(i) is a martingale, E[p_t(i)] = p_0(i), so the
    *expected* tail mass never moves, while each type is eventually absorbed at 0 or 1
    — a type once lost never returns. The diversity decays exactly as
    E[1 - sum_i p_t(i)^2] = (1 - 1/m)^t (1 - sum_i p_0(i)^2)
    (:func:`expected_gini_simpson`), and the mass on any fixed set of types — the
    q-tail lumped into one type — is itself a Wright–Fisher frequency
    (:func:`tail_mass_variance`). Sampling at temperature T < 1 (from p^(1/T))
    breaks the martingale and makes the expected tail mass itself fall.

    Generation 0 is ``p0`` (the real distribution); generation 1 is fit to ``m`` real
    draws. ``accumulate`` fits on all counts so far; ``accumulate-subsample`` draws
    ``m`` from the pooled data *with replacement* (a multinomial on the pooled
    frequencies: for a pool of t*m items the difference from drawing without
    replacement is a variance factor of (1 - 1/t), and keeps the engine vectorised);
    ``mix`` draws ``round(real_fraction * m)`` of the ``m`` from ``p0``.

    Returns one row per chain x generation with ``chain``, ``generation``,
    ``gini_simpson``, ``entropy``, ``surviving`` (types with p_t > 0), ``revived``
    (types with p_{t-1} = 0 < p_t), ``tail_mass`` (mass on the least-probable ``q`` of
    ``p0``), ``head_mass`` (mass on the most-probable types that make up ``q`` of
    ``p0``) and ``tv_to_real`` (total variation to ``p0``).
    Explained in :ref:`sec-tails-words`.
    """
    p0 = metrics.as_distribution(p0, name="p0")
    tail = metrics.tail_set(p0, q)
    head = _head_set(p0, q)
    rows = []
    prev_alive = None
    for t, p in categorical_paths(
        p0, m, generations, chains, regime=regime, real_fraction=real_fraction, temperature=temperature, seed=seed
    ):
        alive = p > 0
        revived = np.zeros(chains, dtype=np.int64) if prev_alive is None else (alive & ~prev_alive).sum(1)
        prev_alive = alive
        rows.append(
            {
                "chain": np.arange(chains),
                "generation": np.full(chains, t),
                "gini_simpson": 1.0 - np.einsum("ij,ij->i", p, p),
                "entropy": special.entr(p).sum(axis=1),
                "surviving": alive.sum(axis=1),
                "revived": revived,
                "tail_mass": p[:, tail].sum(axis=1),
                "head_mass": p[:, head].sum(axis=1),
                "tv_to_real": 0.5 * np.abs(p - p0).sum(axis=1),
            }
        )
    return pd.DataFrame({k: np.concatenate([r[k] for r in rows]) for k in rows[0]})


def _head_set(p0: np.ndarray, q: float) -> np.ndarray:
    """The most-probable types of ``p0`` that together make up at most ``q`` of its mass
    (at least one type)."""
    order = np.argsort(-p0, kind="stable")
    cum = np.cumsum(p0[order])
    k = max(1, int(np.sum(cum <= q + 1e-12)))
    mask = np.zeros(p0.shape, dtype=bool)
    mask[order[:k]] = True
    return mask


def drift_variance_factor(m: int, t: np.ndarray, *, real_fraction: float = 0.0) -> np.ndarray:
    """v_t such that Var[p_t(i)] = p_0(i) (1 - p_0(i)) v_t under Wright–Fisher refitting by m counts.

    Each generation draws ``a = round(real_fraction * m)`` of its ``m`` items fresh from
    ``p0`` and the rest from the previous model (temperature 1; generation 1 draws all
    ``m`` from ``p0``). For a type (or any fixed set of types lumped into one) with real
    share x_0 = p_0(i), E[x_t] = x_0 for every t (a martingale; with fresh real data the
    mean stays x_0 too), and with r = a/m the variance obeys

    V_t = x_0 (1 - x_0)/m + V_{t-1} ((1 - r)^2 - (1 - r)/m),  V_0 = 0,

    so V_t = x_0 (1 - x_0) v_t with v_t = (1 - c^t) / (m (1 - c)), c = (1 - r)(1 - r - 1/m).
    Without real data v_t = 1 - (1 - 1/m)^t; with only real data v_t = 1/m.
    Explained in :ref:`sec-tails-mean-typical`.
    """
    _check_sizes(m=(m, 1))
    check_regime("mix", real_fraction)
    r = int(round(real_fraction * m)) / m
    c = (1 - r) * (1 - r - 1 / m)
    t = np.asarray(t, dtype=float)
    if c == 0.0:  # (almost) all real: every generation is a fresh draw
        return np.where(t > 0, 1.0 / m, 0.0)
    return -np.expm1(t * np.log(c)) / (m * (1 - c))


def tail_mass_variance(q0: float, m: int, t: np.ndarray, *, real_fraction: float = 0.0) -> np.ndarray:
    """Exact Var[Q_t] of the mass Q_t a refit-by-counts model puts on a fixed set of types.

    The types' identities do not matter to the multinomial: lumped together, a set with
    real mass q0 (e.g. the real distribution's least-probable q, :func:`vanishing_tails.core.metrics.tail_mass`)
    is one Wright–Fisher type, so Var[Q_t] = q0 (1 - q0) v_t with v_t from
    :func:`drift_variance_factor` — q0 (1 - q0) [1 - (1 - 1/m)^t] without real data.
    The words of the tail are not independent (their counts share one multinomial), so
    their sum does not concentrate the way a sum of independent words would; it stays
    close to q0 only while t is small against m.
    Explained in :ref:`sec-tails-mean-typical`.
    """
    if not 0.0 <= q0 <= 1.0:
        raise ValueError(f"q0 must lie in [0, 1]; got {q0!r}")
    return q0 * (1 - q0) * drift_variance_factor(m, t, real_fraction=real_fraction)


def expected_gini_simpson(p0: np.ndarray, m: int, t: np.ndarray, *, real_fraction: float = 0.0) -> np.ndarray:
    """E[1 - sum p_t^2] = (1 - 1/m)^t (1 - sum p_0^2) for Wright–Fisher refitting by m counts.

    One step: E[sum_i phat_i^2 | p] = sum_i (p_i^2 (1 - 1/m) + p_i/m), hence
    E[1 - sum phat^2 | p] = (1 - 1/m)(1 - sum p^2); iterate. In general (with a
    ``real_fraction`` of every generation drawn fresh from ``p0``) E[p_t(i)] = p_0(i)
    and E[sum p_t^2] = sum p_0^2 + sum_i Var[p_t(i)], so
    E[1 - sum p_t^2] = (1 - sum p_0^2)(1 - v_t) with v_t from :func:`drift_variance_factor`.
    Explained in :ref:`sec-tails-words`.
    """
    return float(metrics.gini_simpson(p0)) * (1 - drift_variance_factor(m, t, real_fraction=real_fraction))


# ----------------------------------------------------------------------------- generic loop
def recursive_fit(
    fit: Callable[[Any, np.random.Generator], Any],
    sample: Callable[[Any, int, np.random.Generator], Any],
    measure: Callable[..., dict[str, Any]],
    *,
    real_sample: Callable[[int, np.random.Generator], Any],
    n: int,
    generations: int,
    regime: str,
    real_fraction: float = 0.0,
    concat: Callable[[list[Any]], Any] | None = None,
    subsample: Callable[[Any, int, np.random.Generator], Any] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The one recursive-training loop for any model family (chapter 2).

    Callbacks (a family supplies them; the loop knows nothing about the model):

    * ``real_sample(n, rng) -> data``: ``n`` fresh items of real data;
    * ``fit(data, rng) -> model``: train a model from scratch on ``data``;
    * ``sample(model, n, rng) -> data``: ``n`` items generated by ``model``;
    * ``measure(model, generation[, rng]) -> {quantity: value}``: what to record about
      each generation's model. A two-argument ``measure`` is accepted too. ``rng`` is a
      stream of its own, so what is measured never changes the training trajectory.
    * ``concat(list_of_data) -> data`` joins data sets (needed by ``accumulate``,
      ``accumulate-subsample`` and ``mix``); ``subsample(data, n, rng)`` picks ``n``
      items without replacement (needed by ``accumulate-subsample``).

    Generation 0 is the model fit to ``n`` real items (a learned model of the real
    distribution; the real distribution itself has no parameters). Generation t >= 1 is
    fit to the data of the ``regime`` (module docstring): the previous model's ``n``
    samples (``replace``); the real sample plus every synthetic sample so far
    (``accumulate``, Gerstgrasser et al. 2024); ``n`` of those (``accumulate-subsample``,
    Kazdan et al. 2024); or ``round(real_fraction * n)`` fresh real items plus the rest
    from the previous model (``mix``; with ``real_fraction = 1`` nothing is sampled and
    every generation is trained on fresh real data alone, the no-collapse reference).

    *Batched chains.* The loop is indifferent to what ``data`` holds, so a family can
    carry ``C`` independent chains in one object (arrays with a leading chain axis,
    vectorised fit and sample). Its ``measure`` then returns, per quantity, an array of
    ``C`` values, and the frame gets a ``chain`` column.

    Returns one row per generation x quantity (x chain): ``generation``, ``quantity``,
    ``value`` (and ``chain`` when ``measure`` returns arrays). Same callbacks and seed
    give the same frame. Explained in :ref:`chapter-model-families`.
    """
    import inspect

    _check_sizes(n=(n, 1), generations=(generations, 0))
    check_regime(regime, real_fraction)
    if regime != "replace" and concat is None:
        raise ValueError(f"regime {regime!r} needs a concat function")
    if regime == "accumulate-subsample" and subsample is None:
        raise ValueError("regime 'accumulate-subsample' needs a subsample function")
    n_args = len(inspect.signature(measure).parameters)
    train_ss, measure_ss = np.random.SeedSequence(seed).spawn(2)
    rng, mrng = np.random.default_rng(train_ss), np.random.default_rng(measure_ss)
    rows: list[dict[str, Any]] = []
    batched = False

    def record(model: Any, t: int) -> None:
        nonlocal batched
        values = measure(model, t, mrng) if n_args >= 3 else measure(model, t)
        for k, v in values.items():
            v = np.asarray(v, dtype=float)
            if v.ndim == 0:
                rows.append({"generation": t, "quantity": k, "value": float(v)})
            else:
                batched = True
                rows.extend(
                    {"generation": t, "quantity": k, "chain": c, "value": float(x)} for c, x in enumerate(v.ravel())
                )

    real = real_sample(n, rng)
    pool = [real]
    model = fit(real, rng)
    record(model, 0)
    n_real = int(round(real_fraction * n)) if regime == "mix" else 0
    for t in range(1, generations + 1):
        if n_real == n:  # real_fraction = 1: fresh real data only
            data = real_sample(n, rng)
        else:
            synthetic = sample(model, n - n_real, rng)
            if regime == "replace":
                data = synthetic
            elif regime == "mix":
                data = concat([real_sample(n_real, rng), synthetic]) if n_real else synthetic
            else:
                pool.append(synthetic)
                data = concat(pool)
                if regime == "accumulate-subsample":
                    data = subsample(data, n, rng)
        model = fit(data, rng)
        record(model, t)
    out = pd.DataFrame(rows)
    if batched:
        out["chain"] = out["chain"].fillna(-1).astype(np.int64) if "chain" in out else -1
        out = out[["generation", "quantity", "chain", "value"]]
    return out
