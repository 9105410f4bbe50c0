"""Chapter 7's synthetic task: sub-populations along a line, a curved boundary, three knobs.

An input is ``x = (u, v)``. The position ``u`` lies in ``[-1, 1]``, cut into
``n_segments`` equal **segments** — the sub-populations. The truth is a curved boundary,

    y = 1[v > g(u)],   g(u) = amplitude · sin(2π u / period + φ),

with a phase ``φ`` drawn per task (each seed is a new task). A training set of ``budget``
examples is made by a generator with three independent knobs:

* **quality** — a share ``noise`` of the labels is flipped (exactly ``round(noise · n)`` of
  them, at random positions); quality is ``1 − noise``;
* **diversity** — the data covers the ``covered`` central segments, evenly (example ``i``
  falls in covered segment ``i mod covered``), ``u`` uniform inside its segment;
* **complexity** — a share ``hard_share`` of the examples is *hard*: drawn inside the band
  ``|v − g(u)| < hard_band`` around the boundary; the others have the natural ``v ~ N(0, 1)``.

Each knob moves only its own measured property (:func:`measure`): the label-noise rate,
the effective number of segments, the share of examples inside the band. Test sets have
clean labels and natural ``v``: **in-distribution** (ID) over the ``n_core`` central
segments, which every training set covers, and **out-of-distribution** (OOD) over the
others. The *real* distribution of the self-improvement loop has ``u ~ N(0, real_sd²)``
truncated to ``[-1, 1]``: its outer segments are its rare sub-populations.

Every array carries a leading batch axis ``B`` (one task per row); every function takes
its seed explicitly and its sizes from the chapter's spec
(:mod:`vanishing_tails.experiments.quality.spec`), which holds every default.
Explained in :ref:`sec-quality-task`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

DTYPE = torch.float64


def generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (pass a named seed stream).

    Explained in :ref:`sec-quality-task`.
    """
    g = torch.Generator()
    g.manual_seed(int(seed) % (2**63))
    return g


def make_phases(n_tasks: int, *, seed: int) -> torch.Tensor:
    """``n_tasks`` boundary phases φ, uniform on ``[0, 2π)``: one task per row.

    Explained in :ref:`sec-quality-task`.
    """
    return 2 * math.pi * torch.rand(n_tasks, generator=generator(seed), dtype=DTYPE)


def boundary(u: torch.Tensor, phase: torch.Tensor, *, amplitude: float, period: float) -> torch.Tensor:
    """The true boundary ``g(u) = amplitude · sin(2π u / period + φ)``; ``u`` is ``[B, n]``.

    Explained in :ref:`sec-quality-task`.
    """
    return amplitude * torch.sin(2 * math.pi * u / period + phase[:, None])


def segment_of(u: torch.Tensor, n_segments: int) -> torch.Tensor:
    """The segment (sub-population) index of each position ``u`` in ``[-1, 1]``.

    Explained in :ref:`sec-quality-task`.
    """
    return ((u + 1) / 2 * n_segments).floor().clamp(0, n_segments - 1).long()


def central_segments(count: int, n_segments: int) -> np.ndarray:
    """The ``count`` central segments' indices (``count`` and ``n_segments`` of equal parity).

    Explained in :ref:`sec-quality-task`.
    """
    if not 1 <= count <= n_segments or (n_segments - count) % 2:
        raise ValueError(f"need 1 <= count <= n_segments and equal parity; got {count} of {n_segments}")
    first = (n_segments - count) // 2
    return np.arange(first, first + count)


def _in_segments(segments: np.ndarray, n: int, batch: int, n_segments: int, g: torch.Generator) -> torch.Tensor:
    """Positions ``[batch, n]``: example i in ``segments[i mod len]``, uniform inside it."""
    seg = torch.as_tensor(np.resize(segments, n), dtype=DTYPE)
    width = 2.0 / n_segments
    return -1 + width * (seg[None, :] + torch.rand(batch, n, generator=g, dtype=DTYPE))


def _exact_share(share: float, n: int, batch: int, g: torch.Generator) -> torch.Tensor:
    """A boolean mask ``[batch, n]`` with exactly ``round(share · n)`` True per row, at random places."""
    k = int(round(share * n))
    ranks = torch.rand(batch, n, generator=g, dtype=DTYPE).argsort(dim=1).argsort(dim=1)
    return ranks < k


def labels(u: torch.Tensor, v: torch.Tensor, phase: torch.Tensor, *, amplitude: float, period: float) -> torch.Tensor:
    """Clean labels ``1[v > g(u)]`` as floats.

    Explained in :ref:`sec-quality-task`.
    """
    return (v > boundary(u, phase, amplitude=amplitude, period=period)).to(DTYPE)


