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
    frequency decile (1 = most frequent) with ``surviving_share``.
    Explained in :ref:`sec-tails-words`.
    """

    chains: pd.DataFrame
    deciles: pd.DataFrame


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
    rows, dec = [], []
    for t, p in collapse.categorical_paths(
        p0, m, generations, chains, regime="mix", real_fraction=real_fraction, temperature=temperature, seed=seed
    ):
        alive = p > 0
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
    return WordRun(chains=frame, deciles=deciles)
