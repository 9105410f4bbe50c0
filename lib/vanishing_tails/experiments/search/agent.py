"""The search agents: the book's :class:`~vanishing_tails.core.lm.TinyTransformer`, many at once.

The unit of replication is a seed, and every seed trains several agents (one per arm), so
all agents of a run are held as one :class:`vanishing_tails.core.lm.Stack` (shared with
chapter 4): ``M`` TinyTransformers of one size (initialised by
:func:`vanishing_tails.core.lm.build_model`) whose weights are stacked along a leading
replica axis and run as one batched model. The arithmetic is the TinyTransformer's
(pre-norm layers, exact GELU, learned positions); each replica keeps its own weights, and
Adam (:class:`vanishing_tails.core.optim.Adam`, elementwise) keeps its own moments, so
stacking only removes the per-model overhead of running tiny models one by one.

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

from vanishing_tails.core import lm
from vanishing_tails.core.lm import Stack as Stack  # re-exported: chapter 6's code and tests use ag.Stack
from vanishing_tails.core.optim import Adam as Adam  # re-exported, as ag.Adam

from .world import ACTION_POS, LENGTH, MAX_ACTIONS, N_ACTIONS, STRATEGIES, Env, World, run_programs, strategy_labels


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
