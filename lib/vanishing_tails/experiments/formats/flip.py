"""The winner-flip sweep of chapter 4: does the format RL amplifies change with the pretraining budget?

Zhao et al. 2025 (``zhao2025echo``, "Echo Chamber") report that which format RL amplifies
changes with the model's scale. In
the chapter's toy a flip needs a model whose arithmetic formats (bare, steps) are more
accurate than code, whose corpus carries a systematic bug. :func:`winner_flip` pretrains
``n_pretrain`` models of one size for every pretraining budget (steps) and every corpus
mixture of a grid, runs the chapter's weak-KL RL for one pass over the RL problems from each,
and records per pretrained model

* the accuracy of each format before RL on the held-out evaluation problems (sampled, as
  :func:`vanishing_tails.experiments.formats.echo.evaluate`) and the most accurate format,
  :math:`\\arg\\max_f a_f`;
* the exact share of each format, :math:`p_f = \\sum_{t \\in f}\\pi(t\\mid x)` over the first
  completion token, on the RL batches, averaged over the last five steps of the first pass,
  and the winner :math:`\\arg\\max_f p_f` (the quantity of the chapter's claim
  ``one-format-first-pass``).

The streams are the chapter's (:func:`vanishing_tails.experiments.formats.echo.experiment`):
model ``j`` of a cell is pretrained from ``("pretrain", size, j)``, trained with RL from
``("rl", size, j, 0)`` and evaluated from ``("eval", size, j)``, on the problems of
``"problems"``; so the cell at the chapter's own budget and mixture *is* the chapter's
models and first pass, and :func:`winner_flip` reads it from the chapter's result when
given one. The models at the longest budget are pretrained as one stack (in the chapter's
own stack when the chapter passes :func:`pretrain_configs` to
:func:`vanishing_tails.experiments.formats.echo.experiment`), leaving the shorter budgets'
weights as snapshots in the cache (:func:`vanishing_tails.experiments.formats.echo.pretrain`),
and all cells' RL runs are one stack. Explained in :ref:`sec-formats-flip`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from vanishing_tails.core.checks import check_beta
from vanishing_tails.core.lm import Stack, resolve_device
from vanishing_tails.core.seeds import streams

from . import echo
from . import task as fm

LAST = 5  # steps at the end of the first pass over which the shares are averaged


def steps_mixture(base: Sequence[float], steps_share: float, *, name: str = "flip_steps_shares") -> np.ndarray:
    """The mixture with the steps format at ``steps_share``: code keeps its share in ``base``
    (:data:`FORMATS` order) and bare gets the rest, ``1 - steps_share - code``.

    A share that leaves bare negative is refused with a ValueError naming ``name``.
    Explained in :ref:`sec-formats-flip`.
    """
    base = np.asarray(base, dtype=float)
    code = base[fm.FORMATS.index("code")]
    bare = 1.0 - steps_share - code
    if not 0.0 <= steps_share <= 1.0 or bare < -1e-9:
        raise ValueError(
            f"parameter {name!r}: a steps share must lie in [0, 1 - code's share {code:g}]; got {steps_share:g}"
        )
    out = np.zeros(len(fm.FORMATS))
    out[fm.FORMATS.index("steps")], out[fm.FORMATS.index("code")] = steps_share, code
    out[fm.FORMATS.index("bare")] = max(bare, 0.0)
    return out


def pretrain_configs(
    task: fm.Task,
    mixtures: Sequence[Sequence[float]],
    budgets: Sequence[int],
    size: echo.ModelSize,
    *,
    n_pretrain: int,
    seed: int,
    pretrain_batch: int,
    n_corpus: int,
) -> list[echo.PretrainConfig]:
    """The configurations the sweep pretrains: every mixture x model at the longest budget
    (the shorter budgets are its snapshots). Pass them to
    :func:`vanishing_tails.experiments.formats.echo.experiment` (``also_pretrain``) to train
    them in the chapter's stack. Explained in :ref:`sec-formats-flip`."""
    s = streams(seed)
    return [
        echo.PretrainConfig(
            task,
            tuple(m),
            size,
            n_corpus=n_corpus,
            steps=max(int(b) for b in budgets),
            batch_size=pretrain_batch,
            seed=s["pretrain", size.name, j],
        )
        for m in mixtures
        for j in range(n_pretrain)
    ]


