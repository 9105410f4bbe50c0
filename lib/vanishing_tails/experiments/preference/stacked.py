"""Several small GRU language models trained as one stacked model (chapter 5's speed).

Chapter 5 pretrains several reference models (the replicates) and tunes each once per arm
with DPO. Trained one at a time, each model pays torch's per-call overhead for a tiny
network; here ``C`` one-layer GRU models (:class:`vanishing_tails.core.lm.CharGRU`'s
layout) live in one module whose weights carry a leading model axis, and every step of
every model is one batched matrix product (``torch.baddbmm``). Each model keeps its own
data, minibatch stream, gradient-norm clip and Adam moments, so a stacked run computes
what separate runs compute, up to float rounding (tests check it).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from vanishing_tails.core import lm
from vanishing_tails.core.optim import Adam, clip_grad_norm_per_replica


class StackedGRU(nn.Module):
    """``C`` one-layer GRU language models (embedding → GRU → linear head) with stacked weights.

    Weights ``[C, ...]`` (input-major, for ``baddbmm``); model ``c`` computes, for tokens
    ``x_t`` and torch's gate order (r, z, n),
    ``r = σ(W_ir e_t + b_ir + W_hr h + b_hr)``, ``z = σ(W_iz e_t + b_iz + W_hz h + b_hz)``,
    ``n = tanh(W_in e_t + b_in + r ⊙ (W_hn h + b_hn))``, ``h' = (1 − z) ⊙ n + z ⊙ h`` — the
    recurrence of ``torch.nn.GRU`` (Cho et al. 2014) — and logits ``W_o h' + b_o``.
    Explained in :ref:`sec-preference-setup`.
    """

    def __init__(self, chains: int, vocab_size: int, d_embed: int, d_hidden: int):
        super().__init__()
        C, V, E, H = chains, vocab_size, d_embed, d_hidden
        self.embed_weight = nn.Parameter(torch.zeros(C, V, E))
        self.w_ih, self.b_ih = nn.Parameter(torch.zeros(C, E, 3 * H)), nn.Parameter(torch.zeros(C, 1, 3 * H))
        self.w_hh, self.b_hh = nn.Parameter(torch.zeros(C, H, 3 * H)), nn.Parameter(torch.zeros(C, 1, 3 * H))
        self.w_out, self.b_out = nn.Parameter(torch.zeros(C, H, V)), nn.Parameter(torch.zeros(C, 1, V))
        self.chains, self.vocab_size, self.d_embed, self.d_hidden = C, V, E, H

    @classmethod
    def from_models(cls, models: list[lm.CharGRU]) -> StackedGRU:
        """A stack holding copies of one-layer :class:`~vanishing_tails.core.lm.CharGRU` models' weights.

        Explained in :ref:`sec-preference-setup`.
        """
        first = models[0]
        for m in models:
            if not isinstance(m, lm.CharGRU) or m.rnn.num_layers != 1:
                raise ValueError("StackedGRU stacks one-layer CharGRU models only")
        out = cls(len(models), first.head.out_features, first.embed.embedding_dim, first.rnn.hidden_size)
        with torch.no_grad():
            for c, m in enumerate(models):
                out.embed_weight[c] = m.embed.weight
                out.w_ih[c], out.b_ih[c, 0] = m.rnn.weight_ih_l0.T, m.rnn.bias_ih_l0
                out.w_hh[c], out.b_hh[c, 0] = m.rnn.weight_hh_l0.T, m.rnn.bias_hh_l0
                out.w_out[c], out.b_out[c, 0] = m.head.weight.T, m.head.bias
        return out.to(first.head.weight.device)

    def select(self, index) -> StackedGRU:
        """A new stack of copies of models ``index`` (a list of model indices; repeats allowed).

        Explained in :ref:`sec-preference-setup`.
        """
        index = torch.as_tensor(list(index), dtype=torch.long, device=self.w_ih.device)
        out = StackedGRU(len(index), self.vocab_size, self.d_embed, self.d_hidden).to(self.w_ih.device)
        with torch.no_grad():
            for (_, dst), (_, src) in zip(out.named_parameters(), self.named_parameters()):
                dst.copy_(src[index])
        return out

    def model(self, c: int) -> lm.CharGRU:
        """Model ``c`` as a plain :class:`~vanishing_tails.core.lm.CharGRU` (for ``lm.sample``).

        Explained in :ref:`sec-preference-setup`.
        """
        m = lm.build_model("gru", self.vocab_size, seed=0, device=self.w_ih.device, d_embed=self.d_embed,
                           d_hidden=self.d_hidden)  # fmt: skip
        with torch.no_grad():
            m.embed.weight.copy_(self.embed_weight[c])
            m.rnn.weight_ih_l0.copy_(self.w_ih[c].T)
            m.rnn.bias_ih_l0.copy_(self.b_ih[c, 0])
            m.rnn.weight_hh_l0.copy_(self.w_hh[c].T)
            m.rnn.bias_hh_l0.copy_(self.b_hh[c, 0])
            m.head.weight.copy_(self.w_out[c].T)
            m.head.bias.copy_(self.b_out[c, 0])
        return m.eval()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``[C, B, T, V]`` of tokens ``[C, B, T]`` (model c reads row block c)."""
        C, B, T = tokens.shape
        H = self.d_hidden
        offset = (torch.arange(C, device=tokens.device) * self.vocab_size).view(C, 1, 1)
        x = F.embedding(tokens + offset, self.embed_weight.reshape(C * self.vocab_size, -1)).reshape(C, B * T, -1)
        gi = torch.baddbmm(self.b_ih, x, self.w_ih).view(C, B, T, 3 * H).unbind(2)
        h = x.new_zeros(C, B, H)
        states = []
        for t in range(T):
            gh = torch.baddbmm(self.b_hh, h, self.w_hh)
            r, z = torch.sigmoid(gi[t][..., : 2 * H] + gh[..., : 2 * H]).split(H, -1)
            n = torch.tanh(gi[t][..., 2 * H :] + r * gh[..., 2 * H :])
            h = n + z * (h - n)
            states.append(h)
        hs = torch.stack(states, 2).reshape(C, B * T, H)
        return torch.baddbmm(self.b_out, hs, self.w_out).view(C, B, T, -1)


