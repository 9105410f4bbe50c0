"""SFT on demonstrations, then GRPO with an outcome reward, for every arm and seed at once.

One call of :func:`experiment` runs the whole chapter design. Each replicate (a seed) has
its own generated world (:func:`~.world.make_worlds`), its own initial TinyTransformer
(shared by all of its arms) and three demonstration sets drawn from the training
questions:

* **narrow** — the direct look-up in a share ``narrow_share`` of the demonstrations, the
  other two strategies splitting the rest;
* **diverse** — the three strategies in equal shares;
* **wrong-answer diverse** — the diverse set with every final answer replaced by a wrong
  value (the surprising arm of Jin, Paladugu & Xiong 2025).

SFT trains one agent per set (:func:`sft`); RL (:func:`rl_train`) then trains, from those, the arms
of :data:`ARMS`. The RL update is GRPO without clipping: per step, ``questions_per_step``
training questions, a group of ``group_size`` episodes each, reward 1 for a right answer,
group-normalised advantages (:func:`vanishing_tails.core.rl.group_advantages`; with a KL
strength ``kl_beta > 0``, the KL-shaped advantages of
:func:`vanishing_tails.core.rl.kl_shaped_advantages` to the agent's SFT model) and the loss
:func:`vanishing_tails.core.rl.policy_gradient_loss`, minus ``entropy_beta`` times the mean
state entropy in the entropy-bonus arm. All arms of a seed draw their questions and
episodes from the same random stream (common random numbers), so arm differences are paired
within the seed; every evaluation of every arm of a seed uses the same random numbers too, so
a change between two evaluations is the policy's, not the sampling's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from vanishing_tails.core import metrics, rl, tails

from . import agent as ag
from . import entropy as en
from . import world as wd

SETS = ("narrow", "diverse", "wrong")  # demonstration sets


@dataclass(frozen=True)
class Arm:
    """An arm: the demonstration set its agent was fine-tuned on, whether RL follows, and the
    entropy-bonus coefficient of its RL loss. Explained in :ref:`sec-search-arms`.
    """

    name: str
    demos: str
    entropy_bonus: bool = False


ARMS = (
    Arm("narrow → RL", "narrow"),
    Arm("diverse → RL", "diverse"),
    Arm("narrow → RL + entropy bonus", "narrow", entropy_bonus=True),
    Arm("wrong-answer diverse → RL", "wrong"),
)
NARROW, DIVERSE, ENTROPY, WRONG = (a.name for a in ARMS)
SFT_ONLY = {"narrow SFT": NARROW, "diverse SFT": DIVERSE}  # SFT alone = step 0 of these RL arms


def _sub(seed: int, *key: int) -> int:
    """An integer seed for replicate-level stream ``key`` of the call's ``seed``."""
    seq = np.random.SeedSequence(seed, spawn_key=key)
    return int(seq.generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> np.uint64(1))


def _generators(seeds) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def demo_mix(narrow_share: float) -> dict[str, list[float]]:
    """The strategy shares (direct, browse, multi-hop) of each demonstration set.

    Explained in :ref:`sec-search-sft`.
    """
    if not 0.0 <= narrow_share <= 1.0:
        raise ValueError(f"parameter 'narrow_share' must be in [0, 1]; got {narrow_share!r}")
    rest = (1.0 - narrow_share) / 2
    third = 1.0 / 3.0
    return {"narrow": [narrow_share, rest, rest], "diverse": [third] * 3, "wrong": [third] * 3}


