"""A generated document collection and the search environment the agents act in (chapter 6).

**The collection.** A world holds ``E`` entities. Entity ``e`` has a value
``value[e] ∈ {0, …, V−1}`` (the attribute a question asks for) and exactly one outgoing link
``link[e]``, drawn as a random cyclic permutation, so that every entity also has exactly one
*source* that links to it, ``source[link[e]] = e``. A search engine indexes some entities by
name, and category pages list some of them. Training targets are indexed and listed; the
``n_held_out`` held-out targets are neither: new pages that only a link reaches.

**A question** about target ``X`` reads "the value of X, which Y links to" (``Y`` =
``source[X]``) and is the token prefix ``BOS X Y``.

**Actions.** The agent emits one token per turn, at most :data:`MAX_ACTIONS` turns; the
environment fills each action's argument from the question and answers with one observation
token:

==========  ==================================================  ============================
action      what the environment does                           observation
==========  ==================================================  ============================
``find``    search(X): the result is X if X is indexed          ``hit`` / ``none``
``list``    search(category of X): X if its page lists it       ``hit`` / ``none``
``hub``     search(Y): the result is the source page Y          ``hit``
``open``    open the last result, if any                        its value token / ``none``
``follow``  follow the link of the open page, if any            its value token / ``none``
``v``       answer the value ``v`` (ends the episode)           —
==========  ==================================================  ============================

The reward is 1 when the answer equals ``value[X]`` *and* the open page is X's: the grader
checks the citation, so a value guessed or read off another page earns nothing (a stand-in
for an answer space too large to guess in; here there are only ``V`` values). Three programs solve a training question
— the :data:`STRATEGIES` *direct* (``find open v``), *browse* (``list open v``) and
*multi-hop* (``hub open follow v``) — and only multi-hop solves a held-out one. The
environment labels every episode with the strategy whose program it ran (or ``other``).
Episodes are token rows ``BOS X Y a1 o1 a2 o2 a3 o3 a4`` (PAD after the answer); every
function here works on a whole batch of them at once, ``[M, B]`` (replicas × episodes).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from vanishing_tails.core.lm import Vocab

ACTIONS = ("find", "list", "hub", "open", "follow")
FIND, LIST, HUB, OPEN, FOLLOW = range(len(ACTIONS))
N_ACTIONS = len(ACTIONS)
ANSWER = -1  # an answer in a program (any value token)
MAX_ACTIONS = 4
ACTION_POS = (3, 5, 7, 9)  # token positions of the actions in an episode row
LENGTH = ACTION_POS[-1] + 1
STRATEGIES = ("direct", "browse", "multi-hop", "other")
PROGRAMS = {
    "direct": (FIND, OPEN, ANSWER),
    "browse": (LIST, OPEN, ANSWER),
    "multi-hop": (HUB, OPEN, FOLLOW, ANSWER),
}


@dataclass(frozen=True)
class Layout:
    """The token vocabulary of a world size and where each kind of token lives.

    The policy's *legal* outputs are the five actions followed by the ``V`` value tokens
    (``legal`` holds their token ids); a legal index ``i ≥ 5`` answers value ``i − 5``.
    Explained in :ref:`sec-search-world`.
    """

    n_entities: int
    n_values: int

    @cached_property
    def vocab(self) -> Vocab:
        return Vocab([*ACTIONS, "hit", "none", *self.value_names, *self.entity_names], level="word")

    @cached_property
    def value_names(self) -> list[str]:
        return [f"v{i}" for i in range(self.n_values)]

    @cached_property
    def entity_names(self) -> list[str]:
        return [f"e{i}" for i in range(self.n_entities)]

    def ids(self, names) -> torch.Tensor:
        stoi = self.vocab.stoi
        return torch.tensor([stoi[n] for n in names], dtype=torch.long)

    @cached_property
    def legal(self) -> torch.Tensor:
        return self.ids([*ACTIONS, *self.value_names])

    @property
    def n_legal(self) -> int:
        return N_ACTIONS + self.n_values


@dataclass(frozen=True)
class World:
    """``W`` generated worlds as tensors ``[W, E]`` (see the module docstring).

    ``train`` ``[W, E − n_held_out]`` and ``held_out`` ``[W, n_held_out]`` list the target
    entities of the training and held-out questions. Explained in :ref:`sec-search-world`.
    """

    layout: Layout
    value: torch.Tensor
    link: torch.Tensor
    source: torch.Tensor
    indexed: torch.Tensor
    listed: torch.Tensor
    train: torch.Tensor
    held_out: torch.Tensor

    def __len__(self) -> int:
        return self.value.shape[0]


def make_worlds(n_worlds: int, *, n_entities: int, n_held_out: int, n_values: int, seed: int) -> World:
    """``n_worlds`` independent worlds; world ``i`` depends only on ``seed`` and ``i``.

    Explained in :ref:`sec-search-world`.
    """
    if n_entities < 3 or not 1 <= n_held_out <= n_entities - 2:
        raise ValueError(f"need n_entities >= 3 and 1 <= n_held_out <= n_entities - 2; got {n_entities}, {n_held_out}")
    if n_values < 2:
        raise ValueError(f"n_values must be >= 2, got {n_values}")
    E = n_entities
    cols = {k: [] for k in ("value", "link", "source", "indexed", "listed", "train", "held_out")}
    for seq in np.random.SeedSequence(seed).spawn(n_worlds):
        rng = np.random.default_rng(seq)
        order = rng.permutation(E)  # one cycle through all entities: order[i] -> order[i + 1]
        link = np.empty(E, dtype=np.int64)
        link[order] = np.roll(order, -1)
        source = np.empty(E, dtype=np.int64)
        source[link] = np.arange(E)
        held = np.sort(rng.choice(E, n_held_out, replace=False))
        fresh = np.zeros(E, dtype=bool)
        fresh[held] = True
        cols["value"].append(rng.integers(n_values, size=E))
        cols["link"].append(link)
        cols["source"].append(source)
        cols["indexed"].append(~fresh)
        cols["listed"].append(~fresh)
        cols["train"].append(np.flatnonzero(~fresh))
        cols["held_out"].append(held)
    t = {k: torch.as_tensor(np.stack(v)) for k, v in cols.items()}
    return World(Layout(n_entities, n_values), **t)


def _take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[w, index]`` per row: x ``[M, E]``, index ``[M, B]`` (negative indices read entity 0)."""
    return x.gather(1, index.clamp(min=0))


