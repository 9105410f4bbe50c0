"""Speed of chapter 6's batched environment (``experiments.search``).

Prints the episodes per second of :func:`vanishing_tails.experiments.search.agent.rollout` —
every replica's episodes sampled at once, one batched forward pass and one batched
environment step per turn — against the sequences per second of a plain batched forward
pass of the same stacked model over full-length episode rows, and their ratio (a rollout
runs :data:`~vanishing_tails.experiments.search.world.MAX_ACTIONS` forward passes on growing
prefixes, so about 1/2 to 1/4 is the most it can reach). Then the speed-up of stacking the
replicas over rolling them out one at a time. Sizes are the spec's preset of the chosen
scale: the RL stack (four arms per seed) on one RL step's episodes.
Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_search.py [--scale smoke|book]``.
"""

from __future__ import annotations

import argparse

import torch
from timing import best_of

from vanishing_tails.experiments.search import agent as ag
from vanishing_tails.experiments.search import training as tr
from vanishing_tails.experiments.search import world as wd
from vanishing_tails.experiments.search.spec import SPEC


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", default="smoke", choices=("smoke", "book"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    P = SPEC.resolve(scale=args.scale)
    M = P["n_seeds"] * len(tr.ARMS)
    B = P["questions_per_step"] * P["group_size"]
    world = wd.make_worlds(P["n_seeds"], n_entities=P["n_entities"], n_held_out=P["n_held_out"],
                           n_values=P["n_values"], seed=1)  # fmt: skip
    wi = torch.arange(P["n_seeds"]).repeat_interleave(len(tr.ARMS))
    stack = ag.build_stack(len(world.layout.vocab), range(M), d_model=P["d_model"], n_layers=P["n_layers"],
                           n_heads=P["n_heads"])  # fmt: skip
    targets = world.train[wi][:, : P["questions_per_step"]].repeat_interleave(P["group_size"], dim=1)

    def roll(st, w, t):
        return ag.rollout(st, wd.Env(world, w, t), [torch.Generator().manual_seed(i) for i in range(len(st))])

    rows = roll(stack, wi, targets).rows
    t_roll = best_of(lambda: roll(stack, wi, targets), repeat=5)
    with torch.no_grad():
        t_fwd = best_of(lambda: stack.logits(rows[..., :-1]), repeat=5)
    eps, seqs = M * B / t_roll, M * B / t_fwd
    print(f"{args.scale}: {M} agents x {B} episodes, d_model {P['d_model']}, {P['n_layers']} layer(s)")
    print(f"  rollout (batched env, {wd.MAX_ACTIONS} turns):  {eps:10.0f} episodes/s")
    print(f"  plain batched forward pass:         {seqs:10.0f} sequences/s")
    print(f"  ratio rollout / forward:            {eps / seqs:10.2f}")
    singles = [stack.take([m]) for m in range(M)]
    t_loop = best_of(lambda: [roll(singles[m], wi[m : m + 1], targets[m : m + 1]) for m in range(M)], repeat=3)
    print(f"  agents stacked: {t_roll * 1e3:.1f} ms; one at a time: {t_loop * 1e3:.1f} ms; "
          f"speed-up {t_loop / t_roll:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
