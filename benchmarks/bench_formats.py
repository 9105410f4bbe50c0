"""Speed of chapter 4's engines: tokens per second for pretraining and for sampling.

Prints, for the two smoke-scale model sizes of chapter 4 (``formats``):

* pretraining throughput (non-PAD tokens per second of ``lm.train_lm`` on the format
  corpus, as ``echo.pretrain`` runs it);
* sampling throughput (generated tokens per second) of ``lm.sample`` (incremental
  decoding with a key/value cache) against recomputing the whole prefix for each token
  (``full_forward_sample`` below), and their ratio;
* one RL step (sample a group, score, KL-shaped policy-gradient update) per second;
* the cost of a cached ``echo.pretrain`` call against a cold one.

Run: ``python benchmarks/bench_formats.py`` (add ``--device auto`` to use a GPU).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from vanishing_tails.core import lm
from vanishing_tails.experiments.formats import echo
from vanishing_tails.experiments.formats import task as fm
from vanishing_tails.experiments.formats.spec import SPEC


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


@torch.no_grad()
def full_forward_sample(model, prefix, new, generator):
    """The baseline: one forward pass over the whole sequence for every new token."""
    seq = prefix
    for _ in range(new):
        probs = torch.softmax(model(seq)[:, -1].float(), dim=-1)
        seq = torch.cat([seq, torch.multinomial(probs, 1, generator=generator)], dim=1)
    return seq


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dev = lm.resolve_device(args.device)
    P = SPEC.resolve(scale="smoke")
    task = fm.Task(n_ops=P["n_ops"], max_value=P["max_value"], max_operand=P["max_operand"],
                   slip=P["slip"], code_misreads=tuple(P["code_misreads"]))
    data, _ = fm.pretraining_corpus(task, 20_000, fm.check_proportions(P["proportions"]), seed=0)
    prompts = fm.encode_prompts(task, fm.generate_problems(task, 512, seed=1, split="heldout"))
    print(f"device {dev}, torch threads {torch.get_num_threads()}, sequence length {task.seq_len}")
    for name, d, L, h in zip(("small", "large"), P["d_models"], P["n_layers"], P["n_heads"]):
        model = lm.build_model("transformer", len(task.vocab), seed=0, device=dev, d_model=d,
                               n_layers=L, n_heads=h, max_len=task.seq_len)
        steps, bs = 100, P["pretrain_batch"]
        gen = torch.Generator().manual_seed(0)
        idx = torch.randint(len(data), (steps * bs,), generator=gen)
        tokens = int((data[idx][:, 1:] != 0).sum()) / steps  # non-PAD targets per step, on average
        t_train, _ = best_of(lambda: lm.train_lm(model, data, steps=steps, batch_size=bs, seed=0), 2)
        new = task.max_completion_len
        t_kv, s_kv = best_of(lambda: lm.sample(model, prompts, new, generator=torch.Generator().manual_seed(0)))
        t_plain, s_plain = best_of(lambda: full_forward_sample(model, prompts, new, torch.Generator().manual_seed(0)))
        gen_kv = int((s_kv[:, task.prompt_len:] != 0).sum())
        gen_plain = int((s_plain[:, task.prompt_len:] != 0).sum())
        print(f"{name:5s} ({lm.n_parameters(model):7d} params)  pretraining {steps * tokens / t_train:9.0f} tok/s  "
              f"sampling: lm.sample (kv-cache) {gen_kv / t_kv:9.0f} tok/s, full forward {gen_plain / t_plain:9.0f} tok/s, "
              f"ratio {(gen_kv / t_kv) / (gen_plain / t_plain):4.1f}x")
        probs = fm.generate_problems(task, 240, seed=2, split="heldout")
        cfg = echo.RLConfig(beta=P["betas"][0], steps=10, batch_problems=P["batch_problems"],
                            group_size=P["group_size"], seed=0)
        t_rl, _ = best_of(lambda: echo.rl_run(task, model, probs, cfg), 2)
        print(f"      RL: {cfg.steps / t_rl:5.1f} steps/s ({cfg.batch_problems} problems x {cfg.group_size} samples)")
    # the checkpoint cache
    cfg = echo.PretrainConfig(task, tuple(fm.check_proportions(P["proportions"])),
                              echo.ModelSize("large", P["d_models"][1], P["n_layers"][1], P["n_heads"][1]),
                              n_corpus=20_000, steps=100, batch_size=P["pretrain_batch"], seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        echo.pretrain(cfg, cache_dir=tmp, device=dev)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, info = echo.pretrain(cfg, cache_dir=tmp, device=dev)
        warm = time.perf_counter() - t0
    assert info["cached"]
    print(f"pretrain (100 steps, large): cold {cold:.2f} s, from the cache {warm * 1000:.0f} ms "
          f"({cold / warm:.0f}x faster)")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
