"""The domain of chapter 9: a taxonomy tree whose leaves are the units of coverage, and a task
per leaf.

A tree with ``branching = [b_1, ..., b_D]`` has ``L = b_1 ... b_D`` leaves. A leaf is a path of
digits ``(a_1, ..., a_D)`` with ``a_i < b_i``; leaves are numbered in mixed radix with ``a_1``
most significant, so the leaves of one subtree are contiguous and the top-level digit ``a_1``
names the leaf's *branch* (its domain). Nodes are numbered level by level: the root is node 0,
then the ``b_1`` nodes of level 1, and so on down to the leaves.

Each leaf ``l`` carries a ground-truth task: a query ``u`` in ``R^d`` has the answer
``sign(w_l . u)``. The rules are hierarchical: ``w_l`` is a sum of one Gaussian vector per
node on the leaf's path, the leaf's own vector carrying the share ``leaf_specific`` of the
variance and the ``D`` ancestors sharing the rest equally, so siblings have similar rules and a
leaf never seen can still be guessed, imperfectly, from its relatives.
Explained in :ref:`sec-coverage-domain`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Tree", "make_tree", "tree_walk", "leaf_rules"]


@dataclass(frozen=True)
class Tree:
    """A complete taxonomy tree (see the module docstring for the numbering).

    ``paths`` ``[L, D]`` holds each leaf's digits, ``nodes`` ``[L, D + 1]`` the global ids of
    the nodes on its path (root first, the leaf's own node last), ``offsets[i]`` the id of the
    first node of level ``i`` and ``level_sizes[i]`` the number of nodes on level ``i``.
    Explained in :ref:`sec-coverage-domain`.
    """

    branching: tuple[int, ...]
    paths: np.ndarray
    nodes: np.ndarray
    offsets: np.ndarray
    level_sizes: np.ndarray

    @property
    def depth(self) -> int:
        return len(self.branching)

    @property
    def n_leaves(self) -> int:
        return int(self.paths.shape[0])

    @property
    def n_nodes(self) -> int:
        return int(self.level_sizes.sum())

    @property
    def branch(self) -> np.ndarray:
        """The top-level branch (domain) of every leaf, ``[L]``."""
        return self.paths[:, 0]

    def level_index(self, level: int) -> np.ndarray:
        """Each leaf's ancestor on ``level`` (0 = root), as an index within that level, ``[L]``."""
        return self.nodes[:, level] - self.offsets[level]


def make_tree(branching: Sequence[int]) -> Tree:
    """The complete tree with ``branching[i]`` children per node on level ``i``.

    Explained in :ref:`sec-coverage-domain`.
    """
    branching = tuple(int(b) for b in branching)
    if not branching or any(b < 1 for b in branching):
        raise ValueError(f"branching must be a non-empty list of integers >= 1; got {list(branching)!r}")
    level_sizes = np.cumprod((1, *branching))
    offsets = np.concatenate([[0], np.cumsum(level_sizes)[:-1]])
    n_leaves = int(level_sizes[-1])
    leaf = np.arange(n_leaves)
    depth = len(branching)
    paths = np.empty((n_leaves, depth), dtype=np.int64)
    rest = leaf.copy()
    for i in range(depth - 1, -1, -1):
        paths[:, i] = rest % branching[i]
        rest //= branching[i]
    # ancestor on level i: the leaf index divided by the number of leaves below a level-i node
    below = n_leaves // level_sizes
    nodes = offsets[None, :] + leaf[:, None] // below[None, :]
    return Tree(branching, paths, nodes.astype(np.int64), offsets.astype(np.int64), level_sizes.astype(np.int64))


def tree_walk(tree: Tree, rows: int, *, seed: int) -> np.ndarray:
    """Round-robin walks of the tree, one leaf at a time: ``[rows, L]`` orders of the leaves.

    Each row relabels the children of every node at random and then visits the leaves in
    the order of their *reversed* relabelled digits (``a_1`` varies fastest): the first
    ``b_1`` leaves lie in ``b_1`` different branches, and every prefix of the walk spreads
    over the subtrees at every level as evenly as the tree allows. Taking the first ``N``
    leaves of the walk, cyclically, gives every leaf ``floor(N / L)`` or ``ceil(N / L)`` items.
    Explained in :ref:`sec-coverage-samplers`.
    """
    rng = np.random.default_rng(seed)
    key = np.zeros((rows, tree.n_leaves), dtype=np.int64)
    scale = 1
    for i, b in enumerate(tree.branching):
        parent = tree.level_index(i)  # the leaf's ancestor on level i (its level-(i+1) node's parent)
        perms = rng.permuted(np.broadcast_to(np.arange(b), (rows, int(tree.level_sizes[i]), b)), axis=-1)
        relabelled = perms[:, parent, tree.paths[:, i]]  # [rows, L]
        key += relabelled * scale
        scale *= b
    return np.argsort(key, axis=1, kind="stable")


def leaf_rules(tree: Tree, rows: int, dim: int, leaf_specific: float, *, seed: int) -> np.ndarray:
    """Hierarchical ground-truth rules ``w`` ``[rows, L, dim]``, one per leaf and replicate.

    ``w_l = sqrt((1 - s)/D) * sum_{ancestors n} z_n + sqrt(s) * z_l`` with independent
    ``z ~ N(0, I_dim)`` per node and ``s = leaf_specific``: the cosine between a leaf's rule and
    the shared part of it is about ``sqrt(1 - s)``.
    Explained in :ref:`sec-coverage-domain`.
    """
    if not 0.0 <= leaf_specific <= 1.0:
        raise ValueError(f"leaf_specific must lie in [0, 1]; got {leaf_specific!r}")
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((rows, tree.n_nodes, dim))
    depth = tree.depth
    w = np.sqrt(leaf_specific) * z[:, tree.nodes[:, depth]]
    shared = np.sqrt((1.0 - leaf_specific) / depth)
    for level in range(depth):
        w += shared * z[:, tree.nodes[:, level]]
    return w
