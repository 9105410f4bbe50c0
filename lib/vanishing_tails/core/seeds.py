"""Named seed streams: every random stream of a chapter is derived from its one ``seed``
and a *name*, never from the order in which cells ask for seeds.

``seeds = streams(P["seed"])`` and then ``seeds["words"]`` or ``seeds["gauss", n, fit]``
give an integer seed that depends only on the master seed and the key, through
:class:`numpy.random.SeedSequence` with a ``spawn_key`` hashed from the key. Adding,
removing or reordering one experiment leaves every other experiment's numbers untouched.
Explained in :ref:`sec-seeds`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable

import numpy as np

KeyPart = str | int | float | bool


def _key_words(key: tuple[KeyPart, ...]) -> tuple[int, ...]:
    """The key as four 32-bit words: blake2b of its parts' reprs (stable across processes)."""
    for part in key:
        if not isinstance(part, (str, int, float, bool, np.integer, np.floating)):
            raise TypeError(f"a seed-stream key is made of strings and numbers; got {part!r}")
    text = "\x1f".join(
        f"{type(p).__name__[:1]}:{p!r}"
        if not isinstance(p, (np.integer, np.floating))
        else f"{'i' if isinstance(p, np.integer) else 'f'}:{p.item()!r}"
        for p in key
    )
    digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
    return tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))


class Streams:
    """Seed streams named by key, all derived from one master ``seed`` (see module docstring).

    * ``streams[key]`` — an ``int`` seed (63 bits) for functions that take ``seed=``;
    * ``streams.rng(key)`` — a :class:`numpy.random.Generator`;
    * ``streams.sequence(key)`` — the :class:`numpy.random.SeedSequence` itself.

    A key is a string or a tuple of strings and numbers: ``"vae"``, ``("gauss", 10, "mle")``.
    Explained in :ref:`sec-seeds`.
    """

    def __init__(self, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
        self.seed = int(seed)

    @staticmethod
    def _key(key: Hashable) -> tuple[KeyPart, ...]:
        key = key if isinstance(key, tuple) else (key,)
        if not key:
            raise ValueError("a seed-stream key needs at least one part")
        return key

    def sequence(self, key: Hashable) -> np.random.SeedSequence:
        return np.random.SeedSequence(self.seed, spawn_key=_key_words(self._key(key)))

    def __getitem__(self, key: Hashable) -> int:
        return int(self.sequence(key).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> np.uint64(1))

    def rng(self, key: Hashable) -> np.random.Generator:
        return np.random.default_rng(self.sequence(key))

    def __repr__(self) -> str:
        return f"Streams(seed={self.seed})"


def streams(seed: int) -> Streams:
    """The named seed streams of a chapter run with master seed ``seed`` (:class:`Streams`).

    Explained in :ref:`sec-seeds`.
    """
    return Streams(seed)
