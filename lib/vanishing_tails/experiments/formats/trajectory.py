"""Chapter 4's experiment as the book's common trajectory (the closing chapter's interface).

:func:`trajectory` pretrains ``n_pretrain`` transformers of one size on the format mixture
(cached, as :func:`vanishing_tails.experiments.formats.echo.pretrain`), then runs RL from
each at every KL strength of ``betas`` (:func:`vanishing_tails.experiments.formats.echo.rl_run`)
and returns the common tail measures (:data:`vanishing_tails.core.tails.COLUMNS`) of every
arm, pretrained model and RL step. Explained in :ref:`sec-formats-rl`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from vanishing_tails.core import tails
from vanishing_tails.core.checks import check_beta
from vanishing_tails.core.seeds import streams

from . import echo
from . import task as fm

EXPERIMENT = "formats"
OUTCOMES = (*fm.FORMATS, fm.OTHER)


def arm_name(beta: float) -> str:
    """The arm label of KL strength ``beta``: ``"beta=0.02"``.

    Explained in :ref:`sec-formats-rl`.
    """
    return f"beta={beta:g}"


def trajectory(
    *,
    n_pretrain: int,
    betas: Sequence[float],
    proportions: Sequence[float],
    n_ops: int,
    max_value: int,
    max_operand: int,
    slip: float,
    code_misreads: Sequence[str],
    d_model: int,
    n_layers: int,
    n_heads: int,
    pretrain_steps: int,
    pretrain_batch: int,
    n_corpus: int,
    n_rl: int,
    rl_steps: int,
    batch_problems: int,
    group_size: int,
    rl_lr: float,
    n_probe: int,
    q: float,
    seed: int,
    cache_dir=None,
) -> pd.DataFrame:
    """The common tail measures of chapter 4 per arm, replicate and RL step.

    Outcome space: the format a completion commits to with its first token, ``bare``,
    ``steps``, ``code`` or ``other`` (no format: the error region). Its distribution is
    computed exactly (a sum over the first-token softmax,
    :func:`~vanishing_tails.experiments.formats.echo.format_probabilities`) and averaged
    over ``n_probe`` fixed held-out prompts, the same at every step.

    * ``replicate`` — the pretrained model (``n_pretrain`` of one size, ``d_model`` x
      ``n_layers`` x ``n_heads``, pretrained on ``proportions`` over (bare, steps, code)
      from the streams ``("trajectory", "pretrain", j)``); every arm of a replicate starts
      from the same model and uses the same RL stream (paired).
    * ``arm`` — one per KL strength in ``betas`` (:func:`arm_name`, e.g. ``"beta=0.02"``);
      a weak and a strong KL are the chapter's baseline and intervention. Mechanism
      ``tilt``: the RL objective E[r] - beta KL(pi || pi_ref) tilts toward the formats that
      are right more often.
    * ``step`` — the policy after ``step`` RL updates, 0 .. ``rl_steps`` - 1 (measured
      before each update, as :func:`~vanishing_tails.experiments.formats.echo.rl_run`).

    Columns (:func:`vanishing_tails.core.tails.categorical_measures`), with the *real*
    distribution = the corpus mixture (bare, steps, code, other = 0) and the start = the
    replicate's pretrained model: ``support`` is the expected number of distinct formats in
    a GRPO group (``group_size`` draws) relative to the corpus'; ``q_tail_mass`` the mass
    on the corpus' rarest formats (its least-probable ``q``; empty, hence NaN, when q is
    below the rarest format's share) relative to their corpus share; ``error_mass`` the
    share of ``other``; ``mode_share`` the largest format share; ``kl_from_start``
    KL(format shares || pretrained model's) in nats; ``quality`` pass@1 on the step's RL
    batch (the mean correctness reward of its ``batch_problems`` x ``group_size`` samples).

    The null: ``rl_lr = 0`` leaves every policy at its pretrained model, so every tail
    column is constant over steps (tested); only ``quality`` varies (sampling noise).
    Explained in :ref:`sec-formats-rl`.
    """
    betas = [check_beta(b, "betas") for b in betas]
    if n_pretrain < 1 or n_probe < 1:
        raise ValueError(f"n_pretrain and n_probe must be >= 1, got {n_pretrain}, {n_probe}")
    task = fm.Task(
        n_ops=n_ops,
        max_value=max_value,
        max_operand=max_operand,
        slip=slip,
        code_misreads=tuple(v for v in code_misreads if v != "none"),
    )
    mix = fm.check_proportions(list(proportions), formats=fm.FORMATS)
    size = echo.ModelSize("trajectory", d_model, n_layers, n_heads)
    rl_cfg = echo.RLConfig(steps=rl_steps, batch_problems=batch_problems, group_size=group_size, lr=rl_lr)
    s = streams(seed)
    probs = fm.generate_problems(task, n_rl + n_probe, seed=s["trajectory", "problems"], split="heldout")
    rl_set, probe = probs.take(np.arange(n_rl)), probs.take(np.arange(n_rl, n_rl + n_probe))
    cfgs = [
        echo.PretrainConfig(
            task,
            tuple(mix),
            size,
            n_corpus=n_corpus,
            steps=pretrain_steps,
            batch_size=pretrain_batch,
            seed=s["trajectory", "pretrain", j],
        )
        for j in range(n_pretrain)
    ]
    refs, _ = echo.pretrain(cfgs, cache_dir=cache_dir)
    reps = [(j, b) for j in range(n_pretrain) for b in betas]
    steps, _ = echo.rl_run(
        task,
        refs.take([j for j, _ in reps]),
        rl_set,
        rl_cfg,
        betas=[b for _, b in reps],
        seeds=[s["trajectory", "rl", j] for j, _ in reps],
        ks=(1,),
        probe=probe,
    )
    w = echo.wide(steps, ["replica", "step"]).sort_values(["replica", "step"])
    reference = np.append(mix, 0.0)
    frames = []
    for m, (j, b) in enumerate(reps):
        sub = w[w.replica == m]
        p = sub[[f"probe_p_{f}" for f in OUTCOMES]].to_numpy()
        p = p / p.sum(-1, keepdims=True)
        frame = tails.categorical_measures(p, reference, p[0], q=q, n=group_size, quality=sub["pass@1"].to_numpy())
        frame.insert(0, "mechanism", "tilt")
        frame.insert(0, "step", sub.step.to_numpy().astype(int))
        frame.insert(0, "replicate", j)
        frame.insert(0, "arm", arm_name(b))
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "experiment", EXPERIMENT)
    out["kl_from_start"] = out["kl_from_start"].clip(lower=0.0)
    return out[["experiment", "arm", "replicate", "step", "mechanism", *tails.COLUMNS]]
