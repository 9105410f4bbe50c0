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

from vanishing_tails.core.optim import Adam as Adam  # re-exported: chapter 2's models import it from here


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
