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
GRPO, DPO and KL penalties need), :func:`perplexity`, and :class:`Stack` (M TinyTransformers
of one size run as one batched model: chapters 4 and 6).

Everything takes an explicit ``seed`` or ``torch.Generator`` and a ``device``
(default CPU); on CPU, identical arguments give identical numbers.

Explained in :ref:`sec-families-charlm`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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


# ---------------------------------------------------------------------- a stack of transformers
_STACK_GLOBAL = {"embed": "embed.weight", "pos": "pos.weight", "norm_w": "norm.weight", "norm_b": "norm.bias",
                 "head_w": "head.weight", "head_b": "head.bias"}  # fmt: skip
_STACK_LAYER = {"norm1_w": "norm1.weight", "norm1_b": "norm1.bias", "qkv_w": "self_attn.in_proj_weight",
                "qkv_b": "self_attn.in_proj_bias", "out_w": "self_attn.out_proj.weight",
                "out_b": "self_attn.out_proj.bias", "norm2_w": "norm2.weight", "norm2_b": "norm2.bias",
                "ff1_w": "linear1.weight", "ff1_b": "linear1.bias", "ff2_w": "linear2.weight",
                "ff2_b": "linear2.bias"}  # fmt: skip


def _stack_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-replica ``x @ w.T + b``: x ``[M, N, i]``, w ``[M, o, i]``, b ``[M, o]``."""
    return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))


def _stack_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(b.unsqueeze(1), F.layer_norm(x, x.shape[-1:]), w.unsqueeze(1))


def _causal(T: int, S: int, device) -> torch.Tensor:
    """Boolean attention mask ``[T, S]`` for ``T`` new positions after ``S - T`` visible ones."""
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(S - T)


class _Softmax(torch.autograd.Function):
    """Softmax over the last axis whose backward is written out, ``ds = p ⊙ (dp − Σ_j dp_j p_j)``.

    torch's own CPU softmax backward sums each row in an order that depends on the number of
    threads, so the gradients of :func:`_attention` (and every number of a trained Stack)
    would differ between a one-thread book build and a two-thread run of a chapter; this form
    gives the same bits at any thread count (tested). The forward is torch's.
    """

    @staticmethod
    def forward(ctx, scores: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(scores, dim=-1)
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, dp: torch.Tensor) -> torch.Tensor:
        (p,) = ctx.saved_tensors
        return p * (dp - (dp * p).sum(-1, keepdim=True))


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax attention ``softmax(q kᵀ / √d_h + log mask) v`` for ``q`` ``[N, H, T, d_h]`` and
    ``k``, ``v`` ``[N, H, S, d_h]``; ``mask`` is boolean ``[T, S]`` (True: may attend) or None.

    The function of :func:`torch.nn.functional.scaled_dot_product_attention` (Vaswani et al.
    2017), written as two batched matrix products over the ``N·H`` rows and heads. For the
    tiny heads of a :class:`Stack` (``d_h`` of 8-16, sequences under 20 tokens) the CPU's fused
    kernel costs more per (row, head) than the arithmetic and does not use a second core:
    in chapter 4's shapes this form's forward and backward take 2-2.5x less time. Values
    agree with the fused kernel to float32 rounding, and its gradients do not depend on the
    number of threads (:class:`_Softmax`; both tested).
    """
    N, H, T, dh = q.shape
    S = k.shape[2]
    q3, k3, v3 = q.reshape(N * H, T, dh), k.reshape(N * H, S, dh), v.reshape(N * H, S, dh)
    if mask is None:
        scores = torch.bmm(q3, k3.transpose(1, 2)).mul_(dh**-0.5)
    else:
        bias = torch.zeros(T, S, dtype=q.dtype, device=q.device).masked_fill_(~mask, float("-inf"))
        scores = torch.baddbmm(bias, q3, k3.transpose(1, 2), alpha=dh**-0.5)
    return torch.bmm(_Softmax.apply(scores), v3).view(N, H, T, dh)


def _repeat_rows(t: torch.Tensor, M: int, group: int) -> torch.Tensor:
    """``[M*B, ...]`` -> ``[M*B*group, ...]``, each row repeated ``group`` times in place."""
    return t.view(M, -1, *t.shape[1:]).repeat_interleave(group, dim=1).flatten(0, 1)


@dataclass(frozen=True)
class StackSize:
    """The two numbers a :class:`Stack` needs besides its weights: ``n_layers`` and ``n_heads``
    (any object with these attributes will do, e.g. chapter 4's ``ModelSize``).

    Explained in :ref:`sec-search-agent`.
    """

    n_layers: int
    n_heads: int


