"""Speed of chapter 3's GRPO loop (``answer_policies.train_answer_policy``).

Prints policy updates per second at the chapter's smoke sizes for each arm, the number of
(problem, sample) pairs processed per second, and the speed-up of batching the seeds
into one set of tensor ops over looping over them one at a time. One update is one
Adam step of every seed's policy on a fresh group of G answers for every training
problem. Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_rl.py [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import time

from timing import best_of
from vanishing_tails.experiments.sharpening import policies as ap



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    S, n_solved, n_unsolved, n_held, K, G = 8, 128, 128, 128, 32, 8
    kw = dict(n_solved=n_solved, n_unsolved=n_unsolved, n_held_out=n_held, n_answers=K,
              device=args.device)
    task = ap.make_answer_task(n_seeds=S, seed=0, **kw)
    train = dict(steps=args.steps, group_size=G, lr=0.05, eval_every=args.steps, seed=1)
    pairs = S * (n_solved + n_unsolved) * G
    print(f"{S} seeds x {n_solved + n_unsolved} training problems x G = {G} answers, K = {K}, "
          f"{args.steps} updates, device {args.device}")
    arms = [ap.Arm("outcome only"), ap.Arm("historical (UCB)", ucb_c=1.0),
            ap.Arm("batch", batch_c=1.0), ap.Arm("entropy bonus", entropy_beta=0.1),
            ap.Arm("tabular control", shared=False)]
    for arm in arms:
        t = best_of(lambda: ap.train_answer_policy(task, arm, **train))
        print(f"  {arm.name:18s} {args.steps / t:8.1f} updates/s   "
              f"{pairs * args.steps / t / 1e6:6.2f} M (problem, answer) pairs/s")

    arm = arms[0]
    t_batched = best_of(lambda: ap.train_answer_policy(task, arm, **train))
    one = [ap.make_answer_task(n_seeds=1, seed=s, **kw) for s in range(S)]
    t_loop = best_of(lambda: [ap.train_answer_policy(t1, arm, **train) for t1 in one])
    print(f"seeds batched in one set of ops: {t_batched:.2f} s; looping over the {S} seeds: "
          f"{t_loop:.2f} s; speed-up {t_loop / t_batched:.1f}x")


if __name__ == "__main__":
    main()
