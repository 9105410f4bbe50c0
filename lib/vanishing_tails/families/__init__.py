"""Model families retrained on their own output, one module each (chapter 2, "Every model
family forgets its tails").

Every family drives the same loop, :func:`vanishing_tails.collapse.recursive_fit`, with
its own ``fit`` / ``sample`` / ``measure`` callbacks and the book's regime vocabulary
(``replace``, ``accumulate``, ``accumulate-subsample``, ``mix`` with ``real_fraction``):

* :mod:`.mixture` — 2-D Gaussian mixtures refit by scikit-learn's EM;
* :mod:`.vae` — a small torch VAE on scikit-learn's real handwritten digits;
* :mod:`.charlm` — a character-level GRU (:mod:`vanishing_tails.lm`) on Shakespeare;
* :mod:`.tale_of_tails` — Dohmatob et al.'s Hutter memoriser on Zipf data, with its
  exact expected test error.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

FAMILIES = ("mixture", "vae", "charlm", "tale_of_tails")


def check_family(family: str) -> str:
    """Refuse an unknown family with a ValueError naming the parameter."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}")
    return family


def digest(data: Any) -> str:
    """A content hash of a data set (array, tensor, or list of strings)."""
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
_FIT_CACHE_SIZE = 16


def seeded_fit(train: Callable[[Any, int], Any], config: Hashable) -> Callable[[Any, np.random.Generator], Any]:
    """Turn ``train(data, seed) -> model`` into the loop's ``fit(data, rng)``, memoised.

    The fit draws exactly one integer seed from ``rng`` and trains with it, so the same
    data and rng state give the same model. Identical calls — the generation-0 fit that
    several regimes of one chapter share, since the loop starts every regime from the
    same real sample when the seed is the same — are computed once: results are cached
    on (``config``, seed, content hash of ``data``), a few entries deep. Models must not
    be mutated after training.
    """

    def fit(data, rng):
        seed = int(rng.integers(2**62))
        key = (config, seed, digest(data))
        if key in _FIT_CACHE:
            _FIT_CACHE.move_to_end(key)
            return _FIT_CACHE[key]
        model = train(data, seed)
        _FIT_CACHE[key] = model
        while len(_FIT_CACHE) > _FIT_CACHE_SIZE:
            _FIT_CACHE.popitem(last=False)
        return model

    return fit
