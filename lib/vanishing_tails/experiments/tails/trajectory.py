"""Chapter 1's experiments in the book's common trajectory form (:data:`vanishing_tails.core.tails.COLUMNS`),
so that the closing chapter can set them beside every other experiment.

Two models, each under the chapter's data regimes, as named *arms*:

================================  ==========  ==============================================
arm                               mechanism   what it is
================================  ==========  ==============================================
``words-replace``                 resampling  English word frequencies refit by the counts of
                                              ``m`` draws at T = 1 (Wright–Fisher)
``words-tempered``                tilt        the same, drawing at ``temperature`` < 1
``words-accumulate``              resampling  refit on all counts so far
``words-mix-<rf>``                resampling  ``rf`` of every corpus drawn fresh from the real
                                              frequencies (one arm per ``real_fractions`` value)
``gauss-replace``                 resampling  N(0, 1) refit (MLE) to ``n`` of its own samples
``gauss-tempered``                tilt        the same, sampling at ``temperature``
``gauss-accumulate``              resampling  refit on all samples so far
``gauss-accumulate-subsample``    resampling  refit on a random ``n`` of all samples so far
``gauss-mix-<rf>``                resampling  ``rf`` of every sample fresh from N(0, 1)
================================  ==========  ==============================================

Explained in :ref:`sec-tails-trajectory`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

from vanishing_tails.core import collapse, data, metrics, tails
from vanishing_tails.core.seeds import streams

__all__ = ["GAUSS_BIN_WIDTH", "GAUSS_ERROR_SIGMAS", "gaussian_measures", "trajectory"]

GAUSS_BIN_WIDTH = 0.1  # real standard deviations per bin of the Gaussian's support estimator
GAUSS_ERROR_SIGMAS = 4.0  # beyond this many real s.d. the real law "barely has" mass (6.3e-5)


def _gauss_edges() -> np.ndarray:
    inner = np.arange(-GAUSS_ERROR_SIGMAS, GAUSS_ERROR_SIGMAS + GAUSS_BIN_WIDTH / 2, GAUSS_BIN_WIDTH)
    return np.concatenate([[-np.inf], inner, [np.inf]])


def gaussian_measures(mean: np.ndarray, variance: np.ndarray, *, q: float, n_support: int) -> pd.DataFrame:
    """The common tail measures of N(mean, variance) models against the real N(0, 1) (one row per element).

    * ``support``: expected distinct bins among ``n_support`` draws, relative to the same
      for N(0, 1); bins of width :data:`GAUSS_BIN_WIDTH` on ±:data:`GAUSS_ERROR_SIGMAS`
      plus the two outer half-lines (a fine binning of the real law's support).
    * ``q_tail_mass``: model mass beyond ±z, z = Φ⁻¹(1 − q/2) (the real law's least-probable
      q is its two q/2-quantile tails), divided by q. Exact.
    * ``error_mass``: model mass beyond ±:data:`GAUSS_ERROR_SIGMAS` (where N(0, 1) has
      6.3·10⁻⁵: mass the real law "barely has"; it grows as the mean wanders). Exact.
    * ``mode_share``: the largest bin's mass (N(0, 1): about 0.04; a collapsed model: 1).
    * ``kl_from_start``: KL(N(μ, σ²) ‖ N(0, 1)) = (σ² + μ² − 1 − log σ²)/2 nats, exact.
    * ``quality``: E_model[log φ(X)] − E_φ[log φ(X)] = (1 − σ² − μ²)/2 nats: the real
      log-likelihood of a model sample relative to a real one (0 at the start, > 0 when the
      model's outputs are more typical than real ones — what mode-seeking buys).

    Explained in :ref:`sec-tails-trajectory`.
    """
    if not 0 < q < 1:
        raise ValueError(f"q must lie in (0, 1); got {q!r}")
    if not isinstance(n_support, (int, np.integer)) or n_support < 1:
        raise ValueError(f"n_support must be an integer >= 1; got {n_support!r}")
    mean = np.asarray(mean, dtype=float).ravel()
    var = np.maximum(np.asarray(variance, dtype=float).ravel(), 1e-300)
    sd = np.sqrt(var)
    edges = _gauss_edges()
    cdf = special.ndtr((edges[None, :] - mean[:, None]) / sd[:, None])
    binned = np.clip(np.diff(cdf, axis=1), 0.0, 1.0)
    real = np.diff(special.ndtr(edges))
    z = float(stats.norm.isf(q / 2))
    return pd.DataFrame(
        {
            "support": metrics.expected_distinct(binned, n_support) / metrics.expected_distinct(real, n_support),
            "q_tail_mass": collapse.gaussian_tail_mass(mean, sd, z) / q,
            "error_mass": np.clip(collapse.gaussian_tail_mass(mean, sd, GAUSS_ERROR_SIGMAS), 0.0, 1.0),
            "mode_share": binned.max(axis=1),
            "kl_from_start": np.maximum(0.5 * (var + mean**2 - 1.0 - np.log(var)), 0.0),
            "quality": 0.5 * (1.0 - var - mean**2),
        }
    )


def _frame(measures: pd.DataFrame, arm: str, mechanism: str, replicates: int, steps: int) -> pd.DataFrame:
    out = measures.reset_index(drop=True)
    out.insert(0, "mechanism", mechanism)
    out.insert(0, "step", np.repeat(np.arange(steps), replicates))
    out.insert(0, "replicate", np.tile(np.arange(replicates), steps))
    out.insert(0, "arm", arm)
    out.insert(0, "experiment", "tails")
    return out


def trajectory(
    *,
    top_n: int,
    m: int,
    word_generations: int,
    word_chains: int,
    n: int,
    generations: int,
    n_seeds: int,
    q: float,
    temperature: float,
    real_fraction: float,
    real_fractions: Sequence[float],
    n_support: int,
    seed: int,
) -> pd.DataFrame:
    """Chapter 1's arms (module docstring) in the common form: one row per arm x replicate x step,
    columns ``experiment, arm, replicate, step, mechanism`` + :data:`vanishing_tails.core.tails.COLUMNS`.

    Words: the ``top_n`` most frequent English words (:func:`vanishing_tails.core.data.english_word_frequencies`)
    refit by ``m`` counts for ``word_generations`` generations, ``word_chains`` independent
    chains (the replicates; :func:`vanishing_tails.core.collapse.categorical_paths`), measured by
    :func:`vanishing_tails.core.tails.categorical_measures` with reference and start the real
    frequencies p0: ``support`` = expected distinct words in ``n_support`` draws relative to p0,
    ``q_tail_mass`` = Q_t / q0 on p0's least-probable ``q``, ``error_mass`` = 0 (refitting by
    counts never invents a word), ``mode_share`` = the top word's share, ``kl_from_start`` =
    KL(p_t ‖ p0), ``quality`` = Σ p_t log p0 + H(p0) (the real log-likelihood of a model
    word relative to a real one, nats; > 0 when the model says more common words).

    Gaussian: N(0, 1) refit by maximum likelihood to ``n`` samples for ``generations``
    generations, ``n_seeds`` chains (:func:`vanishing_tails.core.collapse.gaussian_chains`),
    measured by :func:`gaussian_measures` (binned support, exact q-quantile tail mass, mass
    beyond ±4 as error mass, exact KL and log-likelihood quality).

    ``temperature`` is the tempered arms' sampling temperature (mechanism ``tilt`` when < 1).
    ``real_fraction`` is fresh real data in every generation of every arm, a floor (each
    ``mix`` arm gets max(rf, real_fraction)); with ``real_fraction = 1`` (the null control)
    every arm, the pooled ones included, is refit on fresh real data each generation and
    nothing compounds. The ``mix`` arms (one per ``real_fractions`` value, named by the
    nominal value) let chapter 10 price real data. Step 0 is the real distribution itself
    (every measure at its neutral value). All streams derive from ``seed`` through
    :func:`vanishing_tails.core.seeds.streams`. Explained in :ref:`sec-tails-trajectory`.
    """
    if not 0.0 <= real_fraction <= 1.0:
        raise ValueError(f"real_fraction must lie in [0, 1]; got {real_fraction!r}")
    real_fractions = [float(r) for r in real_fractions]
    if not real_fractions or any(not 0.0 <= r <= 1.0 for r in real_fractions):
        raise ValueError(f"real_fractions must be a non-empty list of values in [0, 1]; got {real_fractions!r}")
    if not 0.0 < temperature <= 1.0:
        raise ValueError(f"temperature must lie in (0, 1]; got {temperature!r}")
    for name, value, low in (("n_support", n_support, 1), ("word_chains", word_chains, 1), ("n_seeds", n_seeds, 1)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
    seeds = streams(seed)
    tilt = "tilt" if temperature < 1 else "resampling"
    null = real_fraction >= 1.0
    floor = dict(regime="mix", real_fraction=real_fraction)

    def pooled(regime: str) -> dict:  # the null control refits even the pooled arms on fresh real data
        return dict(regime="mix", real_fraction=1.0) if null else dict(regime=regime)

    word_arms = [
        ("words-replace", "resampling", floor, 1.0),
        ("words-tempered", tilt, floor, temperature),
        ("words-accumulate", "resampling", pooled("accumulate"), 1.0),
        *[
            (f"words-mix-{rf:g}", "resampling", dict(regime="mix", real_fraction=max(rf, real_fraction)), 1.0)
            for rf in real_fractions
        ],
    ]
    gauss_arms = [
        ("gauss-replace", "resampling", floor, 1.0),
        ("gauss-tempered", tilt, floor, temperature),
        ("gauss-accumulate", "resampling", pooled("accumulate"), 1.0),
        ("gauss-accumulate-subsample", "resampling", pooled("accumulate-subsample"), 1.0),
        *[
            (f"gauss-mix-{rf:g}", "resampling", dict(regime="mix", real_fraction=max(rf, real_fraction)), 1.0)
            for rf in real_fractions
        ],
    ]
    p0 = data.english_word_frequencies(top_n)["p"].to_numpy()
    quality0 = float(metrics.entropy(p0))
    log_p0 = np.log(p0)
    frames = []
    for arm, mechanism, regime, temp in word_arms:
        measures = pd.concat(
            [
                tails.categorical_measures(p, p0, p0, q=q, n=n_support, quality=p @ log_p0 + quality0)
                for _, p in collapse.categorical_paths(
                    p0, m, word_generations, word_chains, **regime, temperature=temp, seed=seeds["trajectory", arm]
                )
            ],
            ignore_index=True,
        )
        frames.append(_frame(measures, arm, mechanism, word_chains, word_generations + 1))
    for arm, mechanism, regime, temp in gauss_arms:
        g = collapse.gaussian_chains(
            n, generations, n_seeds, **regime, fit="mle", temperature=temp, seed=seeds["trajectory", arm]
        )
        measures = gaussian_measures(g["mean"].to_numpy(), g["variance"].to_numpy(), q=q, n_support=n_support)
        frames.append(_frame(measures, arm, mechanism, n_seeds, generations + 1))
    return pd.concat(frames, ignore_index=True)
