"""Offline real data: everything ships inside an installed wheel; nothing is fetched.

* :func:`english_word_frequencies` — English word frequencies from ``wordfreq``
  (Speer 2022), chapter 1.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd


@lru_cache(maxsize=8)
def _wordfreq_table(top_n: int) -> pd.DataFrame:
    import wordfreq

    words = wordfreq.top_n_list("en", top_n, wordlist="best")
    freq = np.array([wordfreq.word_frequency(w, "en", wordlist="best") for w in words])
    keep = freq > 0
    words = [w for w, k in zip(words, keep) if k]
    freq = freq[keep]
    order = np.argsort(-freq, kind="stable")
    return pd.DataFrame({
        "rank": np.arange(1, len(order) + 1),
        "word": np.asarray(words, dtype=object)[order],
        "frequency": freq[order],
        "p": freq[order] / freq.sum(),
    })


def english_word_frequencies(top_n: int = 20000) -> pd.DataFrame:
    """The ``top_n`` most frequent English words with their frequencies (wordfreq, offline).

    Columns: ``rank`` (1 = most frequent), ``word``, ``frequency`` (wordfreq's share of
    all English tokens, a blend of web, subtitles, books, Wikipedia...) and ``p``
    (renormalised over these ``top_n`` words: the "real distribution" of chapter 1).
    wordfreq stores frequencies rounded to a logarithmic grid, so rare words tie.
    """
    if not isinstance(top_n, (int, np.integer)) or not 10 <= top_n <= 200_000:
        raise ValueError(f"top_n must be an integer in [10, 200000]; got {top_n!r}")
    return _wordfreq_table(int(top_n)).copy()
