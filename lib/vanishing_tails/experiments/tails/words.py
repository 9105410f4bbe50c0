"""Chapter 1's word experiment: one set of Wright–Fisher chains, every quantity the chapter
reads from it (diversity, vocabulary, the q-tail's mass and words, survival by frequency
decile), measured on the same chains in one pass.

The engine is the shared :func:`vanishing_tails.core.collapse.categorical_paths`; this
module only decides what to record. Explained in :ref:`sec-tails-words`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from vanishing_tails.core import collapse, metrics


@dataclass(frozen=True)
class WordRun:
    """The tidy frames of :func:`word_run`.

    ``chains``: one row per chain x generation with ``gini_simpson``, ``vocabulary``
    (share of the words with p_t > 0), ``tail_mass`` (Q_t, mass on the real
    distribution's least-probable q), ``tail_words`` (share of those tail words still
    present) and ``tail_word_ratio`` (the mean over tail words of p_t(i) / p_0(i): the
    martingale seen one word at a time). ``deciles``: one row per chain x generation x
    frequency decile (1 = most frequent) with ``surviving_share``. ``presence``: for
    generation 1 and the last generation, a boolean ``[chains, K]`` array, word present
    (p_t > 0) in each chain (what :func:`survival_probability` predicts).
    Explained in :ref:`sec-tails-words`.
    """

    chains: pd.DataFrame
    deciles: pd.DataFrame
    presence: dict[int, np.ndarray]


def frequency_deciles(p0: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Bin of each type when the types are ranked by ``p0`` (most frequent first) and cut into
    ``n_bins`` equal-count bins: 1 = the most frequent tenth, ``n_bins`` = the rarest.

    Explained in :ref:`sec-tails-words`.
    """
    p0 = metrics.as_distribution(p0, name="p0")
    if not isinstance(n_bins, (int, np.integer)) or not 1 <= n_bins <= p0.size:
        raise ValueError(f"n_bins must be an integer in [1, {p0.size}]; got {n_bins!r}")
    order = np.argsort(-p0, kind="stable")
    bins = np.empty(p0.size, dtype=np.int64)
    bins[order] = np.arange(p0.size) * n_bins // p0.size + 1
    return bins


def word_run(
    p0: np.ndarray,
    *,
    m: int,
    generations: int,
    chains: int,
    real_fraction: float,
    temperature: float,
    q: float,
    seed: int,
    n_bins: int = 10,
) -> WordRun:
    """Refit ``p0`` by the counts of ``m`` draws for ``generations`` generations, ``chains``
    independent chains, and record what chapter 1 reads (see :class:`WordRun`).

    Each generation draws ``round(real_fraction * m)`` words fresh from ``p0`` and the rest
    from the previous model at ``temperature`` (regime ``mix`` of
    :mod:`vanishing_tails.core.collapse`; ``real_fraction = 0`` is plain ``replace``).
    The same ``seed`` gives the same chains as
    :func:`vanishing_tails.core.collapse.categorical_chains` with those arguments.
    Explained in :ref:`sec-tails-words`.
    """
    p0 = metrics.as_distribution(p0, name="p0")
    tail = metrics.tail_set(p0, q)
    bins = frequency_deciles(p0, n_bins)
    onehot = np.eye(n_bins)[bins - 1]  # [K, n_bins]
    per_bin = onehot.sum(0)
    rows, dec, presence = [], [], {}
    for t, p in collapse.categorical_paths(
        p0, m, generations, chains, regime="mix", real_fraction=real_fraction, temperature=temperature, seed=seed
    ):
        alive = p > 0
        if t in (1, generations):
            presence[t] = alive
        rows.append(
            {
                "chain": np.arange(chains),
                "generation": np.full(chains, t),
                "gini_simpson": 1.0 - np.einsum("ij,ij->i", p, p),
                "vocabulary": alive.mean(axis=1),
                "tail_mass": p[:, tail].sum(axis=1),
                "tail_words": alive[:, tail].mean(axis=1),
                "tail_word_ratio": (p[:, tail] / p0[tail]).mean(axis=1),
            }
        )
        dec.append((alive.astype(float) @ onehot) / per_bin)  # [chains, n_bins]
    frame = pd.DataFrame({k: np.concatenate([r[k] for r in rows]) for k in rows[0]})
    shares = np.stack(dec)  # [generations + 1, chains, n_bins]
    deciles = pd.DataFrame(
        {
            "chain": np.tile(np.repeat(np.arange(chains), n_bins), generations + 1),
            "generation": np.repeat(np.arange(generations + 1), chains * n_bins),
            "decile": np.tile(np.arange(1, n_bins + 1), chains * (generations + 1)),
            "surviving_share": shares.ravel(),
        }
    )
    return WordRun(chains=frame, deciles=deciles, presence=presence)


