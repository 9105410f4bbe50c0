"""The search agents: the book's :class:`~vanishing_tails.core.lm.TinyTransformer`, many at once.

The unit of replication is a seed, and every seed trains several agents (one per arm), so
all agents of a run are held as one :class:`Stack`: ``M`` TinyTransformers of one size
(initialised by :func:`vanishing_tails.core.lm.build_model`) whose weights are stacked
along a leading replica axis and run as one batched model. The arithmetic is the
TinyTransformer's (pre-norm layers, exact GELU, learned positions); each replica keeps its
own weights, and Adam (elementwise) keeps its own moments, so stacking only removes the
per-model overhead of running tiny models one by one.

The policy reads an episode row (:mod:`.world`) and, at each action position, puts a
softmax over the *legal* outputs only (five actions and the value tokens).
:func:`rollout` samples whole episodes for every replica at once: one forward pass and one
batched environment step per turn (:data:`~.world.MAX_ACTIONS` turns), no loop over
episodes or tokens of an episode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from vanishing_tails.core import lm

from .world import ACTION_POS, LENGTH, MAX_ACTIONS, N_ACTIONS, STRATEGIES, Env, World, run_programs, strategy_labels

_GLOBAL = {"embed": "embed.weight", "pos": "pos.weight", "norm_w": "norm.weight", "norm_b": "norm.bias",
           "head_w": "head.weight", "head_b": "head.bias"}  # fmt: skip
_LAYER = {"norm1_w": "norm1.weight", "norm1_b": "norm1.bias", "qkv_w": "self_attn.in_proj_weight",
          "qkv_b": "self_attn.in_proj_bias", "out_w": "self_attn.out_proj.weight",
          "out_b": "self_attn.out_proj.bias", "norm2_w": "norm2.weight", "norm2_b": "norm2.bias",
          "ff1_w": "linear1.weight", "ff1_b": "linear1.bias", "ff2_w": "linear2.weight",
          "ff2_b": "linear2.bias"}  # fmt: skip


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-replica ``x @ w.T + b``: x ``[M, N, i]``, w ``[M, o, i]``, b ``[M, o]``."""
    return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))


def _norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(b.unsqueeze(1), F.layer_norm(x, x.shape[-1:]), w.unsqueeze(1))