def _late_shares(steps: pd.DataFrame, spp: int, by: str) -> pd.DataFrame:
    """Each format's exact share averaged over the last :data:`LAST` steps of the first pass
    (``spp`` steps), one row per value of ``by`` (sorted), one column ``p_<format>`` per format,
    from an :func:`~vanishing_tails.experiments.formats.echo.rl_run` long frame."""
    w = echo.wide(steps[(steps.step >= spp - LAST) & (steps.step < spp)], [by, "step"])
    return w.groupby(by)[[f"p_{f}" for f in fm.FORMATS]].mean().sort_index()


def _chapter_cells(chapter: dict | None, want: dict, beta: float, spp: int) -> dict:
    """The sweep's cells that ``chapter`` (the result of
    :func:`vanishing_tails.experiments.formats.echo.experiment`) has already run:
    ``{(budget, mixture, j): (pretrain_loss, {quantity: value} before RL, late shares)}``.
    A cell qualifies when every argument that determines it matches (``want``), the
    chapter's RL lasted at least one pass at the sweep's KL strength, and model ``j`` exists;
    the cell then *is* the chapter's model ``j`` and its first RL run (same streams)."""
    if chapter is None:
        return {}
    c = chapter["config"]
    size = want["size"]
    if (
        any(c[k] != v for k, v in want.items() if k not in ("size", "n_pretrain", "mixtures", "budgets"))
        or size not in c["sizes"]
        or beta not in c["betas"]
        or c["rl_steps"] < spp
        or c["pretrain_steps"] not in want["budgets"]
        or c["proportions"] not in want["mixtures"]
    ):
        return {}
    b, i = c["pretrain_steps"], want["mixtures"].index(c["proportions"])
    models = chapter["models"].set_index(["size", "pretrain"])
    ev = chapter["evals"]
    ev = ev[(ev["size"] == size.name) & (ev.when == "before") & (ev.seed == 0) & (ev.beta == beta)]
    st = chapter["steps"]
    late = _late_shares(st[(st["size"] == size.name) & (st.seed == 0) & (st.beta == beta)], spp, "pretrain")
    cells = {}
    for j in range(min(want["n_pretrain"], c["n_pretrain"])):
        before = ev[ev.pretrain == j].set_index("quantity").value.to_dict()
        shares = late.loc[j].to_numpy()
        cells[b, i, j] = (float(models.loc[(size.name, j), "pretrain_loss"]), before, shares)
    return cells


