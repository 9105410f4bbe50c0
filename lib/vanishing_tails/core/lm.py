"""The small torch language models every chapter shares.

Two autoregressive families over a token vocabulary, both mapping a batch of token
ids ``[B, T]`` to next-token logits ``[B, T, V]`` and both sampling incrementally
through ``init_state``/``step``:

* :class:`CharGRU` — a GRU over characters or tokens (chapter 5's reference policy at the
  smoke and book scales, where it trains fastest; chapter 2 trains the same model for
  many chains at once, :class:`vanishing_tails.experiments.families.charlm.GRUChains`);
* :class:`TinyTransformer` — a pre-norm causal transformer (chapter 4; chapter 5 at ``full``).

Shared utilities: :class:`Vocab` (characters or words to ids, with PAD/BOS/EOS),
:func:`build_model` (seeded initialisation), :func:`train_lm` (teacher-forced
cross-entropy on padded sequences, optionally weighted per sequence),
:func:`sample` (batched ancestral sampling with ``temperature``),
:func:`sequence_logprob` (log pi(y | x) summed over a masked span: the quantity
GRPO, DPO and KL penalties need) and :func:`perplexity`.

Everything takes an explicit ``seed`` or ``torch.Generator`` and a ``device``
(default CPU); on CPU, identical arguments give identical numbers.

Explained in :ref:`sec-families-charlm`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from . import progress

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"


def resolve_device(device: str | torch.device | None = "cpu") -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU; anything else is passed to torch.

    Explained in :ref:`sec-families-charlm`.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Vocab:
    """A fixed token vocabulary; ids 0, 1, 2 are PAD, BOS, EOS.

    ``Vocab.from_texts(texts, level="char")`` builds a character vocabulary;
    ``level="word"`` splits on whitespace. ``encode`` returns BOS + ids + EOS.
    Explained in :ref:`sec-families-charlm`.
    """

    def __init__(self, tokens: Iterable[str], level: str = "char"):
        if level not in ("char", "word"):
            raise ValueError(f"level must be 'char' or 'word', got {level!r}")
        self.level = level
        uniq = sorted(set(tokens) - {PAD, BOS, EOS})
        self.itos = [PAD, BOS, EOS, *uniq]
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def from_texts(cls, texts: Iterable[str], level: str = "char") -> Vocab:
        toks: set[str] = set()
        for t in texts:
            toks.update(t if level == "char" else t.split())
        return cls(toks, level)

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def bos_id(self) -> int:
        return 1

    @property
    def eos_id(self) -> int:
        return 2

    def tokenize(self, text: str) -> list[str]:
        return list(text) if self.level == "char" else text.split()

    def encode(self, text: str, *, bos: bool = True, eos: bool = True) -> list[int]:
        try:
            ids = [self.stoi[t] for t in self.tokenize(text)]
        except KeyError as e:
            raise ValueError(f"token {e.args[0]!r} is not in the vocabulary") from None
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def encode_batch(
        self, texts: Sequence[str], *, max_len: int | None = None, bos: bool = True, eos: bool = True
    ) -> torch.Tensor:
        """Right-padded LongTensor ``[N, T]``; sequences longer than ``max_len`` are cut."""
        rows = [self.encode(t, bos=bos, eos=eos) for t in texts]
        T = max(len(r) for r in rows) if max_len is None else max_len
        out = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            r = r[:T]
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out

    def decode(self, ids: Sequence[int] | torch.Tensor, *, stop_at_eos: bool = True) -> str:
        """Ids to text, dropping PAD/BOS and (by default) everything from the first EOS on."""
        out = []
        for i in ids.tolist() if isinstance(ids, torch.Tensor) else ids:
            if i == self.eos_id and stop_at_eos:
                break
            if i in (self.pad_id, self.bos_id, self.eos_id):
                continue
            out.append(self.itos[i])
        return ("" if self.level == "char" else " ").join(out)

    def decode_batch(self, ids: torch.Tensor, **kw) -> list[str]:
        return [self.decode(row, **kw) for row in ids]


class CharGRU(nn.Module):
    """Embedding -> multi-layer GRU -> linear head.

    Explained in :ref:`sec-families-charlm`.
    """

    def __init__(
        self, vocab_size: int, d_embed: int = 64, d_hidden: int = 256, n_layers: int = 1, dropout: float = 0.0
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_embed)
        self.rnn = nn.GRU(d_embed, d_hidden, n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0)
        self.head = nn.Linear(d_hidden, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.embed(tokens))
        return self.head(h)

    def init_state(self, prefix: torch.Tensor):
        """Run the prefix ``[B, P]``; return (logits of the next token ``[B, V]``, state)."""
        h, state = self.rnn(self.embed(prefix))
        return self.head(h[:, -1]), state

    def step(self, token: torch.Tensor, state):
        h, state = self.rnn(self.embed(token[:, None]), state)
        return self.head(h[:, -1]), state


class TinyTransformer(nn.Module):
    """A pre-norm causal transformer with learned positions (GPT-style), built from torch modules.

    Explained in :ref:`chapter-one-format-wins`.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        max_len: int = 64,
        dropout: float = 0.0,
    ):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.max_len = max_len
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, 4 * d_model, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        T = tokens.shape[1]
        if T > self.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len {self.max_len}")
        pos = torch.arange(T, device=tokens.device)
        x = self.embed(tokens) + self.pos(pos)[None]
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=tokens.device)
        x = self.blocks(x, mask=mask, is_causal=True)
        return self.head(self.norm(x))

    # Incremental decoding with a key/value cache: each new token costs one position
    # instead of a forward pass over the whole sequence (2.5-4.5x faster sampling in
    # chapter 4). The logits equal forward()'s up to float rounding (tests/test_lm.py).
    def _layer_step(self, layer, x, cache):
        """One pre-norm encoder layer (eval mode) on new positions ``x`` [B, T, d], extending ``cache``."""
        B, T, d = x.shape
        n_heads = layer.self_attn.num_heads
        q, k, v = F.linear(layer.norm1(x), layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias).split(
            d, dim=-1
        )
        q, k, v = (t.view(B, T, n_heads, d // n_heads).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=cache is None)
        x = x + layer.self_attn.out_proj(att.transpose(1, 2).reshape(B, T, d))
        x = x + layer.linear2(layer.activation(layer.linear1(layer.norm2(x))))
        return x, (k, v)

    def _run(self, x, caches):
        new = []
        for layer, cache in zip(self.blocks.layers, caches):
            x, c = self._layer_step(layer, x, cache)
            new.append(c)
        return self.head(self.norm(x[:, -1])), new

    def init_state(self, prefix: torch.Tensor):
        P = prefix.shape[1]
        if P > self.max_len:
            raise ValueError(f"sequence length {P} exceeds max_len {self.max_len}")
        x = self.embed(prefix) + self.pos(torch.arange(P, device=prefix.device))[None]
        logits, caches = self._run(x, [None] * len(self.blocks.layers))
        return logits, (caches, P)

    def step(self, token: torch.Tensor, state):
        caches, pos = state
        if pos >= self.max_len:
            raise ValueError(f"sequence length {pos + 1} exceeds max_len {self.max_len}")
        x = self.embed(token[:, None]) + self.pos.weight[pos][None, None]
        logits, caches = self._run(x, caches)
        return logits, (caches, pos + 1)


ARCHS = ("gru", "transformer")


def build_model(arch: str, vocab_size: int, *, seed: int, device="cpu", **sizes) -> nn.Module:
    """Construct ``arch`` ("gru" or "transformer") with weights drawn from ``seed``.

    Initialisation uses a forked RNG, so it neither reads nor disturbs torch's global stream.
    Explained in :ref:`sec-families-charlm`.
    """
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CharGRU(vocab_size, **sizes) if arch == "gru" else TinyTransformer(vocab_size, **sizes)
    return model.to(resolve_device(device))


def n_parameters(model: nn.Module) -> int:
    """The number of trainable numbers in ``model``.

    Explained in :ref:`sec-families-charlm`.
    """
    return sum(p.numel() for p in model.parameters())


def token_nll(model: nn.Module, tokens: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """Per-token negative log-likelihood ``[B, T-1]`` of tokens[:, 1:] given the prefix (0 on PAD).

    Explained in :ref:`chapter-what-the-reward-pays-for`.
    """
    logits = model(tokens[:, :-1])
    nll = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")
    return nll * (tokens[:, 1:] != pad_id)


def sequence_logprob(
    model: nn.Module, tokens: torch.Tensor, span_mask: torch.Tensor | None = None, pad_id: int = 0
) -> torch.Tensor:
    """log pi(tokens) = sum_t log pi(x_t | x_<t) over the positions where ``span_mask`` is true.

    ``tokens`` is ``[B, T]``; ``span_mask`` ``[B, T]`` marks which target positions count
    (e.g. the completion after a prompt); PAD never counts. Returns ``[B]``; differentiable.
    Explained in :ref:`chapter-what-the-reward-pays-for`.
    """
    logp = -token_nll(model, tokens, pad_id)
    if span_mask is not None:
        logp = logp * span_mask[:, 1:].to(logp.dtype)
    return logp.sum(dim=1)


def train_lm(
    model: nn.Module,
    data: torch.Tensor,
    *,
    steps: int,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    weights: torch.Tensor | None = None,
    weight_decay: float = 0.0,
    clip: float = 1.0,
    log_every: int = 0,
    pad_id: int = 0,
) -> pd.DataFrame:
    """Teacher-forced next-token training with AdamW on rows of ``data`` (``[N, T]``, PAD-padded).

    Minibatches are drawn with replacement by a ``torch.Generator`` seeded with ``seed``;
    ``weights`` (``[N]``, optional) re-weights sequences (used for reward-weighted SFT).
    Returns a frame ``step, loss`` (every ``log_every`` steps; 0 logs only the last).
    Explained in :ref:`sec-families-charlm`.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
    if data.ndim != 2 or data.shape[1] < 2:
        raise ValueError(f"data must be [N, T] with T >= 2, got {tuple(data.shape)}")
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    log = []
    for step in progress.bar(range(1, steps + 1), desc="training the LM", unit="step"):  # off in the runner
        idx = torch.randint(len(data), (batch_size,), generator=gen)
        batch = data[idx].to(device)
        nll = token_nll(model, batch, pad_id)
        per_seq = nll.sum(1)
        if weights is not None:
            per_seq = per_seq * weights[idx].to(device)
        loss = per_seq.sum() / (batch[:, 1:] != pad_id).sum().clamp(min=1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        if (log_every and step % log_every == 0) or step == steps:
            log.append({"step": step, "loss": float(loss.detach())})
    model.eval()
    return pd.DataFrame(log)


@torch.no_grad()
def sample(
    model: nn.Module,
    prefix: torch.Tensor,
    max_new_tokens: int,
    *,
    generator: torch.Generator,
    temperature: float = 1.0,
    eos_id: int | None = 2,
    pad_id: int = 0,
) -> torch.Tensor:
    """Batched ancestral sampling: ``prefix`` ``[B, P]`` -> ``[B, P + max_new_tokens]``.

    Draws x_t ~ softmax(logits / temperature). After a row emits ``eos_id`` the rest of
    the row is PAD. ``temperature < 1`` sharpens toward the mode (it shaves the tail;
    chapters 1 and 2). The generator must live on the CPU; draws happen there so that
    results do not depend on the device.
    Explained in :ref:`sec-families-charlm`.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    model.eval()
    device = next(model.parameters()).device
    prefix = prefix.to(device)
    logits, state = model.init_state(prefix)
    out = [prefix]
    done = torch.zeros(prefix.shape[0], dtype=torch.bool, device=device)
    for i in range(max_new_tokens):
        probs = torch.softmax(logits.float() / temperature, dim=-1).cpu()
        nxt = torch.multinomial(probs, 1, generator=generator)[:, 0].to(device)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        out.append(nxt[:, None])
        if eos_id is not None:
            done = done | (nxt == eos_id)
            if bool(done.all()):
                break
        if i < max_new_tokens - 1:  # the last token needs no next-token logits
            logits, state = model.step(nxt, state)
    seq = torch.cat(out, dim=1)
    if seq.shape[1] < prefix.shape[1] + max_new_tokens:  # all rows ended early: pad to full width
        pad = torch.full(
            (seq.shape[0], prefix.shape[1] + max_new_tokens - seq.shape[1]), pad_id, dtype=seq.dtype, device=device
        )
        seq = torch.cat([seq, pad], dim=1)
    return seq.cpu()


@torch.no_grad()
def perplexity(
    model: nn.Module, data: torch.Tensor, *, batch_size: int = 256, per_sequence: bool = False, pad_id: int = 0
) -> float | np.ndarray:
    """exp(mean token NLL) over ``data`` ``[N, T]``; ``per_sequence=True`` returns one per row.

    Explained in :ref:`sec-families-charlm`.
    """
    model.eval()
    device = next(model.parameters()).device
    nll_sum, tok = [], []
    for i in range(0, len(data), batch_size):
        batch = data[i : i + batch_size].to(device)
        nll = token_nll(model, batch, pad_id)
        nll_sum.append(nll.sum(1).cpu())
        tok.append((batch[:, 1:] != pad_id).sum(1).cpu())
    s, n = torch.cat(nll_sum).double(), torch.cat(tok).double().clamp(min=1)
    if per_sequence:
        return torch.exp(s / n).numpy()
    return float(math.exp(s.sum() / n.sum()))
