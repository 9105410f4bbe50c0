"""Speed of chapter 4's engines (``experiments.formats.echo``) at the sizes of a scale's preset.

Prints, for the small and the large transformer of the chosen scale (``n_pretrain`` models
of each, as the chapter runs them):

* pretraining: milliseconds per model-step of the stacked trainer against
  ``lm.train_lm`` on one model at a time (both building each model's corpus), and their ratio;
* sampling: generated tokens per second of ``echo.sample`` (the stack, prompts encoded
  once per group, key/value cache) against ``lm.sample`` looping over the models;
* one RL step of every replica (``n_pretrain`` models x the KL strengths, stacked):
  milliseconds per replica-step;
* the cost of a cached ``echo.pretrain`` call against a cold one.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_formats.py [--scale smoke|book] [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch
from timing import best_of

from vanishing_tails.core import lm
from vanishing_tails.experiments.formats import echo
from vanishing_tails.experiments.formats import task as fm
from vanishing_tails.experiments.formats.spec import SPEC


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", default="smoke", choices=("smoke", "book"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=100, help="pretraining and RL steps timed")
    args = ap.parse_args()
    P = SPEC.resolve(scale=args.scale, device=args.device)
    dev = lm.resolve_device(P["device"])
    task = fm.Task(
        n_ops=P["n_ops"],
        max_value=P["max_value"],
        max_operand=P["max_operand"],
        slip=P["slip"],
        code_misreads=tuple(P["code_misreads"]),
    )
    mix = tuple(fm.check_proportions(P["proportions"], formats=P["formats"]))
    M, steps, bs = P["n_pretrain"], args.steps, P["pretrain_batch"]
    probs = fm.generate_problems(task, P["n_rl"], seed=1, split="heldout")
    prompts = fm.encode_prompts(task, probs.take(np.arange(P["batch_problems"])))
    G = P["group_size"]
    print(f"scale {args.scale}, device {dev}, torch threads {torch.get_num_threads()}, {M} models per size")
    for name, d, L, h in zip(("small", "large"), P["d_models"], P["n_layers"], P["n_heads"]):
        size = echo.ModelSize(name, d, L, h)
        cfgs = [
            echo.PretrainConfig(task, mix, size, n_corpus=P["n_corpus"], steps=steps, batch_size=bs, seed=s)
            for s in range(M)
        ]
        t_stack = best_of(lambda: echo.pretrain(cfgs, cache_dir=False, device=dev), 2)

        def one_at_a_time():
            for s in range(M):  # each model with its own corpus, as the stack does
                data, _ = fm.pretraining_corpus(task, P["n_corpus"], mix, seed=s)
                m = lm.build_model("transformer", len(task.vocab), seed=s, device=dev, d_model=d, n_layers=L,
                                   n_heads=h, max_len=task.seq_len)  # fmt: skip
                lm.train_lm(m, data, steps=steps, batch_size=bs, seed=s)

        t_loop = best_of(one_at_a_time, 2)
        per = 1000 / (M * steps)
        print(
            f"{name:5s} pretraining: stacked {t_stack * per:6.2f} ms per model-step, one model at a time "
            f"{t_loop * per:6.2f} ms ({t_loop / t_stack:4.1f}x)"
        )
        stack, _ = echo.pretrain(cfgs, cache_dir=False, device=dev)
        pr = prompts.unsqueeze(0).expand(M, -1, -1)
        new = task.max_completion_len

        def stacked():
            gens = [torch.Generator().manual_seed(i) for i in range(M)]
            return echo.sample(stack, pr, new, generators=gens, eos_id=2, pad_id=0, group=G)

        def looped():
            rep = prompts.repeat_interleave(G, 0)
            return [
                lm.sample(stack.model(i).to(dev), rep, new, generator=torch.Generator().manual_seed(i))
                for i in range(M)
            ]

        t_s, t_l = best_of(stacked), best_of(looped)
        n_tok = int((stacked()[..., task.prompt_len :] != 0).sum())
        print(
            f"      sampling: stacked {n_tok / t_s:9.0f} tok/s, lm.sample per model {n_tok / t_l:9.0f} tok/s "
            f"({t_l / t_s:4.1f}x)"
        )
        reps = [j for j in range(M) for _ in P["betas"]]
        cfg = echo.RLConfig(steps=steps, batch_problems=P["batch_problems"], group_size=G, lr=P["rl_lr"])
        t_rl = best_of(
            lambda: echo.rl_run(
                task, stack.take(reps), probs, cfg, betas=list(P["betas"]) * M, seeds=list(range(len(reps)))
            ),
            1,
        )
        print(f"      RL: {1000 * t_rl / (steps * len(reps)):6.2f} ms per replica-step ({len(reps)} replicas stacked)")
    with tempfile.TemporaryDirectory() as tmp:
        cold = best_of(lambda: echo.pretrain(cfgs[:1], cache_dir=tmp, device=dev), 1)
        warm = best_of(lambda: echo.pretrain(cfgs[:1], cache_dir=tmp, device=dev), 3)
    print(
        f"pretrain ({steps} steps, large): cold {cold:.2f} s, from the cache {warm * 1000:.0f} ms ({cold / warm:.0f}x)"
    )


if __name__ == "__main__":
    main()
