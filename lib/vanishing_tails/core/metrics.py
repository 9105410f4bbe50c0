"""Every diversity and tail metric the book uses, in one place.

All distribution metrics accept a probability vector ``p`` of shape ``(K,)`` or a
batch of them of shape ``(..., K)`` (the last axis is the outcome axis) and return
one number per distribution. Unnormalised non-negative weights are normalised first.
Text metrics take a list of strings. Explained in the metrics primer of the
introduction (:ref:`intro`) and used by every chapter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy import special

__all__ = [
    "as_distribution",
    "entropy",
    "gini_simpson",
    "support_size",
    "tail_mass",
    "tail_set",
    "kl_divergence",
    "total_variation",
    "distinct_n",
    "ngram_entropy",
    "self_bleu",
    "vendi_score",
    "pass_at_k",
    "expected_distinct",
    "precision_recall",
]


def as_distribution(p: np.ndarray, *, name: str = "p") -> np.ndarray:
    """Validate non-negative weights along the last axis and normalise them to sum to 1.

    Explained in :ref:`sec-metrics-primer`.
    """
    p = np.asarray(p, dtype=float)
    if p.ndim == 0 or p.shape[-1] == 0:
        raise ValueError(f"{name} must have at least one outcome on its last axis, got shape {p.shape}")
    if np.any(~np.isfinite(p)) or np.any(p < 0):
        raise ValueError(f"{name} must hold finite non-negative weights")
    total = p.sum(axis=-1, keepdims=True)
    if np.any(total <= 0):
        raise ValueError(f"{name} must have positive total mass on every row")
    return p / total


def entropy(p: np.ndarray, *, base: float | None = None) -> np.ndarray:
    """Shannon entropy H(p) = -sum_i p_i log p_i (nats unless ``base`` is given).

    0 log 0 = 0. Bounded by log K, with equality only for the uniform distribution.
    Explained in :ref:`sec-metrics-primer`.
    """
    p = as_distribution(p)
    h = special.entr(p).sum(axis=-1)
    if base is not None:
        h = h / np.log(base)
    return h


def gini_simpson(p: np.ndarray) -> np.ndarray:
    """Gini–Simpson index 1 - sum_i p_i^2: the chance two independent draws differ.

    Under Wright–Fisher resampling of m draws per generation its expectation decays
    exactly as (1 - 1/m)^t (chapter 1).
    Explained in :ref:`sec-tails-words`.
    """
    p = as_distribution(p)
    return 1.0 - np.sum(p * p, axis=-1)


def support_size(p: np.ndarray, *, atol: float = 0.0) -> np.ndarray:
    """Number of outcomes with probability strictly above ``atol``.

    Explained in :ref:`sec-metrics-primer`.
    """
    p = as_distribution(p)
    return np.sum(p > atol, axis=-1)


def tail_set(reference: np.ndarray, q: float) -> np.ndarray:
    """Boolean mask of the outcomes that make up the least-probable ``q`` of ``reference``.

    Outcomes are sorted from least to most probable (ties broken by index, stably)
    and taken while the cumulative reference mass stays <= q. The outcome that would
    cross q (the "boundary atom") is excluded, so the tail's own mass is <= q and
    exceeds q - max_i reference_i.
    Explained in :ref:`sec-tails-mean-typical`.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must lie in (0, 1), got {q}")
    ref = as_distribution(reference, name="reference")
    if ref.ndim != 1:
        raise ValueError("reference must be one distribution (1-D)")
    order = np.argsort(ref, kind="stable")
    cum = np.cumsum(ref[order])
    mask = np.zeros(ref.shape, dtype=bool)
    mask[order[cum <= q + 1e-12]] = True
    return mask


def tail_mass(p: np.ndarray, reference: np.ndarray, q: float = 0.1) -> np.ndarray:
    """Mass that ``p`` puts on the least-probable ``q`` of ``reference``'s mass.

    tail_mass(p, ref, q) = sum_{i in T_q(ref)} p_i, with T_q from :func:`tail_set`.
    ``tail_mass(ref, ref, q)`` equals q up to the boundary atom. The quantity that
    model collapse erodes first (Shumailov et al. 2024, "AI models collapse when
    trained on recursively generated data").
    Explained in :ref:`sec-tails-mean-typical`.
    """
    mask = tail_set(reference, q)
    p = as_distribution(p)
    if p.shape[-1] != mask.shape[0]:
        raise ValueError(f"p has {p.shape[-1]} outcomes but reference has {mask.shape[0]}")
    return p[..., mask].sum(axis=-1)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) = sum_i p_i log(p_i / q_i) in nats; infinite where p puts mass outside q's support.

    Explained in :ref:`chapter-what-the-reward-pays-for`.
    """
    p = as_distribution(p)
    q = as_distribution(q, name="q")
    return special.rel_entr(p, q).sum(axis=-1)


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Total variation distance ``(1/2) sum_i |p_i - q_i|``, in [0, 1].

    Explained in :ref:`sec-metrics-primer`.
    """
    p = as_distribution(p)
    q = as_distribution(q, name="q")
    return 0.5 * np.abs(p - q).sum(axis=-1)


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def _tokens(text: str | Sequence[str]) -> list[str]:
    return text.split() if isinstance(text, str) else list(text)


