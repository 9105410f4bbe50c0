"""Speed of chapter 2's engines: every family trains all its chains at once; this prints how
much that buys over one chain (or one fit) at a time, as ratios.

* the character GRU: ``charlm.GRUChains`` training 5 chains at once against 5
  ``lm.CharGRU`` models trained one after the other (the same model and data sizes as the
  ``book`` scale), and sampling;
* the Gaussian mixture: ``mixture.fit_mixtures`` on 64 chains at once against
  scikit-learn's ``GaussianMixture`` fit chain by chain;
* the VAE (already batched): Adam steps per second of 8 chains.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_families.py`` (single-threaded, like the
test suite).
"""

from __future__ import annotations

import numpy as np
import torch
from timing import best_of

from vanishing_tails.core import lm
from vanishing_tails.experiments.families import charlm, mixture, vae


def lm_speed(chains: int = 5, steps: int = 20, hidden: int = 64, batch: int = 64) -> None:
    c = charlm.corpus()
    rng = np.random.default_rng(0)
    data = c.train_ids[
        torch.from_numpy(np.stack([rng.choice(len(c.train), 800, replace=False) for _ in range(chains)]))
    ]
    V = len(c.vocab)

    def one_at_a_time():
        for k in range(chains):
            model = lm.build_model("gru", V, seed=k, d_embed=32, d_hidden=hidden)
            lm.train_lm(model, data[k].long(), steps=steps, batch_size=batch, lr=1e-2, seed=k)

    def batched():
        model = charlm.GRUChains(chains, V, 32, hidden, generator=torch.Generator().manual_seed(0))
        charlm.train_chains(model, data, steps=steps, batch_size=batch, lr=1e-2, seed=0)

    t_one, t_batched = best_of(one_at_a_time), best_of(batched)
    print(f"character GRU, {chains} chains x {steps} steps (hidden {hidden}, batch {batch} lines of <= 48 chars):")
    print(f"  one at a time {t_one:.2f} s, all chains at once {t_batched:.2f} s: {t_one / t_batched:.2f}x")

    model = charlm.GRUChains(chains, V, 32, hidden, generator=torch.Generator().manual_seed(0))
    n = 800
    t_sample = best_of(
        lambda: charlm.sample_chains(model, n, 49, generator=torch.Generator().manual_seed(0), temperature=1.0)
    )
    print(f"  sampling {chains} x {n} lines: {t_sample:.2f} s ({chains * n / t_sample:,.0f} lines/s)")


def mixture_speed(chains: int = 64, n: int = 250) -> None:
    from sklearn.mixture import GaussianMixture

    x = mixture.real_sample(n, chains, np.random.default_rng(0))

    def sklearn_fits():
        for k in range(chains):
            GaussianMixture(3, covariance_type="full", max_iter=200, reg_covar=1e-6, random_state=k).fit(x[k])

    t_sk, t_batched = best_of(sklearn_fits), best_of(lambda: mixture.fit_mixtures(x, 3, seed=0))
    print(f"Gaussian mixture, {chains} chains of n = {n} (3 components):")
    print(f"  scikit-learn chain by chain {t_sk:.2f} s, batched EM {t_batched:.3f} s: {t_sk / t_batched:.1f}x")


def vae_speed(chains: int = 8, steps: int = 100) -> None:
    x = torch.rand(chains, 400, 64)
    kw = dict(hidden=128, latent=8, batch_size=128, lr=1e-2, seed=0, device="cpu")
    t = best_of(lambda: vae.train_vae(x, steps=steps, **kw))
    rate = steps / t
    print(f"VAE, {chains} chains at once (hidden 128): {rate:,.0f} Adam steps/s = {chains * rate:,.0f} chain-steps/s")


def main() -> None:
    torch.set_num_threads(1)
    lm_speed()
    mixture_speed()
    vae_speed()


if __name__ == "__main__":
    main()