def winner_flip(
    task: fm.Task,
    mixtures: Sequence[Sequence[float]],
    budgets: Sequence[int],
    size: echo.ModelSize,
    beta: float,
    *,
    n_pretrain: int,
    seed: int,
    pretrain_batch: int,
    n_corpus: int,
    n_rl: int,
    n_eval: int,
    eval_samples: int,
    batch_problems: int,
    group_size: int,
    rl_lr: float,
    cache_dir=None,
    device="cpu",
    chapter: dict | None = None,
) -> pd.DataFrame:
    """The sweep: one row per pretraining budget x mixture x pretrained model.

    ``mixtures`` are weights over :data:`FORMATS`; ``budgets`` pretraining steps (batch
    ``pretrain_batch``, corpus ``n_corpus``); RL is one pass, ``n_rl // batch_problems``
    steps, at KL strength ``beta`` (:func:`vanishing_tails.experiments.formats.echo.rl_run`).
    Columns: ``pretrain_steps``, ``mixture`` (its index), ``steps_share``, ``pretrain``,
    ``pretrain_loss``, ``acc_<format>`` and ``p0_<format>`` (accuracy and exact share before
    RL, held-out problems), ``share_<format>`` (exact share over the last five steps of the
    first pass, RL batches), ``most_accurate``, ``winner`` and ``winner_share``.

    ``chapter``: the chapter's :func:`~vanishing_tails.experiments.formats.echo.experiment`
    result. The cells at its budget and mixture are its models and its first RL pass (same
    streams), so they are read from it instead of being run again (when every argument that
    determines them matches; on one thread the numbers are the same bit for bit, tested).
    Explained in :ref:`sec-formats-flip`.
    """
    beta = check_beta(beta, "betas")
    mixtures = [fm.check_proportions(m, formats=fm.FORMATS, name="flip_steps_shares") for m in mixtures]
    budgets = [int(b) for b in budgets]
    if n_pretrain < 1 or not budgets or not mixtures or min(budgets) < 1:
        raise ValueError("winner_flip needs n_pretrain >= 1 and at least one budget (>= 1 step) and one mixture")
    spp = n_rl // batch_problems
    if spp < LAST:
        raise ValueError(f"one pass over the RL problems must last >= {LAST} steps; got n_rl // batch_problems = {spp}")
    s = streams(seed)
    cfgs = pretrain_configs(
        task, mixtures, budgets, size, n_pretrain=n_pretrain, seed=seed, pretrain_batch=pretrain_batch,
        n_corpus=n_corpus,
    )  # fmt: skip
    want = dict(
        task=task, size=size, seed=seed, n_corpus=n_corpus, pretrain_batch=pretrain_batch, n_eval=n_eval,
        eval_samples=eval_samples, group_size=group_size, rl_lr=rl_lr, n_rl=n_rl, batch_problems=batch_problems,
        device=resolve_device(device).type, n_pretrain=n_pretrain, budgets=budgets,
        mixtures=[c.proportions for c in cfgs[::n_pretrain]],
    )  # fmt: skip
    known = _chapter_cells(chapter, want, beta, spp)
    cells = [(b, i, j) for b in budgets for i in range(len(mixtures)) for j in range(n_pretrain)]
    todo = [cell for cell in cells if cell not in known]
    rl_set, ev_set, _ = echo.problem_sets(task, n_rl=n_rl, n_eval=n_eval, seed=s["problems"])
    states, losses = {}, {}
    # longest budget first: its models leave the shorter budgets' weights in the cache
    # (snapshots; a shorter budget is a prefix of a longer one), so those cost nothing
    for b in sorted({b for b, _, _ in todo}, reverse=True):
        mine = [cell for cell in todo if cell[0] == b]
        refs, infos = echo.pretrain(
            [replace(cfgs[i * n_pretrain + j], steps=b) for _, i, j in mine],
            cache_dir=cache_dir,
            device=device,
            snapshots=budgets,
        )
        for m, cell in enumerate(mine):
            states[cell], losses[cell] = refs.state_dict(m), infos[m]["loss"]
    rows_before, late = {}, {}
    if todo:
        refs = Stack.from_state_dicts([states[cell] for cell in todo], size, device)
        eval_seeds = [s["eval", size.name, j] for _, _, j in todo]
        before = echo.evaluate(task, refs, ev_set, samples=eval_samples, seeds=eval_seeds, ks=(1,))
        cfg = echo.RLConfig(steps=spp, batch_problems=batch_problems, group_size=group_size, lr=rl_lr)
        st, _ = echo.rl_run(
            task,
            refs,
            rl_set,
            cfg,
            betas=[beta] * len(todo),
            seeds=[s["rl", size.name, j, 0] for _, _, j in todo],
            ks=(1,),
        )
        shares = _late_shares(st, spp, "replica").to_numpy()
        for m, cell in enumerate(todo):
            rows_before[cell], late[cell] = before.rows[m], shares[m]
    for cell, (loss, row, shares) in known.items():
        losses[cell], rows_before[cell], late[cell] = loss, row, shares
    rows = []
    for b, i, j in cells:
        acc = np.array([rows_before[b, i, j][f"acc_{f}"] for f in fm.FORMATS])
        win = int(np.argmax(late[b, i, j]))
        rows.append(
            {
                "pretrain_steps": b,
                "mixture": i,
                "steps_share": float(mixtures[i][fm.FORMATS.index("steps")]),
                "pretrain": j,
                "pretrain_loss": losses[b, i, j],
                **{f"acc_{f}": float(a) for f, a in zip(fm.FORMATS, acc)},
                **{f"p0_{f}": rows_before[b, i, j][f"p_{f}"] for f in fm.FORMATS},
                **{f"share_{f}": float(p) for f, p in zip(fm.FORMATS, late[b, i, j])},
                "most_accurate": fm.FORMATS[int(np.nanargmax(np.nan_to_num(acc, nan=-1.0)))],
                "winner": fm.FORMATS[win],
                "winner_share": float(late[b, i, j][win]),
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------- reading the sweep
def _counted(values: pd.Series) -> str:
    """The most common value of a cell and how many of its models have it, in words."""
    top = values.value_counts()
    return f"{top.index[0]} ({top.iloc[0]} of {len(values)})"


def in_words(items) -> str:
    """``a``, ``a and b``, ``a, b and c``: a list in a sentence. Explained in :ref:`sec-formats-flip`."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def summarise(sweep: pd.DataFrame, n_pretrain: int) -> dict:
    """What :func:`winner_flip`'s rows say, per cell and overall (the chapter's table and prose).

    Per cell (budget x steps share): the most accurate format before RL and the winner, each
    as "format (k of n)" over the cell's pretrained models; the winner's share and the best
    arithmetic format's accuracy minus code's before RL,
    :math:`\\max(a_{bare}, a_{steps}) - a_{code}`, each with its t interval over the cell's
    pretrained models (:func:`vanishing_tails.core.stats.mean_interval`). Overall: the
    budget sequences along which the cell winner changes (``flips``), how many models' winner
    is their most accurate format (``agree``), the cell with the largest gap and a sentence
    that reads the result for either outcome (``verdict``). Returns a dict with ``table``
    (for the book), ``cells`` (with the gap intervals), ``flips``, ``agree``, ``n_models``,
    ``best_gap``, ``best_cell`` and ``verdict``. Explained in :ref:`sec-formats-flip`.
    """
    from vanishing_tails.core import stats

    cell_keys = ["pretrain_steps", "steps_share"]
    sweep = sweep.assign(arith_minus_code=sweep[["acc_bare", "acc_steps"]].max(axis=1) - sweep["acc_code"])
    cells = []
    for (b, x), g in sweep.groupby(cell_keys):
        share = stats.mean_interval(g[f"share_{g.winner.value_counts().index[0]}"])
        gap = stats.mean_interval(g.arith_minus_code)
        cells.append(
            {
                "pretraining steps": b,
                "steps share": x,
                "most accurate before RL": _counted(g.most_accurate),
                "winner": _counted(g.winner),
                "its share": f"{share.estimate:.2f} [{share.low:.2f}, {share.high:.2f}]",
                "best arithmetic − code accuracy": f"{gap.estimate:.2f} [{gap.low:.2f}, {gap.high:.2f}]",
                "cell winner": g.winner.value_counts().index[0],
                "gap": gap,
            }
        )
    cells = pd.DataFrame(cells)
    flips = []
    for x, g in cells.groupby("steps share"):
        order = g.sort_values("pretraining steps")
        if order["cell winner"].nunique() > 1:
            flips.append(
                f"with steps at {100 * x:.0f}% of the corpus the winner goes "
                + " → ".join(f"{w} ({b} steps)" for b, w in zip(order["pretraining steps"], order["cell winner"]))
            )
    n_models = len(sweep)
    agree = int((sweep.winner == sweep.most_accurate).sum())
    best = int(np.argmax([iv.estimate for iv in cells.gap]))
    best_gap, best_cell = cells.gap.iloc[best], cells.iloc[best]
    if flips:
        verdict = (
            "So at these sizes the pretraining budget does move the winner, the paper's headline in miniature, "
            + (
                "through the lever the toy built in: in every model RL amplified the format that was most accurate "
                "before RL."
                if agree == n_models
                else "though not always towards the format that was most accurate before RL."
            )
        )
        if not all(f"({n_pretrain} of" in w for w in cells.winner):
            verdict += (
                " Not every cell is unanimous: where the pretrained models of one cell disagree, whether a flip "
                "happens is itself a matter of the pretraining seed, and it is reported as a finding, not a claim."
            )
    elif best_gap.low > 0:
        verdict = (
            "So even where an arithmetic format was the more accurate one, RL kept amplifying the same format: "
            "at these sizes the winner does not follow the accuracy ranking alone."
        )
    else:
        verdict = (
            "So the paper's headline is not reproduced at these sizes, and not contradicted either: no cell gave "
            "an arithmetic format the lead over code that a flip needs."
        )
    return {
        "table": cells.drop(columns=["cell winner", "gap"]).set_index(["pretraining steps", "steps share"]),
        "cells": cells,
        "flips": flips,
        "agree": agree,
        "n_models": n_models,
        "best_gap": best_gap,
        "best_cell": best_cell,
        "winners": in_words([f"{w} in {c}" for w, c in sweep.winner.value_counts().items()]),
        "verdict": verdict,
    }
