"""Partitions of a group of samples and DARLING's partition diversity (chapter 8).

DARLING (Li et al. 2025, ``li2025darling``) samples a group of G responses to one
prompt, partitions the group into semantic-equivalence classes with a learned pairwise
classifier (pairs judged equivalent are merged, union-find style, so the partition is the
transitive closure of the judged relation), and gives sample i the diversity

    d_i = #{j != i : j not in the class of i} / (G - 1),

the share of the *other* samples outside its own class (1 when no other sample is
equivalent to it, 0 when all are). Its reward is quality × diversity.

This module holds the three ways the chapter partitions a group — by the toy's exact
semantic classes (:func:`class_relation`), by a learned pair classifier
(:class:`PairClassifier`), by a lexical proxy (:func:`lexical_relation`, n-gram Jaccard
overlap) — each as a boolean relation over the whole output space, so that a group's
pairwise judgements are one gather; and the diversity itself, computed for every group
of every seed and prompt at once (:func:`partition_diversity`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vanishing_tails.core.domains import Domain


def closure(same: torch.Tensor) -> torch.Tensor:
    """Transitive closure of a symmetric, reflexive boolean relation ``same[..., G, G]``.

    Repeated squaring of the adjacency matrix (ceil(log2 G) boolean products) for every
    leading index at once: i ~ j in the result when a chain of judged-equivalent pairs
    links them — the classes a union-find over the judged pairs would build.
    Explained in :ref:`sec-darling-reward`.
    """
    G = same.shape[-1]
    r = same | torch.eye(G, dtype=torch.bool, device=same.device)
    steps = max(1, int(np.ceil(np.log2(max(G, 2)))))
    for _ in range(steps):
        r = (r.to(torch.float32) @ r.to(torch.float32)) > 0
    return r


def partition_diversity(same: torch.Tensor, *, transitive: bool = False) -> torch.Tensor:
    """DARLING's diversity of every sample of every group: ``d_i = (G - n_i) / (G - 1)``.

    ``same[..., G, G]`` holds the pairwise equivalence judgements of a group (the last two
    axes); ``n_i`` is the size of sample i's class in the partition, the transitive
    closure of ``same`` (pass ``transitive=True`` when ``same`` is already an equivalence
    relation, e.g. equality of class labels, to skip the closure). Returns ``[..., G]``
    in [0, 1]: 1 for a sample no other sample is equivalent to, 0 when every other sample
    is. One tensor expression for all groups: no loop over groups or samples.
    Explained in :ref:`sec-darling-reward`.
    """
    G = same.shape[-1]
    if G < 2 or same.shape[-2] != G:
        raise ValueError(f"same must have shape [..., G, G] with G >= 2; got {tuple(same.shape)}")
    r = same if transitive else closure(same)
    size = r.sum(-1).to(torch.float64)
    return (G - size) / (G - 1)


def class_diversity(classes: torch.Tensor) -> torch.Tensor:
    """:func:`partition_diversity` of groups whose class labels are known, ``classes[..., G]``.

    Explained in :ref:`sec-darling-reward`.
    """
    return partition_diversity(classes.unsqueeze(-1) == classes.unsqueeze(-2), transitive=True)


def group_relation(relation: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """Pairwise judgements of every group: ``relation[y_i, y_j]`` -> ``[..., G, G]``.

    ``relation`` is ``[N, N]`` (one judge for all) or ``[S, N, N]`` (one judge per seed,
    ``samples[S, ..., G]`` holding seed s's groups in row s).
    Explained in :ref:`sec-darling-reward`.
    """
    a, b = samples.unsqueeze(-1), samples.unsqueeze(-2)
    if relation.dim() == 2:
        return relation[a, b]
    seed = torch.arange(samples.shape[0]).reshape(-1, *([1] * samples.dim()))
    return relation[seed, a, b]


# ------------------------------------------------------------------------ relations


def class_relation(domain: Domain) -> torch.Tensor:
    """The oracle: ``same[y, y'] = (semantic class of y == semantic class of y')``, ``[N, N]``.

    Explained in :ref:`sec-darling-partitions`.
    """
    c = torch.as_tensor(domain.semantic)
    return c[:, None] == c[None, :]


def _grams(text: str) -> set[tuple[str, ...]]:
    toks = text.split()
    return {(t,) for t in toks} | {tuple(toks[i : i + 2]) for i in range(len(toks) - 1)}


def gram_sets(outputs: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Presence matrix of every output's 1- and 2-grams ``[N, n_grams]`` and the word presence ``[N, n_words]``.

    Explained in :ref:`sec-darling-partitions`.
    """
    per = [_grams(o) for o in outputs]
    grams = sorted({g for gs in per for g in gs})
    index = {g: i for i, g in enumerate(grams)}
    presence = np.zeros((len(outputs), len(grams)), dtype=np.float32)
    for r, gs in enumerate(per):
        presence[r, [index[g] for g in gs]] = 1.0
    words = np.array([len(g) == 1 for g in grams])
    return presence, presence[:, words]


def jaccard(presence: np.ndarray) -> np.ndarray:
    """Jaccard overlap of the gram sets of every pair of outputs, ``[N, N]`` (1 on the diagonal).

    Explained in :ref:`sec-darling-partitions`.
    """
    inter = presence @ presence.T
    size = presence.sum(1)
    union = size[:, None] + size[None, :] - inter
    return inter / np.maximum(union, 1.0)


def output_views(domain: Domain) -> tuple[np.ndarray, np.ndarray]:
    """What the lexical proxy and the classifier see of every output: its word presence
    ``[N, n_words]`` and the Jaccard overlap of every pair's 1-/2-gram sets ``[N, N]``.

    Explained in :ref:`sec-darling-partitions`.
    """
    presence, words = gram_sets(domain.outputs)
    return words, jaccard(presence)


def lexical_relation(overlap: np.ndarray, threshold: float) -> torch.Tensor:
    """The lexical proxy: two outputs are "the same" when their 1- and 2-gram sets overlap
    with Jaccard index >= ``threshold`` (``overlap`` from :func:`output_views`), ``[N, N]``.

    Surface variation (another adjective, ``2 + x`` for ``x + 2``) makes two outputs
    "different" for this relation while their meaning stays the same: the reward it
    defines can be gamed.
    Explained in :ref:`sec-darling-partitions`.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"parameter 'lexical_threshold' must be in (0, 1]; got {threshold!r}")
    return torch.from_numpy(np.asarray(overlap) >= threshold)


# ---------------------------------------------------------------- learned classifier


def _pair_index(n_words: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n_words)


def pair_features(words: np.ndarray, overlap: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Features of the pairs (a[k], b[k]): for every unordered pair of words {w, w'}, whether
    one output holds w and the other w' (the symmetrised outer product of their word-presence
    vectors), and the pair's 1-/2-gram Jaccard overlap; ``[n_pairs, V(V+1)/2 + 1]``.

    The features see which words the two outputs hold, not where: ``sea sleeps under moon``
    and ``moon sleeps under sea`` have the same words and different meanings. A linear
    classifier on them is a bilinear form in the word vectors, so it scores every pair of
    the output space with one matrix product (:meth:`PairClassifier.relation`).
    Explained in :ref:`sec-darling-partitions`.
    """
    u, v = words[a], words[b]
    outer = u[:, :, None] * v[:, None, :]
    sym = outer + outer.transpose(0, 2, 1)
    i, j = _pair_index(words.shape[1])
    sym = np.where(i == j, 0.5, 1.0) * sym[:, i, j]
    return np.concatenate([sym, overlap[a, b][:, None]], axis=1)


def fit_logistic(X: np.ndarray, y: np.ndarray, *, ridge: float) -> tuple[np.ndarray, float]:
    """L2-penalised logistic regression, minimised with L-BFGS: (weights, bias); the bias is not penalised.

    Explained in :ref:`sec-darling-partitions`.
    """
    from scipy.optimize import minimize

    if not ridge > 0:
        raise ValueError(f"parameter 'ridge' must be > 0; got {ridge!r}")
    X1 = np.concatenate([X, np.ones((len(X), 1))], axis=1).astype(np.float64)
    t = y.astype(np.float64)
    pen = np.full(X1.shape[1], float(ridge))
    pen[-1] = 0.0

    def loss(w):
        z = X1 @ w
        p = 0.5 * (1.0 + np.tanh(0.5 * z))
        return np.logaddexp(0.0, z).sum() - t @ z + 0.5 * (pen * w * w).sum(), X1.T @ (p - t) + pen * w

    w = minimize(loss, np.zeros(X1.shape[1]), jac=True, method="L-BFGS-B", options={"maxiter": 1000}).x
    return w[:-1], float(w[-1])


@dataclass(frozen=True)
class PairClassifier:
    """A logistic-regression equivalence classifier on :func:`pair_features`, trained on pairs
    labelled by the oracle classes (DARLING trains its classifier on labelled pairs of responses).

    ``W`` is the symmetric word-pair weight matrix, ``w_overlap`` the Jaccard weight,
    ``bias`` the intercept. On held-out balanced pairs: ``accuracy`` and the two error
    rates, ``false_same`` (different meanings judged the same) and ``false_different``.
    Explained in :ref:`sec-darling-partitions`.
    """

    W: np.ndarray
    w_overlap: float
    bias: float
    accuracy: float
    false_same: float
    false_different: float
    n_train: int

    def score(self, words: np.ndarray, overlap: np.ndarray) -> np.ndarray:
        """The classifier's logit for every pair of outputs, ``[N, N]``."""
        return words @ self.W @ words.T + self.w_overlap * overlap + self.bias

    def relation(self, words: np.ndarray, overlap: np.ndarray) -> torch.Tensor:
        """Its judgement on every pair of outputs, ``[N, N]`` (an output is always equivalent to itself)."""
        same = self.score(words, overlap) > 0
        np.fill_diagonal(same, True)
        return torch.from_numpy(same)


def sample_pairs(
    domain: Domain, n_pairs: int, *, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Balanced labelled pairs: per prompt, ``n_pairs`` pairs of distinct outputs drawn from the
    domain's prior, half of them equivalent (same semantic class) and half not.

    Returns (a, b, same).
    Explained in :ref:`sec-darling-partitions`.
    """
    if n_pairs < 2:
        raise ValueError(f"parameter 'n_pairs' must be >= 2; got {n_pairs}")
    out_a, out_b, out_s = [], [], []
    half = n_pairs // 2
    for p in range(domain.n_prompts):
        got_same, got_diff = [], []
        draws = 8 * n_pairs
        while True:
            y = rng.choice(domain.n_outputs, size=(2, draws), p=domain.prior[p])
            y = y[:, y[0] != y[1]]
            same = domain.semantic[y[0]] == domain.semantic[y[1]]
            got_same.append(y[:, same])
            got_diff.append(y[:, ~same])
            if sum(g.shape[1] for g in got_same) >= half and sum(g.shape[1] for g in got_diff) >= half:
                break
        s, d = np.concatenate(got_same, 1)[:, :half], np.concatenate(got_diff, 1)[:, :half]
        out_a += [s[0], d[0]]
        out_b += [s[1], d[1]]
        out_s += [np.ones(half, bool), np.zeros(half, bool)]
    return np.concatenate(out_a), np.concatenate(out_b), np.concatenate(out_s)


def train_classifier(domain: Domain, n_pairs: int, *, seed: int, ridge: float,
                     views: tuple[np.ndarray, np.ndarray] | None = None) -> PairClassifier:  # fmt: skip
    """Fit :class:`PairClassifier` on ``n_pairs`` balanced labelled pairs per prompt
    (:func:`sample_pairs`); test it on as many fresh ones. ``views`` = (word presence,
    Jaccard overlap) of the output space, computed here when not given.

    Explained in :ref:`sec-darling-partitions`.
    """
    rng = np.random.default_rng(seed)
    words, overlap = output_views(domain) if views is None else views
    a, b, same = sample_pairs(domain, n_pairs, rng=rng)
    ta, tb, test = sample_pairs(domain, n_pairs, rng=rng)
    w, bias = fit_logistic(pair_features(words, overlap, a, b), same, ridge=ridge)
    V = words.shape[1]
    i, j = _pair_index(V)
    W = np.zeros((V, V))
    W[i, j] = w[:-1]
    W = W + W.T - np.diag(np.diag(W))  # u W v^T = the linear score of the symmetrised features
    clf = PairClassifier(W=W, w_overlap=float(w[-1]), bias=bias, accuracy=0.0, false_same=0.0,
                         false_different=0.0, n_train=len(a))  # fmt: skip
    pred = clf.score(words, overlap)[ta, tb] > 0
    return PairClassifier(
        W=W,
        w_overlap=float(w[-1]),
        bias=bias,
        accuracy=float((pred == test).mean()),
        false_same=float(pred[~test].mean()),
        false_different=float((~pred[test]).mean()),
        n_train=len(a),
    )