class Stack:
    """``M`` :class:`TinyTransformer` models of one size as stacked weights ``{name: [M, ...]}``, run as one.

    The arithmetic is that of :class:`TinyTransformer` (pre-norm layers, exact GELU, learned
    positions), per replica: a batch has a leading replica axis, ``[M, B, T]``, and replica
    ``m`` computes x ← x + Attn(LN1(x)), x ← x + W2 GELU(W1 LN2(x)), logits = head(LN(x))
    with its own weights only (every matrix product is a batched ``baddbmm`` over replicas),
    so a replica's numbers do not depend on which others share the stack. Optimisers that
    are elementwise (Adam) keep per-replica moments. ``size`` is any object with
    ``n_layers`` and ``n_heads`` (:class:`StackSize`, chapter 4's ``ModelSize``).
    :meth:`model` and :meth:`state_dict` convert one replica back to a TinyTransformer (the
    tests check both compute the same logits). Explained in :ref:`sec-search-agent` and
    :ref:`sec-formats-pretraining`.
    """

    def __init__(self, params: dict[str, torch.Tensor], size):
        self.params = params
        self.size = size

    @classmethod
    def from_state_dicts(cls, states: Sequence[dict[str, torch.Tensor]], size, device="cpu") -> Stack:
        """Stack TinyTransformer state dicts (all of ``size``)."""
        dev = resolve_device(device)

        def st(key: str) -> torch.Tensor:
            return torch.stack([s[key].detach() for s in states]).to(dev).clone()

        params = {k: st(v) for k, v in _STACK_GLOBAL.items()}
        for i in range(size.n_layers):
            params.update({f"{i}.{k}": st(f"blocks.layers.{i}.{v}") for k, v in _STACK_LAYER.items()})
        return cls(params, size)

    @classmethod
    def from_models(cls, models: Sequence[TinyTransformer], device="cpu") -> Stack:
        """Stack TinyTransformers of one size (weights copied)."""
        first = models[0]
        size = StackSize(len(first.blocks.layers), first.blocks.layers[0].self_attn.num_heads)
        return cls.from_state_dicts([m.state_dict() for m in models], size, device)

    def __len__(self) -> int:
        return self.params["embed"].shape[0]

    @property
    def device(self) -> torch.device:
        return self.params["embed"].device

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """Replica ``i``'s weights as a TinyTransformer state dict (detached, on the CPU)."""
        out = {v: self.params[k][i].detach().cpu().clone() for k, v in _STACK_GLOBAL.items()}
        for j in range(self.size.n_layers):
            out.update(
                {
                    f"blocks.layers.{j}.{v}": self.params[f"{j}.{k}"][i].detach().cpu().clone()
                    for k, v in _STACK_LAYER.items()
                }
            )
        return out

    def model(self, i: int) -> TinyTransformer:
        """Replica ``i`` as a TinyTransformer (eval mode)."""
        V, d = self.params["embed"].shape[1:]
        max_len = self.params["pos"].shape[1]
        m = TinyTransformer(V, d_model=d, n_layers=self.size.n_layers, n_heads=self.size.n_heads, max_len=max_len)
        m.load_state_dict(self.state_dict(i))
        return m.eval()

    def take(self, index: Sequence[int] | torch.Tensor, *, trainable: bool = False) -> Stack:
        """A new stack of the replicas ``index`` (repeats allowed), with copied weights;
        ``trainable=True`` makes them leaves that require gradients."""
        index = index if isinstance(index, torch.Tensor) else list(index)
        idx = torch.as_tensor(index, dtype=torch.long, device=self.device)
        params = {k: v.detach().index_select(0, idx).clone().requires_grad_(trainable) for k, v in self.params.items()}
        return Stack(params, self.size)

    # -- the forward pass
    def _embed(self, tokens: torch.Tensor, start: int) -> torch.Tensor:
        """Token plus position embeddings of ``tokens`` ``[M, B, T]`` at positions
        ``start, ..., start + T - 1``, as ``[M, B*T, d]``."""
        M, B, T = tokens.shape
        if start + T > self.params["pos"].shape[1]:
            raise ValueError(f"sequence length {start + T} exceeds max_len {self.params['pos'].shape[1]}")
        V, d = self.params["embed"].shape[1:]
        offset = (torch.arange(M, device=tokens.device) * V).view(M, 1, 1)
        x = F.embedding(tokens + offset, self.params["embed"].reshape(M * V, d))
        return (x + self.params["pos"][:, start : start + T].unsqueeze(1)).reshape(M, B * T, d)

    def _layer(self, i: int, x: torch.Tensor, B: int, T: int, attend) -> torch.Tensor:
        """Layer ``i`` on ``x`` ``[M, B*T, d]``; ``attend(q, k, v)`` (each ``[M*B, H, T, dh]``)
        does the attention and may extend k and v with cached or shared positions."""
        M, _, d = x.shape
        H = self.size.n_heads
        p = {k: self.params[f"{i}.{k}"] for k in _STACK_LAYER}
        qkv = _stack_linear(_stack_norm(x, p["norm1_w"], p["norm1_b"]), p["qkv_w"], p["qkv_b"])
        q, k, v = qkv.view(M * B, T, 3, H, d // H).permute(2, 0, 3, 1, 4)
        att = attend(q, k, v)
        x = x + _stack_linear(att.transpose(1, 2).reshape(M, B * T, d), p["out_w"], p["out_b"])
        h = F.gelu(_stack_linear(_stack_norm(x, p["norm2_w"], p["norm2_b"]), p["ff1_w"], p["ff1_b"]))
        return x + _stack_linear(h, p["ff2_w"], p["ff2_b"])

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        p = self.params
        return _stack_linear(_stack_norm(x, p["norm_w"], p["norm_b"]), p["head_w"], p["head_b"])

    def _prefix(self, prefix: torch.Tensor):
        """Run ``prefix`` ``[M, B, P]``: (last hidden state ``[M, B, d]``, per layer (k, v))."""
        M, B, P = prefix.shape
        x = self._embed(prefix.to(self.device), 0)
        mask = _causal(P, P, x.device)
        kv = []

        def attend(q, k, v):
            kv.append((k, v))
            return _attention(q, k, v, mask)

        for i in range(self.size.n_layers):
            x = self._layer(i, x, B, P, attend)
        return x.view(M, B, P, -1)[:, :, -1], kv

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``[M, B, T, V]`` for tokens ``[M, B, T]`` (causal)."""
        M, B, T = tokens.shape
        x = self._embed(tokens.to(self.device), 0)
        mask = _causal(T, T, x.device)
        for i in range(self.size.n_layers):
            x = self._layer(i, x, B, T, lambda q, k, v: _attention(q, k, v, mask))
        return self._head(x).view(M, B, T, -1)

    def completion_logits(self, prompts: torch.Tensor, completions: torch.Tensor, group: int) -> torch.Tensor:
        """Logits ``[M, B*group, L, V]`` of each completion token given the prompt and the
        completion so far, for ``prompts`` ``[M, B, P]`` and ``completions``
        ``[M, B*group, L]`` (``group`` completions per prompt, contiguous).

        Equal to :meth:`logits` on the concatenated sequences, but each prompt is run once
        for its whole group (its keys and values are shared), which saves the prompt's
        share of the compute.
        """
        M, B, P = prompts.shape
        L = completions.shape[-1]
        last, kv = self._prefix(prompts)
        first = self._head(last).repeat_interleave(group, dim=1).unsqueeze(2)  # predicts token 0
        if L == 1:
            return first
        x = self._embed(completions[..., :-1].to(self.device), P)
        mask = _causal(L - 1, P + L - 1, x.device)
        for i in range(self.size.n_layers):
            kp, vp = (_repeat_rows(t, M, group) for t in kv[i])

            def attend(q, k, v, kp=kp, vp=vp):
                return _attention(q, torch.cat([kp, k], 2), torch.cat([vp, v], 2), mask)

            x = self._layer(i, x, B * group, L - 1, attend)
        rest = self._head(x).view(M, B * group, L - 1, -1)
        return torch.cat([first, rest], dim=2)

    def init_state(self, prefix: torch.Tensor, group: int = 1, room: int = 0):
        """Run the prefix ``[M, B, P]``; return (next-token logits ``[M, B*group, V]``, state).
        Each prefix row is repeated ``group`` times (contiguously) after its keys and values
        are computed once; the state's caches have space for ``room`` more positions."""
        M, B, P = prefix.shape
        last, kv = self._prefix(prefix)
        caches = []
        for k, v in kv:
            buf = k.new_empty(2, M * B * group, k.shape[1], P + room, k.shape[3])
            buf[0, :, :, :P] = _repeat_rows(k, M, group)
            buf[1, :, :, :P] = _repeat_rows(v, M, group)
            caches.append(buf)
        return self._head(last).repeat_interleave(group, dim=1), (caches, P)

    def step(self, token: torch.Tensor, state):
        """One new token ``[M, B]`` per row; returns (next-token logits ``[M, B, V]``, state)."""
        caches, pos = state
        M, B = token.shape
        if pos >= caches[0].shape[3]:
            raise ValueError(f"the state has room for {caches[0].shape[3]} positions; init_state(room=...) more")
        x = self._embed(token.to(self.device)[:, :, None], pos)
        for i in range(self.size.n_layers):
            buf = caches[i]

            def attend(q, k, v, buf=buf):
                buf[0, :, :, pos : pos + 1] = k
                buf[1, :, :, pos : pos + 1] = v
                return _attention(q, buf[0, :, :, : pos + 1], buf[1, :, :, : pos + 1])

            x = self._layer(i, x, B, 1, attend)
        return self._head(x), (caches, pos + 1)