class Env:
    """A batch of episodes ``[M, B]``: replica ``m`` acts in world ``world_index[m]`` on the
    questions whose targets are ``targets[m]``. :meth:`step` applies one legal action per
    episode and returns the observation tokens (PAD where the episode had already ended).
    Explained in :ref:`sec-search-world`.
    """

    def __init__(self, world: World, world_index: torch.Tensor, targets: torch.Tensor):
        w = world_index.long()
        self.layout = world.layout
        self.value, self.link = world.value[w], world.link[w]
        self.indexed, self.listed = world.indexed[w], world.listed[w]
        self.X = targets.long()
        self.Y = _take(world.source[w], self.X)
        shape = self.X.shape
        self.found = torch.full(shape, -1, dtype=torch.long)
        self.opened = torch.full(shape, -1, dtype=torch.long)
        self.done = torch.zeros(shape, dtype=torch.bool)
        self.reward = torch.zeros(shape)
        self.turn = 0
        self._value_tok = self.layout.ids(self.layout.value_names)
        ids = self.layout.ids(["hit", "none"])
        self._hit, self._none = int(ids[0]), int(ids[1])

    def prefix(self) -> torch.Tensor:
        """The question rows ``BOS X Y`` ``[M, B, 3]``."""
        ent = self.layout.ids(self.layout.entity_names)
        bos = torch.full_like(self.X, self.layout.vocab.bos_id)
        return torch.stack([bos, ent[self.X], ent[self.Y]], dim=-1)

    def _value_token(self, e: torch.Tensor) -> torch.Tensor:
        return self._value_tok[_take(self.value, e)]

    def step(self, action: torch.Tensor) -> torch.Tensor:
        """Apply legal indices ``action`` ``[M, B]``; return observation token ids ``[M, B]``."""
        if self.turn >= MAX_ACTIONS:
            raise ValueError(f"an episode has at most {MAX_ACTIONS} actions")
        alive = ~self.done
        hit, none = self._hit, self._none
        obs = torch.zeros_like(action)  # PAD
        for a, ok in ((FIND, _take(self.indexed, self.X)), (LIST, _take(self.listed, self.X))):
            m = alive & (action == a)
            self.found = torch.where(m, torch.where(ok, self.X, -1), self.found)
            obs = torch.where(m, torch.where(ok, hit, none), obs)
        m = alive & (action == HUB)
        self.found = torch.where(m, self.Y, self.found)
        obs = torch.where(m, hit, obs)
        m = alive & (action == OPEN)
        ok = m & (self.found >= 0)
        self.opened = torch.where(ok, self.found, self.opened)
        obs = torch.where(m, torch.where(ok, self._value_token(self.opened), none), obs)
        m = alive & (action == FOLLOW)
        ok = m & (self.opened >= 0)
        self.opened = torch.where(ok, _take(self.link, self.opened), self.opened)
        obs = torch.where(m, torch.where(ok, self._value_token(self.opened), none), obs)
        answer = alive & (action >= N_ACTIONS)
        right = ((action - N_ACTIONS) == _take(self.value, self.X)) & (self.opened == self.X)
        self.reward = torch.where(answer & right, 1.0, self.reward)
        self.done = self.done | answer
        self.turn += 1
        if self.turn == MAX_ACTIONS:
            self.done = torch.ones_like(self.done)
        return obs