def sft(
    stack: ag.Stack, rows: torch.Tensor, legal: torch.Tensor, *, steps: int, batch_size: int, lr: float, seeds
) -> pd.DataFrame:
    """Teacher-forced SFT of every replica on its own demonstrations (in place).

    ``rows`` ``[M, n, LENGTH]``; the loss is the cross-entropy of the demonstrated actions
    under the legal-output softmax, per replica, Adam (as
    :func:`vanishing_tails.core.lm.train_lm`, without weight decay). Replica ``m`` draws its minibatches from
    ``seeds[m]``. Returns the loss per logged step ``step, replica, loss``.
    Explained in :ref:`sec-search-sft`.
    """
    M, n, _ = rows.shape
    gens = _generators(seeds)
    opt = ag.Adam(stack.parameters(), lr=lr)
    acts = rows[..., list(wd.ACTION_POS)]
    inv = torch.full((int(legal.max()) + 1,), -1, dtype=torch.long)
    inv[legal] = torch.arange(len(legal))
    target = inv[acts]  # legal index, -1 where no action
    log = []
    for step in range(1, steps + 1):
        idx = torch.stack([torch.randint(n, (batch_size,), generator=g) for g in gens])  # [M, b]
        batch = rows.gather(1, idx[..., None].expand(-1, -1, rows.shape[-1]))
        tgt = target.gather(1, idx[..., None].expand(-1, -1, target.shape[-1]))
        logp = ag.legal_logp(stack, batch, legal)
        nll = -logp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (tgt >= 0)
        loss = nll.sum((1, 2)) / (tgt >= 0).sum((1, 2)).clamp(min=1)
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
        if step == steps or step % max(1, steps // 10) == 0:
            log += [{"step": step, "replica": m, "loss": float(v)} for m, v in enumerate(loss.detach())]
    for p in stack.parameters():
        p.requires_grad_(False)
    return pd.DataFrame(log)


@torch.no_grad()
def evaluate(
    stack: ag.Stack, world: wd.World, world_index: torch.Tensor, *, n_eval: int, k: int, n_distinct: int, generators
) -> dict[str, np.ndarray]:
    """Every measure of the chapter for every replica, ``{name: [M]}`` (``p_train`` ``[M, 4]``).

    On the training and held-out questions, ``n_eval`` sampled episodes each: success@1,
    success@k (the unbiased estimator of Chen et al. 2021 per question, averaged over
    questions), the mean state ("action") entropy and the trajectory entropy (the sum of the
    state entropies along an episode, whose mean is the entropy of the episode distribution:
    the chain rule), and the exact strategy distribution on the training questions
    (:func:`~.agent.strategy_probabilities`) with its entropy over the three strategies and
    the expected number of distinct strategies in ``n_distinct`` episodes.
    Explained in :ref:`sec-search-breadth`.
    """
    out: dict[str, np.ndarray] = {}
    for split, targets in (("train", world.train[world_index]), ("held-out", world.held_out[world_index])):
        Q = targets.shape[1]
        env = wd.Env(world, world_index, targets.repeat_interleave(n_eval, dim=1))
        ro = ag.rollout(stack, env, generators)
        H = ag.state_entropy(ro.logp) * ro.acted
        c = ro.reward.view(len(stack), Q, n_eval).sum(-1).numpy()
        out[f"{split} success@1"] = ro.reward.mean(1).numpy()
        out[f"{split} success@k"] = metrics.pass_at_k(n_eval, c, k).mean(-1)
        out[f"{split} action entropy"] = (H.sum((1, 2)) / ro.acted.sum((1, 2))).numpy()
        out[f"{split} trajectory entropy"] = H.sum(-1).mean(1).numpy()
    p, first = ag.strategy_probabilities(stack, world, world_index, world.train[world_index])
    p, first = p.mean(1).double().numpy(), first.mean(1).double().numpy()
    valid = p[:, :3] / np.clip(p[:, :3].sum(-1, keepdims=True), 1e-12, None)
    out["p_train"] = p
    out["first_train"] = first
    out["strategy entropy"] = metrics.entropy(np.clip(valid, 0, None) + 1e-300)
    out["distinct strategies"] = np.sum(-np.expm1(n_distinct * np.log1p(-np.clip(p[:, :3], 0, 1 - 1e-12))), -1)
    out["invalid share"] = p[:, 3]
    return out


@dataclass
class Result:
    """What :func:`experiment` returns.

    * ``evals`` — long frame ``arm, replicate, step, metric, value`` at every evaluation
      step (step 0 is the SFT model of each arm);
    * ``steps`` — one row per RL step, arm and replicate: the batch's mean state entropy
      and reward, the measured entropy change of the step ``dH`` (same states, before and
      after the update), its first-order prediction ``dH_pred`` (Cui et al.'s Lemma 1 on
      the actual logit changes), the first- plus second-order one ``dH_pred2`` and Cui et
      al.'s batch covariance ``cov``;
    * ``strategies`` — ``arm, replicate, step``, the exact strategy distribution on the
      training questions (columns of :data:`~.world.STRATEGIES`) and each strategy's
      first-action probability (``first direct``, ...);
    * ``sft_log`` — the SFT losses; ``reference`` — the narrow demonstrations' strategy mix.

    Explained in :ref:`sec-search-arms`.
    """

    evals: pd.DataFrame
    steps: pd.DataFrame
    strategies: pd.DataFrame
    sft_log: pd.DataFrame
    reference: np.ndarray


def _eval_rows(arms, replicates, step, ev) -> tuple[list[dict], list[dict]]:
    rows, strat = [], []
    for m, (arm, r) in enumerate(zip(arms, replicates)):
        for name, v in ev.items():
            if name not in ("p_train", "first_train"):
                rows.append({"arm": arm, "replicate": r, "step": step, "metric": name, "value": float(v[m])})
        first = {f"first {s}": v for s, v in zip(wd.STRATEGIES, ev["first_train"][m])}
        strat.append({"arm": arm, "replicate": r, "step": step, **dict(zip(wd.STRATEGIES, ev["p_train"][m])), **first})
    return rows, strat


def rl_train(
    stack: ag.Stack,
    ref: ag.Stack,
    world: wd.World,
    world_index: torch.Tensor,
    entropy_coef: torch.Tensor,
    *,
    steps: int,
    lr: float,
    group_size: int,
    questions_per_step: int,
    kl_beta: float,
    eval_every: int,
    evaluate_fn,
    seeds,
) -> tuple[list[dict], list[dict]]:
    """GRPO on every replica of ``stack`` at once (in place); see the module docstring.

    ``ref`` holds each replica's SFT model (the KL reference when ``kl_beta > 0``);
    ``entropy_coef`` ``[M]`` the entropy-bonus coefficient of each replica; replica ``m``
    samples from ``seeds[m]``. ``evaluate_fn(stack, step)`` is called at step 0 and every
    ``eval_every`` steps. Returns (per-step rows, evaluation results by step).
    Explained in :ref:`sec-search-arms`.
    """
    M = len(stack)
    legal = world.layout.legal
    gens = _generators(seeds)
    for p in stack.parameters():
        p.requires_grad_(True)
    opt = ag.Adam(stack.parameters(), lr=lr)
    n_train = world.train.shape[1]
    if questions_per_step > n_train:
        raise ValueError(f"questions_per_step must be <= the {n_train} training questions; got {questions_per_step}")
    train = world.train[world_index]
    log, evals = [], [(0, evaluate_fn(stack, 0))]
    for step in range(1, steps + 1):
        pick = torch.stack([torch.randperm(n_train, generator=g)[:questions_per_step] for g in gens])
        targets = train.gather(1, pick).repeat_interleave(group_size, dim=1)
        ro = ag.rollout(stack, wd.Env(world, world_index, targets), gens)
        logp = ag.legal_logp(stack, ro.rows, legal)
        lp_taken = ag.taken(logp, ro.actions, ro.acted)
        seq_lp = lp_taken.sum(-1).view(M, questions_per_step, group_size)
        rewards = ro.reward.view(M, questions_per_step, group_size)
        if kl_beta > 0:
            with torch.no_grad():
                ref_lp = ag.taken(ag.legal_logp(ref, ro.rows, legal), ro.actions, ro.acted).sum(-1)
            adv, _ = rl.kl_shaped_advantages(seq_lp, ref_lp.view_as(seq_lp), rewards, kl_beta)
        else:
            adv = rl.group_advantages(rewards)
        H = ag.state_entropy(logp)
        n_acted = ro.acted.sum((1, 2)).clamp(min=1)
        h_mean = (H * ro.acted).sum((1, 2)) / n_acted
        loss = rl.policy_gradient_loss(seq_lp, adv) - entropy_coef * h_mean
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
        with torch.no_grad():
            after = ag.legal_logp(stack, ro.rows, legal)
            before = logp.detach()
            dH = ((ag.state_entropy(after) - H.detach()) * ro.acted).sum((1, 2)) / n_acted
            dH_pred = (en.entropy_change_first_order(before, after - before) * ro.acted).sum((1, 2)) / n_acted
            dH_pred2 = (en.entropy_change_second_order(before, after - before) * ro.acted).sum((1, 2)) / n_acted
            adv_tok = adv.detach().reshape(M, -1, 1).expand_as(lp_taken)
            cov = en.batch_covariance(lp_taken.detach(), adv_tok, ro.acted)
        for m in range(M):
            log.append(
                {"replica": m, "step": step, "entropy": float(h_mean[m].detach()),
                 "reward": float(ro.reward[m].mean()), "dH": float(dH[m]), "dH_pred": float(dH_pred[m]),
                 "dH_pred2": float(dH_pred2[m]), "cov": float(cov[m])}
            )  # fmt: skip
        if step % eval_every == 0 or step == steps:
            evals.append((step, evaluate_fn(stack, step)))
    for p in stack.parameters():
        p.requires_grad_(False)
    return log, evals


def experiment(
    *,
    n_seeds: int,
    n_entities: int,
    n_held_out: int,
    n_values: int,
    narrow_share: float,
    n_demos: int,
    d_model: int,
    n_layers: int,
    n_heads: int,
    sft_steps: int,
    sft_lr: float,
    batch_size: int,
    rl_steps: int,
    rl_lr: float,
    group_size: int,
    questions_per_step: int,
    entropy_beta: float,
    kl_beta: float,
    eval_every: int,
    n_eval: int,
    k: int,
    n_distinct: int,
    seed: int,
) -> Result:
    """The whole design: worlds, SFT on the three demonstration sets, RL for every arm of
    :data:`ARMS`, evaluations — for ``n_seeds`` replicates in one stacked run.

    Replicate ``r``'s numbers depend only on ``seed``, ``r`` and the sizes, not on
    ``n_seeds``. Explained in :ref:`sec-search-arms`.
    """
    if k > n_eval:
        raise ValueError(f"k must be <= n_eval = {n_eval} (success@k needs k episodes); got {k}")
    S = n_seeds
    world = wd.make_worlds(S, n_entities=n_entities, n_held_out=n_held_out, n_values=n_values, seed=_sub(seed, 0))
    layout = world.layout
    mix = demo_mix(narrow_share)
    # --- SFT: replica r * 3 + j is seed r's agent on demonstration set j
    sft_world = torch.arange(S).repeat_interleave(len(SETS))
    sft_mix = torch.tensor([mix[s] for _ in range(S) for s in SETS])
    wrong = torch.tensor([s == "wrong" for _ in range(S) for s in SETS])
    rows = torch.cat(
        [wd.demonstrations(world, sft_world[[i]], sft_mix[[i]], wrong[[i]], n_demos,
                           seed=_sub(seed, 1, int(sft_world[i]), i % len(SETS)))[0] for i in range(len(sft_world))]
    )  # fmt: skip
    init = [_sub(seed, 2, int(r)) for r in sft_world]
    sft_stack = ag.build_stack(len(layout.vocab), init, d_model=d_model, n_layers=n_layers, n_heads=n_heads)
    for p in sft_stack.parameters():
        p.requires_grad_(True)
    sft_log = sft(sft_stack, rows, layout.legal, steps=sft_steps, batch_size=batch_size, lr=sft_lr,
                  seeds=[_sub(seed, 3, int(r), i % len(SETS)) for i, r in enumerate(sft_world)])  # fmt: skip
    sft_log["replicate"] = sft_log["replica"] // len(SETS)
    sft_log["set"] = [SETS[i % len(SETS)] for i in sft_log["replica"]]
    # --- RL: replica r * 4 + j is seed r's arm j
    rl_world = torch.arange(S).repeat_interleave(len(ARMS))
    source = torch.tensor([int(r) * len(SETS) + SETS.index(a.demos) for r in range(S) for a in ARMS])
    arms = [a.name for _ in range(S) for a in ARMS]
    reps = rl_world.tolist()
    coef = torch.tensor([entropy_beta if a.entropy_bonus else 0.0 for _ in range(S) for a in ARMS])
    stack = sft_stack.take(source)
    ref = sft_stack.take(source)
    eval_seeds = [_sub(seed, 4, int(r)) for r in rl_world]

    def evaluate_fn(st, step):
        # the same random numbers at every evaluation and for every arm of a seed (common random
        # numbers): a difference between two evaluations is the policies', not the sampling's
        gens = _generators(eval_seeds)
        return evaluate(st, world, rl_world, n_eval=n_eval, k=k, n_distinct=n_distinct, generators=gens)

    log, evals = rl_train(
        stack, ref, world, rl_world, coef, steps=rl_steps, lr=rl_lr, group_size=group_size,
        questions_per_step=questions_per_step, kl_beta=kl_beta, eval_every=eval_every, evaluate_fn=evaluate_fn,
        seeds=[_sub(seed, 5, int(r)) for r in rl_world],
    )  # fmt: skip
    ev_rows, strat_rows = [], []
    for step, ev in evals:
        a, b = _eval_rows(arms, reps, step, ev)
        ev_rows += a
        strat_rows += b
    steps = pd.DataFrame(log)
    steps["arm"] = [arms[m] for m in steps["replica"]]
    steps["replicate"] = [reps[m] for m in steps["replica"]]
    return Result(
        evals=pd.DataFrame(ev_rows),
        steps=steps.drop(columns="replica"),
        strategies=pd.DataFrame(strat_rows),
        sft_log=sft_log,
        reference=np.array([*mix["narrow"], 0.0]),
    )


def with_sft_only(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (``arm, replicate, step, ...``) with the two SFT-only arms added: each repeats,
    at every step of ``frame``, its RL arm's step-0 rows (the SFT model, never updated).
    Explained in :ref:`sec-search-arms`.
    """
    steps = np.sort(frame["step"].unique())
    extra = []
    for name, src in SFT_ONLY.items():
        first = frame[(frame.arm == src) & (frame.step == 0)]
        for step in steps:
            extra.append(first.assign(arm=name, step=step))
    return pd.concat([frame, *extra], ignore_index=True)


def tail_measures(result: Result, *, q: float, n_distinct: int) -> pd.DataFrame:
    """The book's common tail measures (:data:`vanishing_tails.core.tails.COLUMNS`) of every
    arm, replicate and evaluation step, on the distribution over strategies.

    Outcomes are the environment's strategy labels (``other`` = no strategy's program: the
    error region, which the reference does not have). The reference is the narrow
    demonstrations' mix (the demonstrators' own habits, where multi-hop is rare); the start is
    the arm's SFT model; the quality is training success@1. The two SFT-only arms repeat
    their step-0 rows at every step. Mechanism: ``tilt`` (reward optimisation).
    Explained in :ref:`sec-search-tails`.
    """
    S = result.strategies.set_index(["arm", "replicate", "step"])[list(wd.STRATEGIES)]
    quality = result.evals[result.evals.metric == "train success@1"].set_index(["arm", "replicate", "step"])["value"]
    frames = []
    for (arm, rep), sub in S.groupby(level=["arm", "replicate"]):
        p = sub.to_numpy()
        start = np.clip(p[0], 1e-12, None)
        m = tails.categorical_measures(p, result.reference, start / start.sum(), q=q, n=n_distinct,
                                       quality=quality.loc[sub.index].to_numpy())  # fmt: skip
        m.insert(0, "step", sub.index.get_level_values("step"))
        m.insert(0, "replicate", rep)
        m.insert(0, "arm", arm)
        frames.append(m)
        for name, src in SFT_ONLY.items():
            if arm == src:
                first = m.iloc[[0] * len(m)].reset_index(drop=True)
                first["step"] = m["step"].to_numpy()
                first["arm"] = name
                frames.append(first)
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "experiment", "search")
    out["mechanism"] = "tilt"
    return out


def trajectory(
    *,
    n_seeds: int,
    n_entities: int,
    n_held_out: int,
    n_values: int,
    narrow_share: float,
    n_demos: int,
    d_model: int,
    n_layers: int,
    n_heads: int,
    sft_steps: int,
    sft_lr: float,
    batch_size: int,
    rl_steps: int,
    rl_lr: float,
    group_size: int,
    questions_per_step: int,
    entropy_beta: float,
    kl_beta: float,
    eval_every: int,
    n_eval: int,
    k: int,
    n_distinct: int,
    q: float,
    seed: int,
) -> pd.DataFrame:
    """The common tail measures per arm, replicate and evaluation step (the closing chapter's
    interface): :func:`experiment` at the given sizes, then :func:`tail_measures` with ``q``.

    Explained in :ref:`sec-search-tails`.
    """
    result = experiment(
        n_seeds=n_seeds, n_entities=n_entities, n_held_out=n_held_out, n_values=n_values, narrow_share=narrow_share,
        n_demos=n_demos, d_model=d_model, n_layers=n_layers, n_heads=n_heads, sft_steps=sft_steps, sft_lr=sft_lr,
        batch_size=batch_size, rl_steps=rl_steps, rl_lr=rl_lr, group_size=group_size,
        questions_per_step=questions_per_step, entropy_beta=entropy_beta, kl_beta=kl_beta, eval_every=eval_every,
        n_eval=n_eval, k=k, n_distinct=n_distinct, seed=seed,
    )  # fmt: skip
    return tail_measures(result, q=q, n_distinct=n_distinct)