def survival_probability(p0: np.ndarray, *, m: int, t: np.ndarray, real_fraction: float) -> np.ndarray:
    """P(word i present at generation t), shape ``[len(t), K]``, under refitting by ``m`` counts at T = 1
    (``p0``: the words' real shares, any subset of a distribution).

    Generation 1 counts K_1 ~ Binomial(m, p0_i); generation t >= 2 draws a = round(r m)
    words fresh from p0 (r = ``real_fraction``) and m − a from the previous model, so
    K_t = Binomial(a, p0_i) + Binomial(m − a, K_{t−1}/m). In the Poisson limit of
    Wright–Fisher (m → ∞ at a fixed count; Kimura 1955, a Galton–Watson process with
    Poisson(1 − r) offspring and immigration) the probability generating functions give
    exactly

    P(K_t = 0) = (1 − p0_i (1 − u_{t−1}))^m · Π_{j=0}^{t−2} (1 − p0_i (1 − u_j))^a,

    with u_0 = 0 and u_{j+1} = exp(−(1 − r)(1 − u_j)) (u_j: the chance that one copy's
    line is extinct within j generations). For rare words, log(1 − p0(1 − u)) ≈ −p0(1 − u),
    so survival depends on a word only through its expected count m·p0: without real data
    P(present at t) = 1 − exp(−m p0 (1 − u_{t−1})), and generation 1's one finite sample
    (1 − (1 − p0)^m) is followed by the compounding factor (1 − u_{t−1}) ≈ 2/(t − 1) of a
    critical branching process. The Binomial's own correction is of order count/m.
    Explained in :ref:`sec-tails-survival`.
    """
    p0 = np.asarray(p0, dtype=float)  # each word's real share (any subset of words: need not sum to 1)
    if p0.ndim != 1 or np.any(~np.isfinite(p0)) or np.any((p0 < 0) | (p0 > 1)):
        raise ValueError("p0 must be a 1-D array of probabilities in [0, 1]")
    if not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"m must be an integer >= 1; got {m!r}")
    if not 0.0 <= real_fraction <= 1.0:
        raise ValueError(f"real_fraction must lie in [0, 1]; got {real_fraction!r}")
    t = np.atleast_1d(np.asarray(t))
    if t.size and (t.min() < 0 or not np.issubdtype(t.dtype, np.integer)):
        raise ValueError(f"t must hold integer generations >= 0; got {t!r}")
    a = int(round(real_fraction * m))
    r = a / m
    horizon = int(t.max()) if t.size else 0
    u = np.zeros(max(horizon, 1))
    for j in range(1, u.size):
        u[j] = np.exp(-(1 - r) * (1 - u[j - 1]))
    log_keep = np.log1p(-p0[None, :] * (1 - u[:, None]))  # [horizon, K]: log(1 - p0 (1 - u_j))
    immigration = np.concatenate([np.zeros((1, p0.size)), np.cumsum(a * log_keep, axis=0)])  # sum_{j<=s-1}
    out = np.empty((t.size, p0.size))
    for k, tk in enumerate(t):
        if tk == 0:
            out[k] = 1.0
            continue
        log_absent = m * log_keep[tk - 1] + immigration[tk - 1]
        out[k] = -np.expm1(log_absent)
    return out