class Stack:
    """``M`` TinyTransformers of one size as stacked weights ``{name: [M, ...]}``, run as one.

    Build it with :func:`build_stack`; :meth:`logits` maps tokens ``[M, B, T]`` to
    next-token logits ``[M, B, T, V]``; :meth:`model` gives replica ``i`` back as a
    TinyTransformer (the tests check that both compute the same logits).
    Explained in :ref:`sec-search-agent`.
    """

    def __init__(self, params: dict[str, torch.Tensor], n_layers: int, n_heads: int):
        self.params = params
        self.n_layers = n_layers
        self.n_heads = n_heads

    @classmethod
    def from_models(cls, models: Sequence[lm.TinyTransformer]) -> Stack:
        """Stack TinyTransformers of one size (weights copied)."""
        states = [m.state_dict() for m in models]
        first = models[0]
        n_layers, n_heads = len(first.blocks.layers), first.blocks.layers[0].self_attn.num_heads

        def st(key: str) -> torch.Tensor:
            return torch.stack([s[key].detach() for s in states]).clone()

        params = {k: st(v) for k, v in _GLOBAL.items()}
        for i in range(n_layers):
            params.update({f"{i}.{k}": st(f"blocks.layers.{i}.{v}") for k, v in _LAYER.items()})
        return cls(params, n_layers, n_heads)

    def __len__(self) -> int:
        return self.params["embed"].shape[0]

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def model(self, i: int) -> lm.TinyTransformer:
        """Replica ``i`` as a :class:`~vanishing_tails.core.lm.TinyTransformer` (eval mode)."""
        V, d = self.params["embed"].shape[1:]
        m = lm.TinyTransformer(
            V, d_model=d, n_layers=self.n_layers, n_heads=self.n_heads, max_len=self.params["pos"].shape[1]
        )
        state = {v: self.params[k][i].detach().clone() for k, v in _GLOBAL.items()}
        for j in range(self.n_layers):
            state.update(
                {f"blocks.layers.{j}.{v}": self.params[f"{j}.{k}"][i].detach().clone() for k, v in _LAYER.items()}
            )
        m.load_state_dict(state)
        return m.eval()

    def take(self, index: Sequence[int] | torch.Tensor, *, trainable: bool = False) -> Stack:
        """A new stack of replicas ``index`` (repeats allowed) with copied weights;
        ``trainable=True`` makes them leaves that require gradients."""
        idx = torch.as_tensor(index, dtype=torch.long)
        params = {k: v.detach().index_select(0, idx).clone().requires_grad_(trainable) for k, v in self.params.items()}
        return Stack(params, self.n_layers, self.n_heads)

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Causal next-token logits ``[M, B, T, V]`` of tokens ``[M, B, T]``."""
        p = self.params
        M, B, T = tokens.shape
        V, d = p["embed"].shape[1:]
        H = self.n_heads
        offset = (torch.arange(M) * V).view(M, 1, 1)
        x = F.embedding(tokens + offset, p["embed"].reshape(M * V, d)) + p["pos"][:, :T].unsqueeze(1)
        x = x.reshape(M, B * T, d)
        for i in range(self.n_layers):
            q = {k: p[f"{i}.{k}"] for k in _LAYER}
            qkv = _linear(_norm(x, q["norm1_w"], q["norm1_b"]), q["qkv_w"], q["qkv_b"])
            qh, kh, vh = qkv.view(M * B, T, 3, H, d // H).permute(2, 0, 3, 1, 4)
            att = F.scaled_dot_product_attention(qh, kh, vh, is_causal=True)
            x = x + _linear(att.transpose(1, 2).reshape(M, B * T, d), q["out_w"], q["out_b"])
            h = F.gelu(_linear(_norm(x, q["norm2_w"], q["norm2_b"]), q["ff1_w"], q["ff1_b"]))
            x = x + _linear(h, q["ff2_w"], q["ff2_b"])
        return _linear(_norm(x, p["norm_w"], p["norm_b"]), p["head_w"], p["head_b"]).view(M, B, T, V)


class Adam:
    """Adam (Kingma & Ba 2015) on a stack's weights, the arithmetic of ``torch.optim.Adam``
    without weight decay (elementwise, so every replica keeps its own moments).

    Written out because ``torch.optim`` imports the ``torch._dynamo`` compiler on first use,
    which costs seconds of CPU at the smoke scale; the tests check it against
    ``torch.optim.Adam`` step for step. Explained in :ref:`sec-search-agent`.
    """

    def __init__(self, params: Sequence[torch.Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        if not lr >= 0:
            raise ValueError(f"the learning rate must be >= 0, got {lr!r}")
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            m.mul_(b1).add_(p.grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            p.addcdiv_(m, (v / c2).sqrt_().add_(self.eps), value=-self.lr / c1)


def build_stack(vocab_size: int, seeds: Sequence[int], *, d_model: int, n_layers: int, n_heads: int) -> Stack:
    """One freshly initialised TinyTransformer per seed in ``seeds``, stacked.

    Each is :func:`vanishing_tails.core.lm.build_model` ``("transformer", seed=s)`` with room
    for one episode row. Explained in :ref:`sec-search-agent`.
    """
    models = [
        lm.build_model("transformer", vocab_size, seed=int(s), d_model=d_model, n_layers=n_layers,
                       n_heads=n_heads, max_len=LENGTH)
        for s in seeds
    ]  # fmt: skip
    return Stack.from_models(models)


def legal_logp(stack: Stack, rows: torch.Tensor, legal: torch.Tensor) -> torch.Tensor:
    """log π(· | state) over the legal outputs at every action position: ``[M, B, MAX_ACTIONS, A]``.

    ``rows`` ``[M, B, LENGTH]`` are episode rows; the state of action ``t`` is the row up to
    its position. Differentiable. Explained in :ref:`sec-search-agent`.
    """
    pos = torch.tensor(ACTION_POS) - 1
    logits = stack.logits(rows[..., : ACTION_POS[-1]])[:, :, pos][..., legal]
    return torch.log_softmax(logits.float(), dim=-1)


@dataclass
class Rollout:
    """Sampled episodes of every replica: token ``rows`` ``[M, B, LENGTH]``, the legal index of
    each ``actions`` ``[M, B, MAX_ACTIONS]`` (−1 after the end), the ``acted`` mask of the same
    shape, ``reward`` ``[M, B]``, the environment's ``strategy`` label ``[M, B]`` and the
    sampling policy's legal log-probabilities ``logp`` ``[M, B, MAX_ACTIONS, A]`` (no gradient).
    Explained in :ref:`sec-search-agent`.
    """

    rows: torch.Tensor
    actions: torch.Tensor
    acted: torch.Tensor
    reward: torch.Tensor
    strategy: torch.Tensor
    logp: torch.Tensor


@torch.no_grad()
def rollout(stack: Stack, env: Env, generators: Sequence[torch.Generator]) -> Rollout:
    """Sample one episode per row of ``env`` from every replica, all at once.

    Per turn: one batched forward pass of the stack on the rows so far, one draw per episode
    (inverse CDF on uniforms from replica ``m``'s own ``generators[m]``, so a replica's
    episodes do not depend on the other replicas), and one batched :meth:`Env.step`.
    Explained in :ref:`sec-search-agent`.
    """
    M, B = env.X.shape
    if len(generators) != M:
        raise ValueError(f"need one generator per replica ({M}), got {len(generators)}")
    legal = env.layout.legal
    rows = torch.zeros(M, B, LENGTH, dtype=torch.long)
    rows[..., :3] = env.prefix()
    actions = torch.full((M, B, MAX_ACTIONS), -1, dtype=torch.long)
    acted = torch.zeros(M, B, MAX_ACTIONS, dtype=torch.bool)
    logp = torch.zeros(M, B, MAX_ACTIONS, len(legal))
    for t, pos in enumerate(ACTION_POS):
        alive = ~env.done
        logits = stack.logits(rows[..., :pos])[:, :, -1][..., legal]
        logp[:, :, t] = torch.log_softmax(logits.float(), dim=-1)
        cdf = torch.softmax(logits.double(), dim=-1).cumsum(-1)
        u = torch.stack([torch.rand(B, generator=g, dtype=torch.float64) for g in generators])
        a = torch.searchsorted(cdf, (u * cdf[..., -1]).unsqueeze(-1), right=True).squeeze(-1)
        a = a.clamp(max=len(legal) - 1)
        obs = env.step(torch.where(alive, a, N_ACTIONS))
        rows[..., pos] = torch.where(alive, legal[a], 0)
        if pos + 1 < LENGTH:
            rows[..., pos + 1] = torch.where(alive, obs, 0)
        actions[..., t] = torch.where(alive, a, -1)
        acted[..., t] = alive
    return Rollout(rows, actions, acted, env.reward.clone(), strategy_labels(actions), logp)


def taken(logp: torch.Tensor, actions: torch.Tensor, acted: torch.Tensor) -> torch.Tensor:
    """log π of the actions taken, ``[M, B, MAX_ACTIONS]`` (0 where no action was taken).

    Explained in :ref:`sec-search-agent`.
    """
    return logp.gather(-1, actions.clamp(min=0).unsqueeze(-1)).squeeze(-1) * acted


def state_entropy(logp: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the policy at every state, ``[..., A] -> [...]``.

    Explained in :ref:`sec-search-agent`.
    """
    return -(logp.exp() * logp).sum(-1)


