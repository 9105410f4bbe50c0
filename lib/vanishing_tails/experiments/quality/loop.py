"""Chapter 7's self-improvement loop: a model that writes, labels and filters its own next
training set, generation after generation — and what its reported quality does not show.

Generation 0 fits a model to ``budget`` real examples. Generation ``t ≥ 1``:

1. **generate** inputs like the current training set: pick training inputs at random and
   jitter them (``x + jitter · N(0, I)``, positions reflected into ``[-1, 1]``), a kernel
   density estimate of the model's own data;
2. **label** them with the current model (its most probable class);
3. **filter** by confidence: keep the share ``keep`` of candidates on which the model is
   most confident, ``max(p, 1 − p)`` — the common recipe;
4. **mix** a share ``real_fraction`` of fresh real examples in (0: pure self-training);
5. **fit** the next model to the result. A quarter more is made the same way and held out:
   the model's accuracy on it is the **reported quality**, the score such loops publish
   (at generation 0, accuracy on held-out real data).

Beside it the loop records what the score does not show: the **diversity** of the training
set (its effective number of segments, relative to the real distribution's), the
accuracy on the clean OOD test set (the real distribution's rare outer segments) and on
the ID test set, and the book's common tail measures (:data:`vanishing_tails.core.tails.COLUMNS`)
of the training set's distribution over *outcomes* = (segment, label right or wrong): a
wrong label is an outcome the real data never has (error mass), the real distribution's
rarest segments are its q-tail. ``kl_from_start`` is measured from each replicate's own
start, the outcome distribution of its generation-0 training set, both mixed with a share
:data:`START_SMOOTHING` of the uniform law (:func:`vanishing_tails.core.tails.kl_from_start`: 0
at generation 0). Arms differ only in ``real_fraction``; every arm of a replicate starts from the
same generation-0 model and training set.
Explained in :ref:`sec-quality-loop`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from vanishing_tails.core import tails

from . import grid, model, task

EXPERIMENT = "quality-loop"
MECHANISM = "tilt"  # the confidence filter tilts the data toward where the model is sure
VALIDATION_SHARE = 0.25  # the held-out share the loop reports its quality on
START_SMOOTHING = 1e-3  # kl_from_start: both distributions mixed with this share of the uniform law
LOOP_PARAMS = (
    "n_seeds",
    "budget",
    "generations",
    "n_segments",
    "n_core",
    "keep",
    "jitter",
    "real_sd",
    "real_fraction",
    "real_mix",
    "amplitude",
    "period",
    "ridge",
    "newton_steps",
    "n_test",
    "q",
    "n_distinct",
)  # the spec parameters :func:`run_loop` and :func:`trajectory` take


def outcome_reference(n_segments: int, *, real_sd: float) -> np.ndarray:
    """The real distribution over the ``2K`` outcomes (segment ``k``, label right/wrong):
    index ``2k`` (right) carries the segment's real probability, ``2k + 1`` (wrong) zero.

    Explained in :ref:`sec-quality-loop`.
    """
    ref = np.zeros(2 * n_segments)
    ref[0::2] = task.real_segment_probabilities(n_segments, real_sd=real_sd)
    return ref


def outcome_distribution(data: dict[str, torch.Tensor], *, n_segments: int) -> np.ndarray:
    """Each training set's empirical distribution over the outcomes of
    :func:`outcome_reference`, ``[B, 2K]``.

    Explained in :ref:`sec-quality-loop`.
    """
    seg = task.segment_of(data["u"], n_segments)
    idx = 2 * seg + (data["y"] != data["y_clean"]).long()
    counts = torch.zeros(seg.shape[0], 2 * n_segments, dtype=task.DTYPE)
    counts.scatter_add_(1, idx, torch.ones_like(idx, dtype=task.DTYPE))
    return (counts / counts.sum(1, keepdim=True)).numpy()


def _reflect(u: torch.Tensor) -> torch.Tensor:
    u = torch.where(u > 1, 2 - u, u)
    return torch.where(u < -1, -2 - u, u).clamp(-1, 1)


def _synthetic(theta, data, phase, m, *, keep, jitter, n_segments, amplitude, period, g):
    """``m`` confidence-filtered examples per row, generated and labelled by the model."""
    batch, n_have = data["u"].shape
    n_cand = int(math.ceil(m / keep))
    pick = torch.randint(0, n_have, (batch, n_cand), generator=g)
    u = _reflect(data["u"].gather(1, pick) + jitter * torch.randn(batch, n_cand, generator=g, dtype=task.DTYPE))
    v = data["v"].gather(1, pick) + jitter * torch.randn(batch, n_cand, generator=g, dtype=task.DTYPE)
    p = model.predict(theta, u, v, n_segments=n_segments)
    top = torch.maximum(p, 1 - p).argsort(1, descending=True)[:, :m]
    u, v, p = u.gather(1, top), v.gather(1, top), p.gather(1, top)
    return {
        "u": u,
        "v": v,
        "y": (p > 0.5).to(task.DTYPE),
        "y_clean": task.labels(u, v, phase, amplitude=amplitude, period=period),
    }


def _split(data, n, g):
    """Shuffle each row and split it into the first ``n`` (training) and the rest (held out)."""
    batch, total = data["u"].shape
    order = torch.rand(batch, total, generator=g, dtype=task.DTYPE).argsort(1)
    shuffled = {k: t.gather(1, order) for k, t in data.items()}
    return {k: t[:, :n] for k, t in shuffled.items()}, {k: t[:, n:] for k, t in shuffled.items()}


def run_loop(
    *,
    n_seeds: int,
    budget: int,
    generations: int,
    n_segments: int,
    n_core: int,
    keep: float,
    jitter: float,
    real_sd: float,
    real_fraction: float,
    real_mix: float,
    amplitude: float,
    period: float,
    ridge: float,
    newton_steps: int,
    n_test: int,
    q: float,
    n_distinct: int,
    seed: int,
) -> pd.DataFrame:
    """Run the loop (module docstring) for ``n_seeds`` replicates (tasks) in two arms:
    ``self-trained`` with ``real_fraction`` fresh real data per generation and ``real-mixed``
    with ``max(real_mix, real_fraction)``. One row per arm, replicate and generation
    (``step``), with ``reported_quality``, ``diversity`` (effective segments / the real
    distribution's), ``ood_acc``, ``id_acc``, ``error_rate`` (wrong labels in the training
    set) and the common tail measures (:data:`vanishing_tails.core.tails.COLUMNS`;
    ``quality`` is the reported quality).
    Explained in :ref:`sec-quality-loop`.
    """
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1]; got {keep}")
    phase = task.make_phases(n_seeds, seed=grid.substream(seed, 0))
    tests = grid.test_sets(
        phase,
        n_segments=n_segments,
        n_core=n_core,
        n_test=n_test,
        amplitude=amplitude,
        period=period,
        seed=grid.substream(seed, 1),
    )
    n_val = int(round(VALIDATION_SHARE * budget))
    total = budget + n_val
    real_kw = dict(real_sd=real_sd, amplitude=amplitude, period=period)
    fit_kw = dict(ridge=ridge, newton_steps=newton_steps)
    ref = outcome_reference(n_segments, real_sd=real_sd)
    d_real = float(np.exp(-(ref[ref > 0] * np.log(ref[ref > 0])).sum()))

    g0 = task.generator(grid.substream(seed, 2))
    train0, val0 = _split(task.real_data(phase, total, **real_kw, seed=grid.substream(seed, 3)), budget, g0)
    theta0 = model.fit(model.features(train0["u"], train0["v"], n_segments=n_segments), train0["y"], **fit_kw)
    start = outcome_distribution(train0, n_segments=n_segments)  # each replicate's step 0: KL 0 there

    frames = []
    arms = {"self-trained": real_fraction, "real-mixed": max(real_mix, real_fraction)}
    for a, (arm, rho) in enumerate(arms.items()):
        g = task.generator(grid.substream(seed, 4, a))
        train, val, theta = train0, val0, theta0
        for t in range(generations + 1):
            if t > 0:
                m_real = int(round(rho * total))
                synth = _synthetic(
                    theta, train, phase, total - m_real, keep=keep, jitter=jitter,
                    n_segments=n_segments, amplitude=amplitude, period=period, g=g,
                )  # fmt: skip
                real = task.real_data(phase, m_real, **real_kw, seed=grid.substream(seed, 5, a, t))
                train, val = _split({k: torch.cat([synth[k], real[k]], 1) for k in synth}, budget, g)
                theta = model.fit(model.features(train["u"], train["v"], n_segments=n_segments), train["y"], **fit_kw)
            quality = model.accuracy(theta, val, n_segments=n_segments).numpy()
            p = outcome_distribution(train, n_segments=n_segments)
            measures = tails.categorical_measures(
                p, ref, start, q=q, n=n_distinct, quality=quality, smoothing=START_SMOOTHING
            )
            frames.append(
                measures.assign(
                    experiment=EXPERIMENT,
                    arm=arm,
                    replicate=np.arange(n_seeds),
                    step=t,
                    mechanism=MECHANISM,
                    real_fraction=rho,
                    reported_quality=quality,
                    diversity=task.effective_segments(task.segment_of(train["u"], n_segments), n_segments) / d_real,
                    ood_acc=model.accuracy(theta, tests["ood"], n_segments=n_segments).numpy(),
                    id_acc=model.accuracy(theta, tests["id"], n_segments=n_segments).numpy(),
                    error_rate=(train["y"] != train["y_clean"]).to(task.DTYPE).mean(1).numpy(),
                )
            )
    return pd.concat(frames, ignore_index=True)


def trajectory(
    *,
    n_seeds: int,
    budget: int,
    generations: int,
    n_segments: int,
    n_core: int,
    keep: float,
    jitter: float,
    real_sd: float,
    real_fraction: float,
    real_mix: float,
    amplitude: float,
    period: float,
    ridge: float,
    newton_steps: int,
    n_test: int,
    q: float,
    n_distinct: int,
    seed: int,
) -> pd.DataFrame:
    """The loop's common tail measures per arm, replicate and generation: the columns
    ``experiment, arm, replicate, step, mechanism`` and :data:`vanishing_tails.core.tails.COLUMNS`
    (:func:`run_loop` with the same arguments, which the spec's presets set). Here ``support``
    counts distinct (segment, label right/wrong) outcomes of the training set, ``q_tail_mass``
    is its mass on the real distribution's rarest segments, ``error_mass`` its share of wrong
    labels, ``kl_from_start`` the distance from the replicate's generation-0 training set
    (:func:`vanishing_tails.core.tails.kl_from_start`, smoothed, 0 at step 0) and ``quality``
    the loop's reported quality.
    Explained in :ref:`sec-quality-loop`.
    """
    frame = run_loop(
        n_seeds=n_seeds, budget=budget, generations=generations, n_segments=n_segments, n_core=n_core,
        keep=keep, jitter=jitter, real_sd=real_sd, real_fraction=real_fraction, real_mix=real_mix,
        amplitude=amplitude, period=period, ridge=ridge, newton_steps=newton_steps, n_test=n_test, q=q,
        n_distinct=n_distinct, seed=seed,
    )  # fmt: skip
    return frame[["experiment", "arm", "replicate", "step", "mechanism", *tails.COLUMNS]]
