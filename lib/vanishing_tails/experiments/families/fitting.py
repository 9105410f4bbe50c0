"""Fitting helpers shared by chapter 2's model families: a content hash of a data set and
a memoised ``fit(data, rng)`` built from ``train(data, seed)``.

Explained in :ref:`sec-families-loop`.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import torch


def digest(data: Any) -> str:
    """A content hash of a data set (array, tensor, or list of strings).

    Explained in :ref:`sec-families-loop`.
    """
    h = hashlib.sha1()
    if isinstance(data, (list, tuple)):
        for item in data:
            h.update(str(item).encode("utf-8", "surrogatepass"))
            h.update(b"\x00")
    else:
        arr = np.ascontiguousarray(data.detach().cpu().numpy() if hasattr(data, "detach") else data)
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


_FIT_CACHE: OrderedDict = OrderedDict()
_FIT_CACHE_SIZE = 64  # small models: every fit of one chapter run fits, whatever runs alongside
_FIT_LOCK = threading.Lock()  # families may train in parallel threads


def seeded_fit(train: Callable[[Any, int], Any], config: Hashable) -> Callable[[Any, np.random.Generator], Any]:
    """Turn ``train(data, seed) -> model`` into the loop's ``fit(data, rng)``, memoised.

    The fit draws exactly one integer seed from ``rng`` and trains with it, so the same
    data and rng state give the same model. Identical calls — the generation-0 fit that
    several regimes of one chapter share, since the loop starts every regime from the
    same real sample when the seed is the same — are computed once: results are cached
    on (``config``, seed, content hash of ``data``), the latest few dozen. Models must not
    be mutated after training. Safe to call from several threads (two threads asking for
    the same fit at once may both train it; the results are identical).
    Explained in :ref:`sec-families-loop`.
    """

    def fit(data, rng):
        seed = int(rng.integers(2**62))
        key = (config, seed, digest(data))
        with _FIT_LOCK:
            if key in _FIT_CACHE:
                _FIT_CACHE.move_to_end(key)
                return _FIT_CACHE[key]
        model = train(data, seed)
        with _FIT_LOCK:
            _FIT_CACHE[key] = model
            while len(_FIT_CACHE) > _FIT_CACHE_SIZE:
                _FIT_CACHE.popitem(last=False)
        return model

    return fit


class Adam:
    """Adam (Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization") for the chapter's small
    batched models: m ← β1 m + (1 − β1) g, v ← β2 v + (1 − β2) g², θ ← θ − lr m̂ / (√v̂ + ε) with
    m̂ = m / (1 − β1^t), v̂ = v / (1 − β2^t).

    The arithmetic of ``torch.optim.Adam``'s default single-tensor path on the CPU, operation
    for operation (a test checks the trajectories are identical), without its per-step
    dispatch and the compiler machinery it imports on first use (seconds per process).
    Explained in :ref:`sec-families-loop`.
    """

    def __init__(self, params, *, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.t = 0

    def zero_grad(self) -> None:
        """Drop the gradients (``set_to_none``)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter from its ``.grad``."""
        self.t += 1
        step = float(self.t)
        b1, b2 = self.beta1, self.beta2
        step_size = self.lr / (1 - b1**step)
        bias_correction2_sqrt = (1 - b2**step) ** 0.5
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            g = p.grad
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.addcdiv_(m, (v.sqrt() / bias_correction2_sqrt).add_(self.eps), value=-step_size)