@torch.no_grad()
def strategy_probabilities(
    stack: Stack, world: World, world_index: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact probability that each replica runs each strategy's program, per question.

    The environment is deterministic, so a program's probability is the product of its
    actions' probabilities along its one path, with the final answer summed over all values.
    Returns (``[M, Q, len(STRATEGIES)]``, whose last column, ``other``, is the remainder;
    the probability of each strategy's *first* action ``[M, Q, 3]``). Their ratio is how
    often a strategy, once started, is carried through. Explained in :ref:`sec-search-breadth`.
    """
    M, Q = targets.shape
    S = len(STRATEGIES) - 1
    strategy = torch.arange(S).repeat(Q).view(1, Q * S).expand(M, -1)
    tgt = targets.repeat_interleave(S, dim=1)
    rows, _ = run_programs(world, world_index, tgt, strategy, torch.zeros_like(tgt))
    logp = legal_logp(stack, rows, world.layout.legal)  # [M, Q*S, T, A]
    legal = world.layout.legal
    inv = torch.full((int(legal.max()) + 1,), -1, dtype=torch.long)
    inv[legal] = torch.arange(len(legal))
    act = inv[rows[..., list(ACTION_POS)]]  # legal index, -1 on PAD
    answer_lp = torch.logsumexp(logp[..., N_ACTIONS:], dim=-1)
    step_lp = torch.where(act >= N_ACTIONS, answer_lp, logp.gather(-1, act.clamp(min=0).unsqueeze(-1)).squeeze(-1))
    step_lp = step_lp * (act >= 0)
    p = step_lp.sum(-1).view(M, Q, S).exp()
    first = step_lp[..., 0].view(M, Q, S).exp()
    return torch.cat([p, (1 - p.sum(-1, keepdim=True)).clamp(min=0)], dim=-1), first