def distinct_n(texts: Sequence[str | Sequence[str]], n: int = 2) -> float:
    """Distinct-n (Li et al. 2016): unique n-grams / total n-grams over the whole set.

    Texts are whitespace-tokenised strings or token sequences. Returns 0 when the
    set holds no n-gram at all.
    Explained in :ref:`chapter-what-the-reward-pays-for`.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = [g for t in texts for g in _ngrams(_tokens(t), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def ngram_entropy(texts: Sequence[str | Sequence[str]], n: int = 1) -> float:
    """Entropy (nats) of the empirical n-gram distribution pooled over the set.

    Explained in :ref:`chapter-what-the-reward-pays-for`.
    """
    counts = Counter(g for t in texts for g in _ngrams(_tokens(t), n))
    if not counts:
        return 0.0
    return float(entropy(np.fromiter(counts.values(), dtype=float)))


def self_bleu(texts: Sequence[str], *, max_samples: int | None = None, seed: int = 0) -> float:
    """Self-BLEU (Zhu et al. 2018, Texygen): mean sentence BLEU of each text against all others.

    Higher means less diverse. Computed with sacrebleu's sentence BLEU (exponential
    smoothing), on a value scale of 0-100. ``max_samples`` evaluates a random subset of
    hypotheses (each still scored against all other texts) to bound the cost.

    Without ``max_samples`` each *distinct* text is scored once: sentence BLEU against
    several references depends only on the set of distinct references (clipped counts
    take the max over references, the brevity penalty the closest length), so copies of
    a text share one score, and a text's references are all distinct texts — without
    itself only when it occurs once. Identical to scoring every text (a test checks it),
    and much faster on the repetitive samples of a collapsed model.
    Explained in :ref:`chapter-what-the-reward-pays-for`.
    """
    import sacrebleu

    texts = list(texts)
    if len(texts) < 2:
        raise ValueError("self_bleu needs at least two texts")
    if max_samples is not None and max_samples < len(texts):
        idx = np.random.default_rng(seed).choice(len(texts), size=max_samples, replace=False)
        scores = [sacrebleu.sentence_bleu(texts[i], texts[:i] + texts[i + 1 :]).score for i in idx]
        return float(np.mean(scores))
    return _self_bleu_distinct(texts)


def _self_bleu_distinct(texts: list[str]) -> float:
    """Self-BLEU scoring each distinct text once, with each text's n-grams extracted once.

    sacrebleu's sentence BLEU against references clips each n-gram's count by its largest
    count over the references; over "all distinct texts but this one" that is the largest
    count over all texts unless this text holds it alone, then the second largest. So one
    pass keeps the two largest counts per n-gram, and every score reuses sacrebleu's own
    tokeniser, n-gram extraction and ``compute_bleu`` (13a tokens, exponential smoothing,
    effective order): identical to calling ``sentence_bleu`` per text, 16-60x faster.
    """
    from collections import Counter

    from sacrebleu.metrics.bleu import BLEU
    from sacrebleu.metrics.helpers import extract_all_word_ngrams

    bleu = BLEU(effective_order=True)  # sentence_bleu's defaults
    order = bleu.max_ngram_order
    uniq, counts = np.unique(np.array(texts, dtype=object), return_counts=True)
    grams, lens = [], []
    for u in uniq:
        g, n = extract_all_word_ngrams(bleu._preprocess_segment(str(u)), 1, order)
        grams.append(g)
        lens.append(n)
    top: dict = {}  # n-gram -> (largest count, the text holding it, second largest count)
    for i, g in enumerate(grams):
        for ng, c in g.items():
            m1, i1, m2 = top.get(ng, (0, -1, 0))
            if c > m1:
                top[ng] = (c, i, m1)
            elif c > m2:
                top[ng] = (m1, i1, c)
    len_count = Counter(lens)
    total = 0.0
    for i, (g, c_i) in enumerate(zip(grams, counts)):
        self_ref = c_i > 1  # a repeated text is among its own references
        ref_lens = Counter(len_count)
        if not self_ref:
            ref_lens[lens[i]] -= 1
        ref_len = min((L for L, k in ref_lens.items() if k > 0), key=lambda L: (abs(lens[i] - L), L))
        correct, count = [0] * order, [0] * order
        for ng, hc in g.items():
            n = len(ng) - 1
            count[n] += hc
            m1, i1, m2 = top[ng]
            correct[n] += min(hc, m1 if (self_ref or i1 != i) else m2)
        score = BLEU.compute_bleu(correct, count, lens[i], ref_len, smooth_method="exp", effective_order=True,
                                  max_ngram_order=order).score  # fmt: skip
        total += c_i * score
    return float(total / len(texts))


def vendi_score(X: np.ndarray, *, kernel: str = "cosine", bandwidth: float | None = None) -> float:
    """Vendi score (Friedman & Dieng 2023): exp of the entropy of the eigenvalues of K/n.

    VS = exp(-sum_i lambda_i log lambda_i), lambda = eig(K / n), for a positive
    semi-definite similarity kernel with K_ii = 1. It is the "effective number of
    distinct samples": 1 when all samples are identical, n when they are mutually
    orthogonal. ``kernel`` is ``"cosine"`` (rows are normalised; zero rows count as
    identical to each other) or ``"rbf"`` (``exp(-|x-y|^2 / (2 bandwidth^2))``; the
    bandwidth defaults to the median pairwise distance).
    Explained in :ref:`chapter-model-families`.
    """
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[0] < 1:
        raise ValueError(f"X must be a 2-D array (samples x features), got shape {X.shape}")
    n = X.shape[0]
    if kernel == "cosine":
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        Z = np.where(norms > 0, X / np.where(norms > 0, norms, 1.0), 0.0)
        zero = norms[:, 0] == 0
        if zero.any():  # give zero vectors a private axis so they are similar only to each other
            Z = np.concatenate([Z, zero[:, None].astype(float)], axis=1)
        K = Z @ Z.T
    elif kernel == "rbf":
        sq = np.sum(X * X, axis=1)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * X @ X.T, 0.0)
        if bandwidth is None:
            off = np.sqrt(d2[np.triu_indices(n, 1)])
            bandwidth = float(np.median(off)) if off.size and np.median(off) > 0 else 1.0
        if bandwidth <= 0:
            raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
        K = np.exp(-d2 / (2 * bandwidth**2))
    else:
        raise ValueError(f"kernel must be 'cosine' or 'rbf', got {kernel!r}")
    lam = np.clip(np.linalg.eigvalsh(K / n), 0.0, None)
    lam = lam / lam.sum()
    return float(np.exp(special.entr(lam).sum()))


def pass_at_k(n: np.ndarray | int, c: np.ndarray | int, k: np.ndarray | int) -> np.ndarray:
    """Unbiased pass@k estimator of Chen et al. 2021 ("Evaluating Large Language Models
    Trained on Code"): 1 - C(n-c, k) / C(n, k) for n samples of which c are correct.

    Broadcasts over arrays; computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i) in log space,
    which is exact and stable. Requires 0 <= c <= n and 1 <= k <= n.
    Explained in :ref:`chapter-sharpening-spreads`.
    """
    n, c, k = np.broadcast_arrays(np.asarray(n), np.asarray(c), np.asarray(k))
    if np.any(k < 1) or np.any(k > n):
        raise ValueError("k must satisfy 1 <= k <= n (draw at least k samples)")
    if np.any(c < 0) or np.any(c > n):
        raise ValueError("c must satisfy 0 <= c <= n")
    n = n.astype(float)
    c = c.astype(float)
    k = k.astype(float)
    # log C(n-c, k) - log C(n, k); -inf when n - c < k (then pass@k = 1).
    with np.errstate(invalid="ignore"):
        log_ratio = (
            special.gammaln(n - c + 1)
            - special.gammaln(np.maximum(n - c - k, 0) + 1)
            - special.gammaln(n + 1)
            + special.gammaln(n - k + 1)
        )
    out = np.where(n - c < k, 1.0, np.clip(-np.expm1(log_ratio), 0.0, 1.0))
    out = np.where(c == 0, 0.0, out)
    return out if out.ndim else float(out)


def expected_distinct(p: np.ndarray, n: int) -> np.ndarray:
    """Expected number of distinct outcomes among n i.i.d. draws from p: sum_a 1 - (1 - p_a)^n.

    Explained in :ref:`chapter-sharpening-spreads`.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    p = as_distribution(p)
    with np.errstate(divide="ignore"):
        return np.sum(-np.expm1(n * np.log1p(-p)), axis=-1)


