"""Speed of chapter 2's engines, printed as rates.

The issue asks for characters per second of language-model training and sampling
(the character GRU of ``vanishing_tails.lm`` on real Shakespeare lines, as chapter 2
trains it); for context it also prints VAE training steps per second (all chains at
once) and Gaussian-mixture refits per second. Run: ``python benchmarks/bench_families.py``
(single-threaded, like the test suite: set ``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from vanishing_tails.core import lm
from vanishing_tails.experiments.families import charlm, mixture, vae


def rate(fn, units: float, repeat: int = 3) -> float:
    """Best-of-``repeat`` units per second of CPU time."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return units / best


def lm_rates(vocab_size: int, X: torch.Tensor, hidden: int, batch: int, width: int, bos: int,
             steps: int = 20, n_lines: int = 512) -> tuple[float, float]:
    """(training sequences/s, sampled characters/s) of a character GRU."""
    model = lm.build_model("gru", vocab_size, seed=0, d_embed=32, d_hidden=hidden)
    lm.train_lm(model, X, steps=2, batch_size=batch, seed=0)  # warm-up
    train = rate(lambda: lm.train_lm(model, X, steps=steps, batch_size=batch, seed=1), steps * batch)
    prefix = torch.full((n_lines, 1), bos, dtype=torch.long)
    n_sampled: list[float] = []

    def draw():
        out = lm.sample(model, prefix, width - 1, generator=torch.Generator().manual_seed(0))
        n_sampled.append(float((out[:, 1:] != 0).sum()))

    draw()
    return train, rate(draw, n_sampled[-1])


def main() -> None:
    torch.set_num_threads(1)
    c = charlm.corpus(48)
    width = 50
    rng = np.random.default_rng(0)
    lines = [c.train[i] for i in rng.choice(len(c.train), 2000, replace=False)]
    X = c.vocab.encode_batch(lines, max_len=width)
    real_chars = float((X[:, 1:] != 0).sum()) / len(X)  # real (non-pad) target characters per line
    print("character GRU on Shakespeare lines (<= 48 chars), one CPU thread")
    print(f"{'hidden':>7} {'batch':>6} {'train chars/s':>15} {'(incl. padding)':>16} {'sample chars/s':>15}")
    for hidden, batch in [(64, 64), (64, 128), (128, 128), (256, 128)]:
        train, sample_rate = lm_rates(len(c.vocab), X, hidden, batch, width, c.vocab.bos_id)
        print(f"{hidden:>7} {batch:>6} {train * real_chars:>15,.0f} {train * (width - 1):>16,.0f} "
              f"{sample_rate:>15,.0f}")

    x = torch.rand(8, 400, 64)
    vae.train_vae(x, hidden=128, latent=8, steps=5, batch_size=128, lr=1e-2, seed=0)
    vae_rate = rate(lambda: vae.train_vae(x, hidden=128, latent=8, steps=100, batch_size=128, lr=1e-2,
                                          seed=0), 100)
    print(f"VAE (8 chains batched, hidden 128): {vae_rate:,.0f} Adam steps/s "
          f"= {8 * vae_rate:,.0f} chain-steps/s")

    pts = mixture.REAL_MIXTURE.sample(250, np.random.default_rng(0))
    fits = rate(lambda: [mixture._fit_one(pts, 3, s) for s in range(50)], 50)
    print(f"GaussianMixture refit (n = 250, 3 components): {fits:,.0f} fits/s")


if __name__ == "__main__":
    main()