def strategy_labels(actions: torch.Tensor) -> torch.Tensor:
    """The environment's strategy label of each episode: an index into :data:`STRATEGIES`.

    ``actions`` ``[..., MAX_ACTIONS]`` holds legal indices (−1 after the episode ended). An
    episode is labelled with the strategy whose program it ran exactly (any answer value),
    else ``other``. Explained in :ref:`sec-search-world`.
    """
    a = torch.where(actions >= N_ACTIONS, ANSWER, actions)
    a = torch.where(actions < 0, -2, a)  # no action
    label = torch.full(actions.shape[:-1], STRATEGIES.index("other"), dtype=torch.long)
    for s, prog in PROGRAMS.items():
        want = torch.tensor([*prog, *[-2] * (MAX_ACTIONS - len(prog))])
        label = torch.where((a == want).all(-1), STRATEGIES.index(s), label)
    return label


def run_programs(
    world: World, world_index: torch.Tensor, targets: torch.Tensor, strategy: torch.Tensor, answer: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run each episode's strategy program in the environment with the given answer values.

    ``strategy`` ``[M, B]`` indexes :data:`STRATEGIES` (not ``other``), ``answer`` ``[M, B]``
    the value answered. Returns (episode token rows ``[M, B, LENGTH]``, rewards ``[M, B]``):
    the demonstrations of :func:`demonstrations` and the canonical paths whose probabilities
    :func:`vanishing_tails.experiments.search.agent.strategy_probabilities` reads.
    Explained in :ref:`sec-search-world`.
    """
    env = Env(world, world_index, targets)
    rows = torch.zeros(*targets.shape, LENGTH, dtype=torch.long)
    rows[..., :3] = env.prefix()
    legal = world.layout.legal
    programs = torch.full((len(PROGRAMS), MAX_ACTIONS), -1, dtype=torch.long)
    for i, prog in enumerate(PROGRAMS.values()):
        programs[i, : len(prog)] = torch.tensor(prog)
    prog = programs[strategy]  # [M, B, MAX_ACTIONS]
    for t, pos in enumerate(ACTION_POS):
        a = prog[..., t]
        a = torch.where(a == ANSWER, N_ACTIONS + answer, a)
        alive = ~env.done & (a >= 0)
        rows[..., pos] = torch.where(alive, legal[a.clamp(min=0)], 0)
        obs = env.step(torch.where(alive, a, N_ACTIONS))  # a dead row "answers": no effect
        if pos + 1 < LENGTH:
            rows[..., pos + 1] = torch.where(alive, obs, 0)
    return rows, env.reward


def solves(world: World, world_index: torch.Tensor, targets: torch.Tensor, strategy: torch.Tensor) -> torch.Tensor:
    """Whether each episode's strategy program reaches the target's page before it answers.

    Runs the program's actions (all but the answer) in the environment and checks that the
    page open at the end is the target, so that answering the value just observed is right.
    ``strategy`` ``[M, B]`` indexes :data:`STRATEGIES` (not ``other``); returns ``[M, B]``.
    Explained in :ref:`sec-search-world`.
    """
    out = torch.zeros(targets.shape, dtype=torch.bool)
    for i, prog in enumerate(PROGRAMS.values()):
        env = Env(world, world_index, targets)
        for a in prog[:-1]:
            env.step(torch.full(targets.shape, a))
        out = torch.where(strategy == i, env.opened == env.X, out)
    return out


def demonstrations(
    world: World, world_index: torch.Tensor, mix: torch.Tensor, wrong: torch.Tensor, n: int, *, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` demonstrations per replica on training questions, strategies drawn from ``mix``.

    ``mix`` ``[M, 3]`` is each replica's strategy distribution (direct, browse, multi-hop);
    where ``wrong[m]`` is true every demonstration answers a *wrong* value (uniform over the
    others), as in the wrong-answer behaviour priming of Jin, Paladugu & Xiong 2025. Replica
    ``m``'s demonstrations depend only on ``seed``, ``m`` and its arguments. Returns (token
    rows ``[M, n, LENGTH]``, strategy indices ``[M, n]``). Explained in :ref:`sec-search-sft`.
    """
    M = len(world_index)
    targets, strategy, answer = [], [], []
    for m, seq in enumerate(np.random.SeedSequence(seed).spawn(M)):
        rng = np.random.default_rng(seq)
        w = int(world_index[m])
        x = rng.choice(world.train[w].numpy(), size=n)
        pm = mix[m].double().numpy()
        s = rng.choice(len(PROGRAMS), size=n, p=pm / pm.sum())
        v = world.value[w].numpy()[x]
        if bool(wrong[m]):
            v = (v + rng.integers(1, world.layout.n_values, size=n)) % world.layout.n_values
        targets.append(x)
        strategy.append(s)
        answer.append(v)
    t, s, v = (torch.as_tensor(np.stack(a)) for a in (targets, strategy, answer))
    rows, _ = run_programs(world, world_index, t, s, v)
    return rows, s
