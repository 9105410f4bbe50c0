"""Speed of chapter 5's engines: pretraining, DPO, sampling, exact scoring and sample metrics.

Prints rates (wall clock, best of ``--repeat`` runs through ``timing.best_of``; one torch
thread unless OMP_NUM_THREADS says otherwise):

* pretraining: sequences per second of one reference model (batch 128);
* DPO training: preference pairs processed per second (each pair = two sequences,
  forward and backward through the policy) at the chapter's batch of 64 pairs;
* sampling: completed outputs per second from ``preference.sample_texts`` (batched);
* exact scoring: outputs per second whose log-probability ``output_logprobs`` computes
  (what the exact theory comparisons need), and the sample metrics per prompt set
  (self-BLEU dominates them).

One replicate of the chapter (one reference model, four arms) costs one pretraining, four
DPO runs, six exact scorings and six sample-metric sets: the rates say where its time goes.

Usage: ``python benchmarks/bench_preference.py [--arch gru|transformer]``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from timing import best_of

from vanishing_tails.core import domains as D
from vanishing_tails.experiments.preference import tuning as pf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="gru", choices=("gru", "transformer"))
    ap.add_argument("--pretrain-steps", type=int, default=200)
    ap.add_argument("--dpo-steps", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    doms = [D.make_domain(n, 6, 0.5) for n in D.DOMAINS]

    def pretrain():
        return pf.pretrain_reference(
            doms, corpus_size=20000, steps=args.pretrain_steps, seed=0, arch=args.arch, device="cpu"
        )

    model, vocab, _ = pretrain()
    t_pre = best_of(pretrain, args.repeat)
    print(f"arch={args.arch}  parameters={sum(p.numel() for p in model.parameters())}")
    print(
        f"pretraining: {args.pretrain_steps * 128 / t_pre:,.0f} sequences/s ({args.pretrain_steps / t_pre:.1f} steps/s)"
    )
    for d in doms:
        lp = pf.output_logprobs(model, vocab, d)
        t_exact = best_of(lambda d=d: pf.output_logprobs(model, vocab, d), args.repeat)
        p_ref, _ = pf.restrict(lp)
        r = pf.judge_rewards(d, pf.natural_judge(d.name), p_ref)
        pairs = pf.preference_pairs(p_ref, r, 1024, rng=np.random.default_rng(0))
        t_dpo = best_of(
            lambda d=d, pairs=pairs: pf.train_dpo(
                model, vocab, d, pairs, beta=1.0, steps=args.dpo_steps, lr=3e-3, seed=0
            ),
            args.repeat,
        )
        texts = pf.sample_texts(model, vocab, d, 256, generator=torch.Generator().manual_seed(0))
        t_samp = best_of(
            lambda d=d: pf.sample_texts(model, vocab, d, 256, generator=torch.Generator().manual_seed(0)), args.repeat
        )
        n_texts = sum(len(t) for t in texts)
        t_met = best_of(
            lambda d=d, texts=texts: [pf.sample_metrics(d, p, texts[p][:64], seed=0) for p in range(d.n_prompts)],
            args.repeat,
        )
        print(
            f"{d.name:9s} DPO: {args.dpo_steps * 64 / t_dpo:,.0f} pairs/s | sampling: "
            f"{n_texts / t_samp:,.0f} samples/s | exact scoring: {lp.size / t_exact:,.0f} outputs/s | "
            f"sample metrics: {d.n_prompts * 64 / t_met:,.0f} samples/s (64 per prompt)"
        )


if __name__ == "__main__":
    main()