def _in_knn_balls(centres: np.ndarray, queries: np.ndarray, k: int, candidates: int = 8) -> np.ndarray:
    """``[B, m]``: whether each query of ``queries`` ``[B, m, d]`` lies in a ball around some centre
    of its batch (``centres`` ``[B, n, d]``) whose radius is that centre's distance to its k-th
    nearest other centre of the batch.

    One scikit-learn NearestNeighbors index for all batches (each batch is moved to its own
    far-away place along an extra coordinate, so no neighbour crosses batches). Exact in two
    stages: the ``candidates`` nearest centres of each query are checked first; a query none
    of them covers is then checked against every centre of its batch (few queries). Small
    batches (n·(n + m) ≤ 4·10⁶) take exact dense distances per batch instead (faster)."""
    from sklearn.neighbors import NearestNeighbors

    B, n, d = centres.shape
    m = queries.shape[1]
    if n * (n + m) <= 4_000_000:
        from scipy.spatial.distance import cdist

        out = np.empty((B, m), dtype=bool)
        for b in range(B):  # one batch (chain) at a time: [n, n] and [m, n] exact distances
            dc = cdist(centres[b], centres[b])
            np.fill_diagonal(dc, np.inf)  # the point itself excluded
            radius = np.partition(dc, k - 1, axis=1)[:, k - 1]
            out[b] = np.any(cdist(queries[b], centres[b]) <= radius * (1 + 1e-9), axis=1)
        return out
    span = float(np.sqrt(np.sum(np.ptp(np.concatenate([centres, queries], 1).reshape(-1, d), axis=0) ** 2))) + 1.0
    offset = 3 * span * np.arange(B, dtype=float)[:, None, None]
    flat = np.concatenate([centres, np.broadcast_to(offset, (B, n, 1))], -1).reshape(-1, d + 1)
    nn = NearestNeighbors(n_neighbors=k, algorithm="kd_tree" if d < 16 else "brute").fit(flat)
    radius = nn.kneighbors(n_neighbors=k)[0][:, k - 1].reshape(B, n)  # the point itself excluded
    q = np.concatenate([queries, np.broadcast_to(offset, (B, m, 1))], -1).reshape(-1, d + 1)
    dist, idx = nn.kneighbors(q, n_neighbors=min(candidates, n))
    inside = np.any(dist <= radius.reshape(-1)[idx] * (1 + 1e-9), axis=1).reshape(B, m)
    b, j = np.nonzero(~inside)
    if b.size:  # the rest against every centre of their batch: [U, n] distances
        sq = np.sum((queries[b, j][:, None, :] - centres[b]) ** 2, axis=-1)
        inside[b, j] = np.any(sq <= (radius[b] * (1 + 1e-9)) ** 2, axis=1)
    return inside


