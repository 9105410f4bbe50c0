"""Speed of chapter 3's GRPO loop (``experiments.sharpening.policies.train_answer_policy``).

Prints policy updates per second at the chapter's sizes (the spec's preset of the chosen
scale) for each arm, the number of (problem, sample) pairs processed per second, and the
speed-up of batching the seeds into one set of tensor ops over looping over them one at a
time. One update is one Adam step of every seed's policy on a fresh group of G answers
for every training problem. Run:
``OMP_NUM_THREADS=1 python benchmarks/bench_rl.py [--scale smoke|book] [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse

from timing import best_of

from vanishing_tails.experiments.sharpening import policies as ap
from vanishing_tails.experiments.sharpening.spec import SPEC


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", default="smoke", choices=("smoke", "book"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    P = SPEC.resolve(scale=args.scale, device=args.device, steps=args.steps, eval_every=args.steps)
    S, G = P["n_seeds"], P["group_size"]
    sizes = {
        name: P[name]
        for name in (
            "n_solved",
            "n_unsolved",
            "n_held_out",
            "n_answers",
            "n_features",
            "n_hidden",
            "base_scale",
            "p_unsolved",
            "device",
        )
    }
    task = ap.make_answer_task(n_seeds=S, seed=0, **sizes)
    train = dict(
        steps=P["steps"],
        group_size=G,
        lr=P["lr"],
        eval_every=P["eval_every"],
        n_distinct=P["n_distinct"],
        k_max=max(P["ks"]),
        normalize=P["normalize"],
        seed=1,
    )
    n_train = P["n_solved"] + P["n_unsolved"]
    pairs = S * n_train * G
    print(
        f"{args.scale}: {S} seeds x {n_train} training problems x G = {G} answers, K = {P['n_answers']}, "
        f"{P['steps']} updates, device {args.device}"
    )
    arms = ap.standard_arms(ucb_c=P["ucb_c"], batch_c=P["batch_c"], entropy_beta=P["entropy_beta"])
    for arm in arms:
        t = best_of(lambda: ap.train_answer_policy(task, arm, **train))
        print(
            f"  {arm.name:18s} {P['steps'] / t:8.1f} updates/s   "
            f"{pairs * P['steps'] / t / 1e6:6.2f} M (problem, answer) pairs/s"
        )

    arm = arms[0]
    t_batched = best_of(lambda: ap.train_answer_policy(task, arm, **train))
    one = [ap.make_answer_task(n_seeds=1, seed=s, **sizes) for s in range(S)]
    t_loop = best_of(lambda: [ap.train_answer_policy(t1, arm, **train) for t1 in one])
    print(
        f"seeds batched in one set of ops: {t_batched:.2f} s; looping over the {S} seeds: "
        f"{t_loop:.2f} s; speed-up {t_loop / t_batched:.1f}x"
    )


if __name__ == "__main__":
    main()
