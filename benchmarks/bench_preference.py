"""Speed of chapter 5's engines: DPO pairs per second, samples per second, exact scoring rate.

Prints rates (CPU process time, one torch thread unless OMP_NUM_THREADS says otherwise):

* DPO training: preference pairs processed per second (each pair = two sequences,
  forward and backward through the policy) at the chapter's batch of 64 pairs;
* sampling: completed outputs per second from ``preference.sample_texts`` (batched);
* exact scoring: outputs per second whose log-probability ``output_logprobs`` computes
  (what the exact theory comparisons need), and the sample metrics per prompt set.

Usage: ``python benchmarks/bench_preference.py [--arch gru|transformer]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from vanishing_tails.experiments.preference import domains as D
from vanishing_tails.experiments.preference import tuning as pf


def timed(fn, *args, **kw):
    t = time.process_time()
    out = fn(*args, **kw)
    return out, time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="gru", choices=("gru", "transformer"))
    ap.add_argument("--dpo-steps", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(1)
    doms = [D.make_domain(n, 6) for n in D.DOMAINS]
    (model, vocab, _), t_pre = timed(pf.pretrain_reference, doms, corpus_size=20000, steps=200,
                                     seed=0, arch=args.arch)
    print(f"arch={args.arch}  parameters={sum(p.numel() for p in model.parameters())}")
    print(f"pretraining: {200 * 128 / t_pre:,.0f} sequences/s ({200 / t_pre:.1f} steps/s, batch 128)")
    for d in doms:
        lp, t_exact = timed(pf.output_logprobs, model, vocab, d)
        p_ref, _ = pf.restrict(lp)
        r = pf.judge_rewards(d, pf.natural_judge(d.name), p_ref)
        pairs = pf.preference_pairs(p_ref, r, 1024, rng=np.random.default_rng(0))
        _, t_dpo = timed(pf.train_dpo, model, vocab, d, pairs, beta=1.0, steps=args.dpo_steps, seed=0)
        gen = torch.Generator().manual_seed(0)
        texts, t_samp = timed(pf.sample_texts, model, vocab, d, 256, generator=gen)
        n_texts = sum(len(t) for t in texts)
        _, t_met = timed(lambda: [pf.sample_metrics(d, p, texts[p][:64]) for p in range(d.n_prompts)])
        print(f"{d.name:9s} DPO: {args.dpo_steps * 64 / t_dpo:,.0f} pairs/s | sampling: "
              f"{n_texts / t_samp:,.0f} samples/s | exact scoring: {lp.size / t_exact:,.0f} outputs/s | "
              f"sample metrics: {d.n_prompts * 64 / t_met:,.0f} samples/s (64 per prompt)")


if __name__ == "__main__":
    main()