def knob_data(
    phase: torch.Tensor,
    *,
    budget: int,
    n_segments: int,
    covered: int,
    noise: float,
    hard_share: float,
    hard_band: float,
    amplitude: float,
    period: float,
    seed: int,
) -> dict[str, torch.Tensor]:
    """One training set per task from the three-knob generator (module docstring).

    Returns ``u``, ``v``, ``y`` (the labels, noisy), ``y_clean`` and ``hard`` (the mask of
    examples drawn from the band), each ``[B, budget]``.
    Explained in :ref:`sec-quality-knobs`.
    """
    g = generator(seed)
    batch = phase.shape[0]
    u = _in_segments(central_segments(covered, n_segments), budget, batch, n_segments, g)
    hard = _exact_share(hard_share, budget, batch, g)
    gu = boundary(u, phase, amplitude=amplitude, period=period)
    natural = torch.randn(batch, budget, generator=g, dtype=DTYPE)
    band = gu + hard_band * (2 * torch.rand(batch, budget, generator=g, dtype=DTYPE) - 1)
    v = torch.where(hard, band, natural)
    y_clean = (v > gu).to(DTYPE)
    flip = _exact_share(noise, budget, batch, g)
    y = torch.where(flip, 1 - y_clean, y_clean)
    return {"u": u, "v": v, "y": y, "y_clean": y_clean, "hard": hard}


def test_data(
    phase: torch.Tensor,
    segments: np.ndarray,
    *,
    n: int,
    n_segments: int,
    amplitude: float,
    period: float,
    seed: int,
) -> dict[str, torch.Tensor]:
    """A clean test set per task, evenly over ``segments``, natural ``v ~ N(0, 1)``.

    Explained in :ref:`sec-quality-knobs`.
    """
    g = generator(seed)
    batch = phase.shape[0]
    u = _in_segments(np.asarray(segments), n, batch, n_segments, g)
    v = torch.randn(batch, n, generator=g, dtype=DTYPE)
    return {"u": u, "v": v, "y": labels(u, v, phase, amplitude=amplitude, period=period)}


def real_positions(shape: tuple[int, int], *, real_sd: float, g: torch.Generator) -> torch.Tensor:
    """Positions from the real distribution, ``N(0, real_sd²)`` truncated to ``[-1, 1]``.

    Explained in :ref:`sec-quality-loop`.
    """
    from scipy import special

    lo = 0.5 * (1 + special.erf(-1 / (real_sd * math.sqrt(2))))
    p = lo + (1 - 2 * lo) * torch.rand(*shape, generator=g, dtype=DTYPE)  # inverse-CDF sampling
    return real_sd * math.sqrt(2) * torch.special.erfinv(2 * p - 1)


def real_data(
    phase: torch.Tensor, n: int, *, real_sd: float, amplitude: float, period: float, seed: int
) -> dict[str, torch.Tensor]:
    """``n`` real examples per task: ``u`` from :func:`real_positions`, ``v ~ N(0, 1)``, clean labels.

    Explained in :ref:`sec-quality-loop`.
    """
    g = generator(seed)
    batch = phase.shape[0]
    u = real_positions((batch, n), real_sd=real_sd, g=g)
    v = torch.randn(batch, n, generator=g, dtype=DTYPE)
    y = labels(u, v, phase, amplitude=amplitude, period=period)
    return {"u": u, "v": v, "y": y, "y_clean": y.clone()}


def real_segment_probabilities(n_segments: int, *, real_sd: float) -> np.ndarray:
    """The real distribution's probability of each segment (exact, from the normal CDF).

    Explained in :ref:`sec-quality-loop`.
    """
    from scipy import stats

    edges = np.linspace(-1, 1, n_segments + 1)
    cdf = stats.norm.cdf(edges / real_sd)
    return np.diff(cdf) / (cdf[-1] - cdf[0])


def effective_segments(segment: torch.Tensor, n_segments: int) -> np.ndarray:
    """Effective number of segments in each row of ``segment`` ``[B, n]``: ``exp`` of the
    Shannon entropy of the segment shares (the Hill number of order 1).

    Explained in :ref:`sec-quality-knobs`.
    """
    counts = torch.zeros(segment.shape[0], n_segments, dtype=DTYPE)
    counts.scatter_add_(1, segment, torch.ones_like(segment, dtype=DTYPE))
    p = counts / counts.sum(1, keepdim=True)
    h = -(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum(1)
    return h.exp().numpy()


def measure(
    data: dict[str, torch.Tensor],
    phase: torch.Tensor,
    *,
    n_segments: int,
    hard_band: float,
    amplitude: float,
    period: float,
) -> dict[str, np.ndarray]:
    """The three measured properties of each training set (one value per row):
    ``noise_rate`` (share of labels that disagree with the truth), ``diversity`` (effective
    number of segments, :func:`effective_segments`) and ``complexity`` (share of examples
    inside the band ``|v − g(u)| < hard_band``).

    Explained in :ref:`sec-quality-knobs`.
    """
    u, v = data["u"], data["v"]
    truth = labels(u, v, phase, amplitude=amplitude, period=period)
    margin = (v - boundary(u, phase, amplitude=amplitude, period=period)).abs()
    return {
        "noise_rate": (data["y"] != truth).to(DTYPE).mean(1).numpy(),
        "diversity": effective_segments(segment_of(u, n_segments), n_segments),
        "complexity": (margin < hard_band).to(DTYPE).mean(1).numpy(),
    }