def stacked_sequence_logprob(
    model: StackedGRU, tokens: torch.Tensor, span_mask: torch.Tensor, pad_id: int = 0
) -> torch.Tensor:
    """``log π_c(tokens[c, b])`` summed over the target positions where ``span_mask`` is true: ``[C, B]``.

    As :func:`vanishing_tails.core.lm.sequence_logprob` for each model (PAD never counts).
    Explained in :ref:`sec-preference-setup`.
    """
    logits = model(tokens[..., :-1])
    target = tokens[..., 1:]
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none")
    keep = (target != pad_id) & span_mask[..., 1:]
    return -(nll.view(target.shape) * keep).sum(-1)


def pretrain_stacked(
    models: list[lm.CharGRU], corpora: list[torch.Tensor], *, steps: int, batch_size: int, lr: float, seeds: list[int]
) -> tuple[StackedGRU, np.ndarray]:
    """Teacher-forced pretraining of every model on its own corpus, as one stacked model.

    Model ``c`` trains as :func:`vanishing_tails.core.lm.train_lm` would train it alone:
    minibatches of ``batch_size`` rows of ``corpora[c]`` drawn with replacement by a
    generator seeded with ``seeds[c]``, loss the mean token NLL, its gradient clipped to
    norm 1, Adam with learning rate ``lr``. Returns the stack and each model's last loss.
    Explained in :ref:`sec-preference-setup`.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1; got {steps}, {batch_size}")
    stack = StackedGRU.from_models(models)
    T = max(c.shape[1] for c in corpora)
    data = torch.stack([F.pad(c, (0, T - c.shape[1])) for c in corpora]).to(stack.w_ih.device)
    C, N = len(corpora), min(len(c) for c in corpora)
    if any(len(c) != N for c in corpora):
        raise ValueError("every corpus must hold the same number of rows")
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    opt = Adam(stack.parameters(), lr=lr)
    rows = torch.arange(C)[:, None]
    stack.train()
    loss = torch.zeros(C)
    for _ in range(steps):
        idx = torch.stack([torch.randint(N, (batch_size,), generator=g) for g in gens])
        batch = data[rows, idx.to(data.device)]
        span = torch.ones_like(batch, dtype=torch.bool)
        lp = stacked_sequence_logprob(stack, batch, span)
        count = (batch[..., 1:] != 0).sum((1, 2)).clamp(min=1)
        loss = -lp.sum(1) / count
        opt.zero_grad()
        loss.sum().backward()
        clip_grad_norm_per_replica(stack.parameters(), 1.0)
        opt.step()
    stack.eval()
    return stack, loss.detach().cpu().numpy()


@torch.no_grad()
def stacked_logprobs(model: StackedGRU, tokens: torch.Tensor, mask: torch.Tensor, *, chunk: int) -> torch.Tensor:
    """``log π_c`` of the same rows ``tokens`` ``[B, T]`` (span ``mask``) under every model: ``[C, B]`` float64.

    Explained in :ref:`sec-preference-setup`.
    """
    model.eval()
    C = model.chains
    device = model.w_ih.device
    out = []
    for i in range(0, len(tokens), chunk):
        t = tokens[i : i + chunk].to(device)
        m = mask[i : i + chunk].to(device)
        out.append(stacked_sequence_logprob(model, t.expand(C, *t.shape), m.expand(C, *m.shape)).cpu())
    return torch.cat(out, dim=1).double()


def dpo_stacked(
    policy: StackedGRU,
    table: torch.Tensor,
    table_mask: torch.Tensor,
    ref_logp: torch.Tensor,
    chosen: list[np.ndarray],
    rejected: list[np.ndarray],
    *,
    betas: list[float],
    steps: int,
    lr: float,
    seeds: list[int],
    batch_size: int,
    log_every: int,
) -> list[pd.DataFrame]:
    """DPO (Rafailov et al. 2023) of every model of ``policy`` on its own pairs, as one stacked run.

    ``table`` ``[R, T]`` (span ``table_mask``) holds every (prompt, output) sequence and
    ``ref_logp[c]`` ``[R]`` its log-probability under model c's frozen reference; model c's
    pairs are rows ``chosen[c][i]`` over ``rejected[c][i]``. Each model trains as
    ``tuning.train_dpo`` trains one: minibatches of ``batch_size`` pairs drawn with
    replacement by a generator seeded with ``seeds[c]``, loss
    ``−log σ(β_c [(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))])`` averaged
    over the minibatch, its gradient clipped to norm 1, Adam with learning rate ``lr``.
    Trains ``policy`` in place; returns one log frame per model (``step, loss,
    reward_margin, accuracy`` every ``log_every`` steps and the last).
    Explained in :ref:`sec-preference-setup`.
    """
    C = policy.chains
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1; got {steps}, {batch_size}")
    if any(len(c) == 0 for c in chosen):
        raise ValueError("no preference pairs to train on")
    device = policy.w_ih.device
    n_max = max(len(c) for c in chosen)
    pad = np.zeros(n_max, dtype=np.int64)
    rows_w = torch.as_tensor(np.stack([np.concatenate([c, pad[len(c) :]]) for c in chosen]))
    rows_l = torch.as_tensor(np.stack([np.concatenate([c, pad[len(c) :]]) for c in rejected]))
    beta = torch.as_tensor(betas, dtype=torch.float32, device=device)[:, None]
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    sizes = [len(c) for c in chosen]
    chain = torch.arange(C)[:, None]
    ref_logp = ref_logp.float()
    opt = Adam(policy.parameters(), lr=lr)
    policy.train()
    logs: list[list[dict]] = [[] for _ in range(C)]
    for step in range(1, steps + 1):
        idx = torch.stack([torch.randint(n, (batch_size,), generator=g) for n, g in zip(sizes, gens)])
        rw, rl = rows_w[chain, idx], rows_l[chain, idx]  # [C, batch]
        rows = torch.cat([rw, rl], 1)
        lp = stacked_sequence_logprob(policy, table[rows].to(device), table_mask[rows].to(device))
        ref = ref_logp[chain, rows].to(device)
        margin = (lp[:, :batch_size] - ref[:, :batch_size]) - (lp[:, batch_size:] - ref[:, batch_size:])
        loss = -F.logsigmoid(beta * margin).mean(1)
        opt.zero_grad()
        loss.sum().backward()
        clip_grad_norm_per_replica(policy.parameters(), 1.0)
        opt.step()
        if (log_every and step % log_every == 0) or step == steps:
            with torch.no_grad():
                rm = (beta[:, 0] * margin.mean(1)).cpu().numpy()
                acc = (margin > 0).float().mean(1).cpu().numpy()
                ls = loss.detach().cpu().numpy()
            for c in range(C):
                logs[c].append(
                    {"step": step, "loss": float(ls[c]), "reward_margin": float(rm[c]), "accuracy": float(acc[c])}
                )
    policy.eval()
    return [pd.DataFrame(lg) for lg in logs]


def chunk_rows(models: int, seq_len: int, width: int, budget: float = 4e6) -> int:
    """Rows per chunk so that ``models × rows × seq_len × width`` floats (the widest activation:
    logits or the three GRU gates) stay near ``budget``.

    Explained in :ref:`sec-preference-setup`.
    """
    return max(32, int(math.floor(budget / max(1, models * seq_len * width))))
