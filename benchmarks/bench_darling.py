"""Speed of chapter 8's partition diversity and GRPO loop (``experiments.darling``).

Prints, at the chapter's sizes (the spec's preset of the chosen scale):

* the partition diversity of every group of one training step — arms × seeds × prompts
  groups of G samples, judged by a non-transitive relation, so the closure is needed —
  computed batched (``partition.partition_diversity``: one tensor expression) and by a
  Python union-find per group and a loop per sample, and the speed-up of batching as a
  ratio;
* GRPO steps per second of the five arms on each domain (``training.train_arms``).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_darling.py [--scale smoke|book]``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from timing import best_of

from vanishing_tails.core.domains import make_domain
from vanishing_tails.experiments.darling import partition as pt
from vanishing_tails.experiments.darling import training as tr
from vanishing_tails.experiments.darling.spec import SPEC


def loop_diversity(same: np.ndarray) -> np.ndarray:
    """The reference: a union-find per group and a loop per sample (what the batched code replaces)."""
    *lead, G, _ = same.shape
    flat = same.reshape(-1, G, G)
    out = np.empty((len(flat), G))
    for k, rel in enumerate(flat):
        parent = list(range(G))

        def find(x, parent=parent):
            while parent[x] != x:
                x = parent[x]
            return x

        for i in range(G):
            for j in range(i + 1, G):
                if rel[i, j]:
                    parent[find(i)] = find(j)
        roots = [find(i) for i in range(G)]
        for i in range(G):
            out[k, i] = (G - roots.count(roots[i])) / (G - 1)
    return out.reshape(*lead, G)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", default="smoke", choices=("smoke", "book"))
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    P = SPEC.resolve(scale=args.scale)
    S, G, n_arms = P["n_seeds"], P["group_size"], len(tr.ARMS)
    dom = make_domain("creative", P["n_prompts"], P["valid_share"])
    views = pt.output_views(dom)
    lexical = pt.lexical_relation(views[1], P["lexical_threshold"])
    rng = np.random.default_rng(0)
    samples = torch.as_tensor(rng.choice(dom.n_outputs, size=(n_arms * S, dom.n_prompts, G), p=dom.prior[0]))
    same = pt.group_relation(lexical, samples)
    fast = pt.partition_diversity(same).numpy()
    slow = loop_diversity(same.numpy())
    assert np.allclose(fast, slow), "batched and looped diversities disagree"
    t_fast = best_of(lambda: pt.partition_diversity(same), 5)
    t_slow = best_of(lambda: loop_diversity(same.numpy()), 3)
    n_groups = n_arms * S * dom.n_prompts
    print(f"partition diversity of {n_groups} groups of G = {G} (scale {args.scale}):")
    print(f"  batched: {n_groups / t_fast:,.0f} groups/s | loop: {n_groups / t_slow:,.0f} groups/s | "
          f"speed-up: {t_slow / t_fast:.1f}x")  # fmt: skip

    for name in ("creative", "code"):
        d = make_domain(name, P["n_prompts"], P["valid_share"])
        clfs, rel = tr.judges(d, n_seeds=S, n_pairs=P["n_pairs"], ridge=P["ridge"],
                              lexical_threshold=P["lexical_threshold"], seed=0)  # fmt: skip

        def train(d=d, rel=rel):
            return tr.train_arms(d, rel, tr.ARMS, n_seeds=S, steps=args.steps, group_size=G, n_groups=1, lr=P["lr"],
                                 beta=P["beta"], additive_weight=P["additive_weight"], eval_every=args.steps,
                                 n_distinct=P["n_distinct"], q=P["q"], null_partition=False, seed=0)  # fmt: skip

        t = best_of(train, 2)
        print(f"{name:9s} GRPO: {args.steps / t:,.0f} steps/s ({n_arms} arms x {S} seeds x {d.n_prompts} prompts, "
              f"{d.n_outputs} outputs each)")  # fmt: skip


if __name__ == "__main__":
    main()
