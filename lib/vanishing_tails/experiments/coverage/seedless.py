"""A taxonomy without seed data: the generator proposes the sub-topics of every node itself.

Simula builds its taxonomies by asking a model for the sub-topics of each node, several times
(best-of-N proposals), breadth first (Davidson et al. 2026). The toy's version: to expand a
node, the generator is asked ``proposals`` times for one of its sub-topics and answers with a
child drawn from its own popularity restricted to that node,
``q(child | node) = p(child's leaves) / p(node's leaves)``; every child proposed at least once
enters the taxonomy and is expanded in turn, down to the leaves. A model that lost a leaf
entirely (``p_l = 0``) can never propose it; a leaf it made rare is reached with probability::

    P(l recovered) = prod over the path  1 - (1 - q(a_i | a_1..a_{i-1}))^proposals

The product holds because the proposals at every node are independent (:func:`expected_recovery`).
Explained in :ref:`sec-coverage-seedless`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .taxonomy import Tree

__all__ = ["Recovery", "node_mass", "recover_taxonomy", "expected_levels", "expected_recovery", "expected_calls"]


@dataclass(frozen=True)
class Recovery:
    """A taxonomy recovered from the generator, per replicate: ``levels[i]`` ``[rows, n_i]`` marks
    the recovered nodes of level ``i`` (``levels[-1]``: the leaves), ``calls`` ``[rows]`` counts
    the generator's proposals.

    Explained in :ref:`sec-coverage-seedless`.
    """

    levels: list[np.ndarray]
    calls: np.ndarray

    @property
    def leaves(self) -> np.ndarray:
        return self.levels[-1]


def node_mass(tree: Tree, p: np.ndarray, level: int) -> np.ndarray:
    """The popularity ``p`` ``[rows, L]`` summed over the leaves below each node of ``level``:
    ``[rows, n_level]`` (the leaves of a subtree are contiguous).

    Explained in :ref:`sec-coverage-seedless`.
    """
    p = np.asarray(p, dtype=float)
    n = int(tree.level_sizes[level])
    return p.reshape(p.shape[0], n, tree.n_leaves // n).sum(-1)


def _conditionals(tree: Tree, p: np.ndarray, level: int) -> np.ndarray:
    """q(child | node) for the nodes of ``level``: ``[rows, n_level, b_{level+1}]`` (0 below a massless node)."""
    child = node_mass(tree, p, level + 1).reshape(p.shape[0], int(tree.level_sizes[level]), tree.branching[level])
    parent = child.sum(-1, keepdims=True)
    return np.divide(child, parent, out=np.zeros_like(child), where=parent > 0)


def recover_taxonomy(tree: Tree, p: np.ndarray, proposals: int, *, seed: int) -> Recovery:
    """Build the taxonomy breadth first from the generator's own proposals (module docstring).

    Vectorised over replicates and over the nodes of a level (one multinomial per level).
    Explained in :ref:`sec-coverage-seedless`.
    """
    if proposals < 1:
        raise ValueError(f"proposals must be >= 1; got {proposals!r}")
    p = np.asarray(p, dtype=float)
    rows = p.shape[0]
    rng = np.random.default_rng(seed)
    levels = [np.ones((rows, 1), dtype=bool)]
    calls = np.zeros(rows, dtype=np.int64)
    for level in range(tree.depth):
        q = _conditionals(tree, p, level)
        massless = q.sum(-1, keepdims=True) == 0
        q = np.where(massless, 1.0 / q.shape[-1], q)  # never used: a massless node is never recovered
        counts = rng.multinomial(proposals, q)
        found = (counts > 0) & levels[-1][..., None] & ~massless
        calls += proposals * levels[-1].sum(1)
        levels.append(found.reshape(rows, -1))
    return Recovery(levels, calls)


def expected_levels(tree: Tree, p: np.ndarray, proposals: int) -> list[np.ndarray]:
    """``P(node recovered)`` for every node, level by level: ``[rows, n_i]`` for ``i = 0..D``
    (the root is always there; the last level is the leaves, in leaf order).

    Explained in :ref:`sec-coverage-seedless`.
    """
    p = np.asarray(p, dtype=float)
    levels = [np.ones((p.shape[0], 1))]
    for level in range(tree.depth):
        q = _conditionals(tree, p, level)  # [rows, n_level, b]
        with np.errstate(divide="ignore"):
            hit = -np.expm1(proposals * np.log1p(-np.minimum(q, 1.0)))
        levels.append((levels[-1][..., None] * hit).reshape(p.shape[0], -1))
    return levels


def expected_recovery(tree: Tree, p: np.ndarray, proposals: int) -> np.ndarray:
    """``P(l recovered)`` for every leaf, ``[rows, L]`` (module docstring); its mean over leaves
    is the expected share of the true leaves the recovered taxonomy holds.

    Explained in :ref:`sec-coverage-seedless`.
    """
    return expected_levels(tree, p, proposals)[-1]


def expected_calls(tree: Tree, p: np.ndarray, proposals: int) -> np.ndarray:
    """Expected generator calls of :func:`recover_taxonomy`: ``proposals`` times the expected
    number of internal nodes recovered, ``[rows]``.

    Explained in :ref:`sec-coverage-seedless`.
    """
    return proposals * sum(level.sum(1) for level in expected_levels(tree, p, proposals)[:-1])