def precision_recall(real: np.ndarray, generated: np.ndarray, *, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Improved precision and recall of Kynkäänniemi et al. 2019 ("Improved Precision and Recall
    Metric for Assessing Generative Models"), by k-nearest-neighbour balls.

    Each set's manifold is the union of balls B(x, r_k(x)) around its points, r_k(x) the
    distance from x to its k-th nearest neighbour in the same set. precision = share of
    generated points inside the real manifold (the generated mass where the real data lie:
    1 − precision is the *error* tail); recall = share of real points inside the generated
    manifold (1 − recall is the real tail the model lost). ``real`` ``[..., n, d]`` and
    ``generated`` ``[..., m, d]`` may carry the same leading batch axes (one pair per batch
    index; returns arrays of that shape). Needs n, m > k.
    Explained in :ref:`sec-families-precision-recall`.
    """
    real = np.asarray(real, dtype=float)
    generated = np.asarray(generated, dtype=float)
    if real.ndim < 2 or generated.ndim != real.ndim or real.shape[:-2] != generated.shape[:-2]:
        raise ValueError(f"real [..., n, d] and generated [..., m, d] must agree; got {real.shape}, {generated.shape}")
    if real.shape[-1] != generated.shape[-1]:
        raise ValueError(f"real and generated need the same dimension d; got {real.shape[-1]}, {generated.shape[-1]}")
    if not isinstance(k, (int, np.integer)) or k < 1 or k >= min(real.shape[-2], generated.shape[-2]):
        raise ValueError(f"k must be an integer in [1, min(n, m) - 1]; got {k!r}")
    batch = real.shape[:-2]
    r = real.reshape(-1, *real.shape[-2:])
    g = generated.reshape(-1, *generated.shape[-2:])
    prec = _in_knn_balls(r, g, k).mean(-1)
    rec = _in_knn_balls(g, r, k).mean(-1)
    return prec.reshape(batch), rec.reshape(batch)
