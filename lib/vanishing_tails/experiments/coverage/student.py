"""The downstream student of chapter 9: a hierarchical logistic model trained on a sampler's data.

The student knows the taxonomy's shape and an item's leaf (a generated query comes with its
topic), not the rules. It scores a query ``u`` of leaf ``l`` by ``v_l . u`` with
``v_l = sum over the nodes n on l's path of W_n`` — one weight vector per node, root to leaf —
and is fit by L2-penalised logistic regression::

    min_W  (1/N) sum_i log(1 + exp(-y_i v_{l_i} . u_i))  +  l2 * sum_n |W_n|^2

so a leaf without data keeps ``W_l = 0`` and answers with what its ancestors learnt from
its relatives. Its accuracy on real queries ``u ~ N(0, I)`` of leaf ``l`` is exact:
``1 - angle(v_l, w_l) / pi`` (:func:`leaf_accuracy`). All replicates and samplers are stacked on
one batch axis and fit together (the objective is a sum of independent convex problems), in
numpy: no deep-learning framework is needed for a convex model this small.
Explained in :ref:`sec-coverage-downstream`.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, special

from .taxonomy import Tree

__all__ = ["fit_student", "leaf_vectors", "leaf_accuracy"]


def _leaf_to_nodes(tree: Tree, g: np.ndarray) -> np.ndarray:
    """Sum a per-leaf array ``[B, L, d]`` up every level: ``[B, n_nodes, d]`` (subtrees are contiguous)."""
    batch, n_leaves, dim = g.shape
    return np.concatenate([g.reshape(batch, int(n), n_leaves // int(n), dim).sum(2) for n in tree.level_sizes], axis=1)


def fit_student(
    tree: Tree, leaf: np.ndarray, u: np.ndarray, y: np.ndarray, *, l2: float, train_steps: int
) -> np.ndarray:
    """Fit the student's node weights ``W`` ``[B, n_nodes, d]`` to ``B`` datasets at once.

    ``leaf`` ``[B, N]``, ``u`` ``[B, N, d]``, ``y`` ``[B, N]`` in {-1, +1}. L-BFGS
    (:func:`scipy.optimize.minimize`) on the exact gradient — the per-item gradient
    ``-y sigma(-y v . u) u / N`` summed into its leaf, then up the tree to every ancestor — from
    ``W = 0`` for at most ``train_steps`` iterations: deterministic, no seed.
    Explained in :ref:`sec-coverage-downstream`.
    """
    if l2 <= 0:
        raise ValueError(f"l2 must be > 0 (the problem is separable without it); got {l2!r}")
    leaf = np.asarray(leaf)
    u = np.asarray(u, dtype=float)
    y = np.asarray(y, dtype=float)
    batch, n, dim = u.shape
    item = (np.arange(batch)[:, None] * tree.n_leaves + leaf).ravel()  # row of V for every item
    shape = (batch, tree.n_nodes, dim)

    def loss_grad(flat: np.ndarray) -> tuple[float, np.ndarray]:
        W = flat.reshape(shape)
        V = leaf_vectors(tree, W).reshape(batch * tree.n_leaves, dim)
        margin = y * np.einsum("bnd,bnd->bn", V[item].reshape(batch, n, dim), u)
        loss = np.logaddexp(0.0, -margin).mean(1).sum() + l2 * (W**2).sum()
        coef = (-y * special.expit(-margin) / n).ravel()  # d loss / d score, per item
        gu = coef[:, None] * u.reshape(-1, dim)
        gV = np.stack([np.bincount(item, weights=gu[:, j], minlength=batch * tree.n_leaves) for j in range(dim)], -1)
        grad = _leaf_to_nodes(tree, gV.reshape(batch, tree.n_leaves, dim)) + 2.0 * l2 * W
        return float(loss), grad.ravel()

    res = optimize.minimize(
        loss_grad,
        np.zeros(int(np.prod(shape))),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": train_steps, "gtol": 1e-10, "ftol": 1e-13},
    )
    return res.x.reshape(shape)


def leaf_vectors(tree: Tree, W: np.ndarray) -> np.ndarray:
    """Every leaf's score vector ``v_l = sum of W over its path``: ``[B, L, d]``.

    Explained in :ref:`sec-coverage-downstream`.
    """
    return np.asarray(W)[:, tree.nodes].sum(2)


def leaf_accuracy(v: np.ndarray, rules: np.ndarray) -> np.ndarray:
    """Exact accuracy on real queries ``u ~ N(0, I)``: ``1 - angle(v_l, w_l) / pi``, ``[B, L]``
    (1/2 for ``v_l = 0``).

    Explained in :ref:`sec-coverage-downstream`.
    """
    v = np.asarray(v, dtype=float)
    w = np.asarray(rules, dtype=float)
    nv = np.linalg.norm(v, axis=-1)
    cos = np.einsum("...d,...d->...", v, w) / np.maximum(nv * np.linalg.norm(w, axis=-1), 1e-300)
    acc = 1.0 - np.arccos(np.clip(cos, -1.0, 1.0)) / np.pi
    return np.where(nv > 0, acc, 0.5)
