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

    def _negative_elbo(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """−ELBO of each image ``[C, B]`` (up to the Gaussian likelihood's constant), one
        reparameterised draw z = μ + σ ε: ‖sigmoid(f(z)) − x‖² / 2σ_dec² + KL(N(μ, σ²) ‖ N(0, I))."""
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * eps
        rec = (torch.sigmoid(self.decode_logits(z)) - x).square().sum(-1) / (2 * self.decoder_sd**2)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)
        return rec + kl

    def loss(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Negative ELBO per image, summed over chains and averaged over the batch: [C, B, 64] -> scalar."""
        return self._negative_elbo(x, eps).mean(1).sum()

    @torch.no_grad()
    def elbo(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """ELBO per image (up to the Gaussian likelihood's constant), averaged over the batch: ``[C]``."""
        return -self._negative_elbo(x, eps).mean(1)

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
    sizes: torch.Tensor | None = None,
) -> BatchedVAE:
    """Train ``x.shape[0]`` VAEs, one per chain, on ``x`` ``[C, N, 64]`` with Adam (minibatches drawn
    with replacement by a generator seeded with ``seed``; with ``sizes`` ``[C]`` chain c draws from
    its first ``sizes[c]`` rows only — padded data of unequal sizes).

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
        if sizes is None:
            idx = torch.randint(N, (C, batch_size), generator=gen)
        else:
            idx = (torch.rand(C, batch_size, generator=gen) * sizes[:, None]).long()
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


def vae_members(
    n: int,
    generations: int,
    n_seeds: int,
    *,
    arms: list[tuple[str, str, float]],
    class_decays: list[float],
    steps: int,
    hidden: int,
    latent: int,
    batch_size: int,
    n_measure: int,
    q: float,
    seed: int,
    lr: float = 1e-2,
    decoder_sd: float = 0.2,
    n_support: int = 100,
) -> pd.DataFrame:
    """Every (arm, class_decay, chain) of the digit VAE's recursion as one member of one batched
    VAE (:func:`.members.recursive_members`): one training per generation for all of them.

    ``arms`` are ``(name, regime, real_fraction)`` with regime ``replace``, ``accumulate`` or
    ``mix``. Chain c's class order (which digits are rare) is drawn from ``seed`` and shared by
    every arm and decay; the members of one (decay, chain) share the real data and the
    generation-0 VAE. Each generation is measured on ``n_measure`` decoded samples per member,
    judged by :func:`digit_classifier` as in :func:`vae_chains`: ``share_rank_r`` (the share of
    samples confidently classified as the class of rank r, relative to its real share),
    ``atypical`` (top class probability < 0.5), the outcome shares ``p_0 .. p_10`` (ten classes
    by rank, then atypical), the common tail measures of :func:`trajectory` and ``quality``,
    the ELBO of ``n_measure`` real images of the member's real law (nats per image, up to the
    likelihood's constant; drawn once per chain and decay). Returns one row per member and
    generation: ``arm``, ``class_decay``, ``replicate``, ``generation`` and the measures.
    Explained in :ref:`sec-families-vae`.
    """
    from vanishing_tails.core import tails

    from .members import recursive_members

    collapse._check_sizes(
        n=(n, 20),
        generations=(generations, 0),
        n_seeds=(n_seeds, 1),
        hidden=(hidden, 2),
        latent=(latent, 1),
        steps=(steps, 1),
        batch_size=(batch_size, 1),
        n_measure=(n_measure, 10),
        n_support=(n_support, 1),
    )
    for d in class_decays:
        if not 0 < d <= 1:
            raise ValueError(f"class_decay must lie in (0, 1]; got {d!r}")
    collapse._check_tail_q(q)
    if not arms:
        raise ValueError("arms must name at least one arm")
    X, y = data.digits()
    Xt = torch.from_numpy(X.astype(np.float32))
    by_class = [np.flatnonzero(y == c) for c in range(10)]
    D, C = len(class_decays), n_seeds
    law = np.stack([class_shares(10, d) for d in class_decays])  # [D, 10] by rank
    order_ss, ref_ss, loop_ss = np.random.SeedSequence(seed).spawn(3)
    order_rng = np.random.default_rng(order_ss)
    order = np.stack([order_rng.permutation(10) for _ in range(C)])  # [C, 10]: digit of rank r
    g_decay, g_chain = np.repeat(np.arange(D), C), np.tile(np.arange(C), D)  # group g = (decay, chain)
    members = [(a, d, c) for a in range(len(arms)) for d in range(D) for c in range(C)]
    groups = np.array([d * C + c for _, d, c in members])
    clf = digit_classifier()

    def real_sample(group_of_row, m, rng):
        counts = np.stack([rng.multinomial(m, law[g_decay[g]]) for g in group_of_row])  # [K, 10] by rank
        idx = np.empty((len(group_of_row), m), dtype=np.int64)
        for k, g in enumerate(group_of_row):
            picks = [
                rng.choice(by_class[order[g_chain[g], r]], cnt, replace=cnt > len(by_class[order[g_chain[g], r]]))
                for r, cnt in enumerate(counts[k])
            ]
            idx[k] = rng.permutation(np.concatenate(picks))
        return Xt[torch.from_numpy(idx)]

    ref_rng = np.random.default_rng(ref_ss)
    real_ref = real_sample(np.arange(D * C), n_measure, ref_rng)  # quality's real images, per group
    ref_eps = torch.randn(
        D * C, n_measure, latent, generator=torch.Generator().manual_seed(int(ref_rng.integers(2**62)))
    )

    def fit(x, sizes, rng):
        s = int(rng.integers(2**62))
        return train_vae(x, hidden=hidden, latent=latent, steps=steps, batch_size=batch_size, lr=lr, seed=s,
                         decoder_sd=decoder_sd, device="cpu", sizes=sizes)  # fmt: skip

    def sample(model, m, rng, rows=None):
        return model.generate(m, torch.Generator().manual_seed(int(rng.integers(2**62))))

    def measure(model, t, rows, rng):
        group_of_row = groups[rows]
        imgs = sample(model, n_measure, rng).numpy()
        K = len(group_of_row)
        prob = clf.predict_proba(imgs.reshape(-1, 64).astype(np.float64)).reshape(K, n_measure, 10)
        label = np.where(prob.max(-1) >= 0.5, prob.argmax(-1), -1)
        share = (label[..., None] == np.arange(10)).mean(1)  # [K, 10] by digit
        by_rank = np.take_along_axis(share, order[g_chain[group_of_row]], axis=1)
        atypical = (label < 0).mean(1)
        p = np.concatenate([by_rank, atypical[:, None]], axis=1)  # [K, 11]
        decay_of_row = g_decay[group_of_row]
        out = pd.DataFrame(index=range(K), columns=["support", "q_tail_mass", "error_mass", "mode_share"], dtype=float)
        for d in np.unique(decay_of_row):  # one batched call per real law
            sel = np.flatnonzero(decay_of_row == d)
            m = tails.categorical_measures(p[sel], np.append(law[d], 0.0), np.full(11, 1 / 11), q=q, n=n_support)
            out.iloc[sel] = m[out.columns].to_numpy()
        res = {f"share_rank_{r}": by_rank[:, r] / law[g_decay[group_of_row], r] for r in range(10)}
        res.update({f"p_{i}": p[:, i] for i in range(11)})
        res.update({c: out[c].to_numpy() for c in ("support", "q_tail_mass", "error_mass", "mode_share")})
        res["atypical"] = atypical
        res["quality"] = model.elbo(real_ref[group_of_row], ref_eps[group_of_row]).numpy()
        return res

    frame = recursive_members(
        fit,
        sample,
        measure,
        real_sample=real_sample,
        groups=groups,
        regimes=[arms[a][1] for a, _, _ in members],
        real_fractions=[arms[a][2] for a, _, _ in members],
        n=n,
        generations=generations,
        seed=int(np.random.default_rng(loop_ss).integers(2**62)),
    )
    info = pd.DataFrame(
        {
            "arm": [arms[a][0] for a, _, _ in members],
            "class_decay": [float(class_decays[d]) for _, d, _ in members],
            "replicate": [c for _, _, c in members],
        }
    )
    frame = info.iloc[frame["member"].to_numpy()].reset_index(drop=True).join(frame.drop(columns="member"))
    # KL(p_t || p_0) on the eleven outcome shares, both smoothed by half a count (finite; 0 at step 0)
    pc = [f"p_{i}" for i in range(11)]
    sm = (frame[pc].to_numpy() * n_measure + 0.5) / (n_measure + 5.5)
    key = frame["arm"] + "|" + frame["class_decay"].astype(str) + "|" + frame["replicate"].astype(str)
    first = pd.DataFrame(sm, index=frame.index)[frame["generation"].to_numpy() == 0].set_index(
        key[frame.generation == 0]
    )
    s0 = first.loc[key].to_numpy()
    frame["kl_from_start"] = np.maximum(metrics.kl_divergence(sm, s0), 0.0)
    return frame


def trajectory(
    *,
    n: int,
    generations: int,
    n_seeds: int,
    steps: int,
    hidden: int,
    latent: int,
    batch_size: int,
    n_measure: int,
    class_decay: float,
    real_fractions: list[float],
    real_fraction: float,
    q: float,
    seed: int,
) -> pd.DataFrame:
    """The book's common tail measures of the digit VAE retrained on its own samples, per arm,
    chain (``replicate``) and generation (``step``); every arm trains as members of one
    batched VAE (:func:`vae_members`).

    Outcome space: the ten digit classes of a fixed classifier (:func:`digit_classifier`,
    logistic regression on all real digits) plus one *atypical* outcome (the classifier's top
    probability < 0.5); the real law puts ``class_decay^r`` (normalised) on the class of rank r
    and nothing on *atypical*. Per generation, on ``n_measure`` decoded samples:
    ``support`` = expected distinct outcomes in 100 draws / the real law's;
    ``q_tail_mass`` = the samples' share on the real law's rarest classes (its least-probable
    ``q``), relative to their real share; ``error_mass`` = the atypical share (blurred images
    no class claims: mass where the real law has none); ``mode_share`` = the largest outcome
    share; ``kl_from_start`` = KL(p_t ‖ p_0) on the eleven shares, each smoothed by half a
    count; ``quality`` = the ELBO of real images of the chain's law (nats per image, up to a
    constant; higher is better).

    Arms (paired by chain: same class order, real data and generation 0): ``replace``,
    ``accumulate`` and ``mix <rf>`` for every ``rf`` in ``real_fractions``; every arm gets at
    least ``real_fraction`` fresh real images per generation (``real_fraction = 1``: fresh real
    data only, the null under which nothing moves). ``mechanism`` is ``error`` for every arm:
    samples are decoder means at temperature 1, and the approximation error (blur) grows mass
    on images no digit class claims. Seeds: ``streams(seed)["vae-trajectory"]``.
    Explained in :ref:`sec-families-vae`.
    """
    from vanishing_tails.core.seeds import streams
    from vanishing_tails.core.tails import COLUMNS

    collapse._check_fractions(real_fraction=real_fraction, real_fractions=list(real_fractions))
    floor = float(real_fraction)
    base = "mix" if floor > 0 else None
    arms = [("replace", base or "replace", floor), ("accumulate", "accumulate" if floor == 0 else "mix", floor)]
    arms += [(f"mix {rf:g}", "mix", max(float(rf), floor)) for rf in real_fractions]
    frame = vae_members(
        n,
        generations,
        n_seeds,
        arms=arms,
        class_decays=[class_decay],
        steps=steps,
        hidden=hidden,
        latent=latent,
        batch_size=batch_size,
        n_measure=n_measure,
        q=q,
        seed=streams(seed)["vae-trajectory"],
    )
    frame = frame.rename(columns={"generation": "step"})
    frame["experiment"] = "families"
    frame["mechanism"] = "error"
    return frame[["experiment", "arm", "replicate", "step", "mechanism", *COLUMNS]].reset_index(drop=True)
