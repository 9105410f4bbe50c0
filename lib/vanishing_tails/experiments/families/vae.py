"""A small variational autoencoder retrained on its own samples of real handwriting: chapter 2, section 2.

Real data: scikit-learn's bundled 8x8 digits (:func:`vanishing_tails.core.data.digits`,
Alpaydin & Kaynak 1998), made *imbalanced* so that some digits are rare events: in
each chain the ten classes get a random order and shares w_r proportional to
``class_decay ** r`` (rank r = 0..9), so with ``class_decay = 0.7`` the rarest three classes
hold about 6% of the images.

Model (Kingma & Welling 2014): encoder 64 -> h -> (mu, log s^2) in R^latent, decoder
latent -> h -> 64 grey levels g(z) = sigmoid(f(z)), a Gaussian likelihood
N(x; g(z), decoder_sd^2 I). Loss per image (the negative ELBO up to a constant):
``||x - g(z)||^2 / (2 decoder_sd^2) + KL(N(mu, s^2) || N(0, I))``. A generated image is the
decoder's mean g(z) at z ~ N(0, I) (pixel noise is not added). Each generation is trained from a fresh
initialisation on the data of the regime (:func:`vanishing_tails.core.collapse.recursive_fit`).

All ``chains`` VAEs train at once: every weight has a leading chain axis and the
layers are batched matrix products, so C chains cost about as much as one on a CPU.
Adam is elementwise, hence the chains are exactly independent.

Measures per generation (on ``n_measure`` fresh samples per chain), judged by a
logistic-regression classifier trained on all 1,797 real digits: the share of samples
the classifier finds atypical (top class probability < 0.5); each class's share — the
share of samples *confidently* classified as that class, so that a blurred blob the
classifier would call "8" by default counts for no class — relative to its real share
(by rank); the rarest and the most common ``n_rare`` classes' shares relative to theirs;
and the Vendi score of the pixels (Friedman & Dieng 2023, cosine kernel).

Explained in :ref:`sec-families-vae`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from vanishing_tails.core import collapse, data, lm, metrics

from .fitting import Adam, seeded_fit

#: k of the k-nearest-neighbour precision and recall (Kynkäänniemi et al. 2019 use k = 3).
PR_K = 3


@lru_cache(maxsize=1)
def digit_classifier():
    """Multinomial logistic regression on all 1,797 real digits (fixed; deterministic).

    Explained in :ref:`sec-families-vae`.
    """
    from sklearn.linear_model import LogisticRegression

    X, y = data.digits()
    return LogisticRegression(C=1.0, max_iter=3000).fit(X.astype(np.float64), y)


def class_shares(n_classes: int, class_decay: float) -> np.ndarray:
    """Real share of the class of rank r: class_decay^r / sum_j class_decay^j.

    Explained in :ref:`sec-families-vae`.
    """
    w = class_decay ** np.arange(n_classes)
    return w / w.sum()


class BatchedVAE(torch.nn.Module):
    """``chains`` independent MLP VAEs (64 -> hidden -> latent -> hidden -> 64) in one module.

    Explained in :ref:`sec-families-vae`.
    """

    def __init__(
        self,
        chains: int,
        d_in: int = 64,
        hidden: int = 128,
        latent: int = 8,
        *,
        decoder_sd: float = 0.2,
        generator: torch.Generator,
    ):
        super().__init__()
        self.latent = latent
        self.decoder_sd = decoder_sd
        shapes = [(d_in, hidden), (hidden, 2 * latent), (latent, hidden), (hidden, d_in)]
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for fan_in, fan_out in shapes:  # torch.nn.Linear's default initialisation
            bound = 1 / math.sqrt(fan_in)
            w = (torch.rand(chains, fan_in, fan_out, generator=generator) * 2 - 1) * bound
            b = (torch.rand(chains, 1, fan_out, generator=generator) * 2 - 1) * bound
            self.weights.append(torch.nn.Parameter(w))
            self.biases.append(torch.nn.Parameter(b))

    def _layer(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.biases[i], x, self.weights[i])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self._layer(1, F.relu(self._layer(0, x)))
        return h[..., : self.latent], h[..., self.latent :]

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self._layer(3, F.relu(self._layer(2, z)))

    def loss(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Negative ELBO per image, summed over chains and averaged over the batch: [C, B, 64] -> scalar."""
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * eps
        rec = (torch.sigmoid(self.decode_logits(z)) - x).square().sum(-1) / (2 * self.decoder_sd**2)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)
        return (rec + kl).mean(1).sum()

    @torch.no_grad()
    def generate(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Decoder means sigmoid(f(z)), z ~ N(0, I): ``[C, n, 64]``."""
        z = torch.randn(self.weights[0].shape[0], n, self.latent, generator=generator)
        return torch.sigmoid(self.decode_logits(z.to(self.weights[0].device))).cpu()


def train_vae(
    x: torch.Tensor,
    *,
    hidden: int,
    latent: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    device,
    decoder_sd: float = 0.2,
) -> BatchedVAE:
    """Train ``x.shape[0]`` VAEs, one per chain, on ``x`` ``[C, N, 64]`` with Adam (minibatches drawn
    with replacement by a generator seeded with ``seed``).

    Explained in :ref:`sec-families-vae`.
    """
    dev = lm.resolve_device(device)
    gen = torch.Generator().manual_seed(seed)
    C, N, D = x.shape
    model = BatchedVAE(C, D, hidden, latent, decoder_sd=decoder_sd, generator=gen).to(dev)
    opt = Adam(model.parameters(), lr=lr)
    x = x.to(dev)
    rows = torch.arange(C, device=dev)[:, None]
    for _ in range(steps):
        idx = torch.randint(N, (C, batch_size), generator=gen)
        eps = torch.randn(C, batch_size, latent, generator=gen).to(dev)
        loss = model.loss(x[rows, idx.to(dev)], eps)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model


def vae_chains(
    n: int,
    generations: int,
    chains: int,
    *,
    regime: str,
    real_fraction: float,
    class_decay: float,
    steps: int,
    device,
    seed: int,
    n_rare: int = 3,
    hidden: int = 128,
    latent: int = 8,
    decoder_sd: float = 0.2,
    batch_size: int = 128,
    lr: float = 1e-2,
    n_measure: int = 300,
    snapshot_generations: tuple[int, ...] = (),
) -> tuple[pd.DataFrame, dict[int, np.ndarray]]:
    """Recursively retrain a VAE on its own generated digits, ``chains`` chains at once (module docstring).

    Each chain's class order (which digits are rare) is drawn from ``seed`` (a stream of its
    own, spawned from it), so two calls with the same seed share the real data and the
    generation-0 models whatever their regime. ``regime="mix"`` with ``real_fraction = 0``
    is ``replace``.

    Returns ``(frame, snapshots)``: the long frame (``generation``, ``quantity``,
    ``chain``, ``value``) with quantities ``share_rank_r`` (class of rank r, relative to its
    real share), ``rare_share``, ``common_share`` (the ``n_rare`` rarest / most common
    classes, relative), ``vendi``, ``atypical``, ``precision`` and ``recall`` (k-NN precision and
    recall in pixel space, k = :data:`PR_K`, of the ``n_measure`` samples against ``n_measure``
    real images of the chain's real law drawn once from a stream of their own,
    :func:`vanishing_tails.core.metrics.precision_recall`); and for each generation in
    ``snapshot_generations`` the first 16 generated images of chain 0 ``[16, 8, 8]``.
    Explained in :ref:`sec-families-vae`.
    """
    collapse._check_sizes(
        n=(n, 20),
        generations=(generations, 0),
        chains=(chains, 1),
        hidden=(hidden, 2),
        latent=(latent, 1),
        steps=(steps, 1),
        batch_size=(batch_size, 1),
        n_measure=(n_measure, 10),
    )
    if not 0 < class_decay <= 1:
        raise ValueError(f"class_decay must lie in (0, 1]; got {class_decay!r}")
    if not 1 <= n_rare <= 5:
        raise ValueError(f"n_rare must be an integer in [1, 5]; got {n_rare!r}")
    X, y = data.digits()
    by_class = [np.flatnonzero(y == c) for c in range(10)]
    shares = class_shares(10, class_decay)
    order_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])  # the loop uses children 0, 1
    order = np.stack([order_rng.permutation(10) for _ in range(chains)])
    clf = digit_classifier()
    snapshots: dict[int, np.ndarray] = {}
    ref_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(4)[3])  # the real reference of precision/recall

    def real_sample(m, rng):
        out = np.empty((chains, m, 64), dtype=np.float32)
        for c in range(chains):
            counts = rng.multinomial(m, shares)
            idx = np.concatenate(
                [
                    rng.choice(by_class[order[c, r]], k, replace=k > len(by_class[order[c, r]]))
                    for r, k in enumerate(counts)
                ]
            )
            out[c] = X[rng.permutation(idx)]
        return torch.from_numpy(out)

    def train(x, s):
        return train_vae(
            x,
            hidden=hidden,
            latent=latent,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            seed=s,
            decoder_sd=decoder_sd,
            device=device,
        )

    fit = seeded_fit(train, ("vae", hidden, latent, decoder_sd, steps, batch_size, lr, str(device)))

    def sample(model, m, rng):
        return model.generate(m, torch.Generator().manual_seed(int(rng.integers(2**62))))

    def measure(model, t, rng):
        imgs = sample(model, n_measure, rng).numpy()  # [C, M, 64]
        if t in snapshot_generations:
            snapshots[t] = imgs[0, :16].reshape(16, 8, 8)
        prob = clf.predict_proba(imgs.reshape(-1, 64).astype(np.float64)).reshape(chains, n_measure, 10)
        confident = prob.max(-1) >= 0.5
        label = np.where(confident, prob.argmax(-1), -1)  # atypical samples count for no class
        share = (label[..., None] == np.arange(10)).mean(1)  # [C, 10] by digit
        by_rank = np.take_along_axis(share, order, axis=1) / shares  # [C, 10] relative, by rank
        out = {f"share_rank_{r}": by_rank[:, r] for r in range(10)}
        out["rare_share"] = (by_rank[:, -n_rare:] * shares[-n_rare:]).sum(1) / shares[-n_rare:].sum()
        out["common_share"] = (by_rank[:, :n_rare] * shares[:n_rare]).sum(1) / shares[:n_rare].sum()
        out["vendi"] = np.array([metrics.vendi_score(im) for im in imgs])
        out["atypical"] = (prob.max(-1) < 0.5).mean(1)
        out["precision"], out["recall"] = metrics.precision_recall(real_ref, imgs.astype(np.float64), k=PR_K)
        return out

    real_ref = real_sample(n_measure, ref_rng).numpy().astype(np.float64)
    frame = collapse.recursive_fit(
        fit,
        sample,
        measure,
        real_sample=real_sample,
        n=n,
        generations=generations,
        regime=regime,
        real_fraction=real_fraction,
        concat=lambda parts: torch.cat(parts, dim=1),
        subsample=lambda x, m, rng: x[:, np.sort(rng.choice(x.shape[1], m, replace=False))],
        seed=seed,
    )
    return frame, snapshots
