"""The data generator of chapter 9 — a model that has lost its tails — and its teacher.

**Which leaf.** The real domain has a popularity over leaves, a Zipf law ``p_l ∝ rank^-a``
(``zipf_a = a``; 0 is uniform) over a random order of the leaves. The generator is what the
book's collapse engine (:func:`vanishing_tails.core.collapse.categorical_paths`) makes of it:
refit ``refit_generations`` times on ``refit_m`` of its own samples, drawing at
``gen_temperature`` (chapter 1). Leaves drawn by no generation are gone (``p_l = 0``); the
temperature moves mass from the rare leaves to the common ones.

**Which query.** Inside leaf ``l`` a real query is ``u ~ N(0, I)``. The generator's queries are
collapsed too: ``u = m_l + tau z`` around a prototype ``m_l ~ N(0, (1 - tau^2) I)``, with
``tau = local_spread < 1``. Pooled over leaves they have the real distribution, but inside one
leaf they spread only ``tau`` as far as real queries do.

**Which answer.** The teacher is the same model. It answers ``sign(v_l . u)`` with its own rule
``v_l``, and slips — flips its answer — with probability ``slip_rate``, independently of the
query. Its rule is the true one rotated by the angle ``pi e_b`` (towards a random direction),
where ``e_b`` is the teacher's own error rate on real queries in branch ``b``
(``teacher_error``): a reliable teacher (``e_b = 0``) knows the rule; a weak one answers the
easy queries — far from both boundaries — right, and the hard ones — between them — wrong.
A slip is random and a second look catches it; a wrong rule is a blind spot, and a second
look by the same model repeats it. The *complexity* of a query is
``c(u) = 2 Phi(-|w_l . u|)`` in ``[0, 1]`` (``w_l`` of unit length): 1 on the rule's boundary,
0 far from it, and ``E[c] = 1/2`` for a real query.
Explained in :ref:`sec-coverage-domain`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from vanishing_tails.core import collapse, tails

from .taxonomy import Tree, leaf_rules, make_tree

__all__ = [
    "World",
    "real_popularity",
    "collapsed_generator",
    "make_world",
    "complexity",
    "teacher_answers",
    "trajectory",
]


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def real_popularity(n_leaves: int, rows: int, zipf_a: float, *, seed: int) -> np.ndarray:
    """The real popularity of every leaf, ``[rows, L]``: ``rank^-zipf_a`` over a random order
    of the leaves per row, normalised (``zipf_a = 0``: uniform).

    Explained in :ref:`sec-coverage-domain`.
    """
    if zipf_a < 0:
        raise ValueError(f"zipf_a must be >= 0; got {zipf_a!r}")
    rng = np.random.default_rng(seed)
    weights = np.arange(1, n_leaves + 1, dtype=float) ** -zipf_a
    weights /= weights.sum()
    order = np.argsort(rng.random((rows, n_leaves)), axis=1)
    out = np.empty((rows, n_leaves))
    np.put_along_axis(out, order, np.broadcast_to(weights, (rows, n_leaves)), axis=1)
    return out


def collapsed_generator(
    p_real: np.ndarray, refit_m: int, refit_generations: int, gen_temperature: float, *, seed: int
) -> np.ndarray:
    """The generator's popularity after every refit generation, ``[G + 1, rows, L]``.

    Row ``r`` is one replicate: its real popularity ``p_real[r]`` refit by the counts of
    ``refit_m`` draws per generation at temperature ``gen_temperature``
    (:func:`vanishing_tails.core.collapse.categorical_paths`, regime ``replace``). The rows
    share one sorted law up to a relabelling of the leaves, so the chains run on the sorted
    law and are relabelled back. ``refit_generations = 0`` returns ``p_real`` itself.
    Explained in :ref:`sec-coverage-domain`.
    """
    p_real = np.asarray(p_real, dtype=float)
    rows, n_leaves = p_real.shape
    if refit_generations < 0:
        raise ValueError(f"refit_generations must be >= 0; got {refit_generations!r}")
    if refit_generations == 0:
        return p_real[None].copy()
    order = np.argsort(-p_real, axis=1, kind="stable")
    sorted_p = np.take_along_axis(p_real, order, axis=1)
    if not np.allclose(sorted_p, sorted_p[0]):
        raise ValueError("collapsed_generator: the rows of p_real must be relabellings of one law")
    path = np.empty((refit_generations + 1, rows, n_leaves))
    for t, p in collapse.categorical_paths(
        sorted_p[0], refit_m, refit_generations, rows, regime="replace", temperature=gen_temperature, seed=seed
    ):
        np.put_along_axis(path[t], order, p, axis=1)
    return path


@dataclass(frozen=True)
class World:
    """One taxonomy with its leaf tasks and its collapsed generator, for ``rows`` replicates.

    ``rules`` ``[rows, L, d]`` are unit vectors (the ground truth), ``teacher_rules`` the teacher's
    (rotated by its branch's error), ``prototypes`` ``[rows, L, d]`` the centres of the
    generator's queries, ``p_real`` and ``p_gen`` ``[rows, L]`` the real and the generator's
    popularity, ``path`` ``[G + 1, rows, L]`` the generator's whole collapse and ``slip_rate``
    the probability that the teacher flips an answer.
    Explained in :ref:`sec-coverage-domain`.
    """

    tree: Tree
    rules: np.ndarray
    teacher_rules: np.ndarray
    prototypes: np.ndarray
    local_spread: float
    p_real: np.ndarray
    path: np.ndarray
    slip_rate: float

    @property
    def rows(self) -> int:
        return int(self.rules.shape[0])

    @property
    def dim(self) -> int:
        return int(self.rules.shape[-1])

    @property
    def p_gen(self) -> np.ndarray:
        return self.path[-1]


def make_world(
    branching: Sequence[int],
    rows: int,
    *,
    dim: int,
    leaf_specific: float,
    local_spread: float,
    zipf_a: float,
    refit_m: int,
    refit_generations: int,
    gen_temperature: float,
    teacher_error: Sequence[float],
    slip_rate: float,
    seed: int,
) -> World:
    """Build the :class:`World`: tree, hierarchical rules, the teacher's rules, prototypes and
    the collapsed generator.

    ``teacher_error`` has one value in [0, 1/2] per top-level branch. Every random part has a
    stream of its own (derived from ``seed``), so changing the generator leaves the tasks
    unchanged.
    Explained in :ref:`sec-coverage-domain`.
    """
    tree = make_tree(branching)
    err = np.asarray(teacher_error, dtype=float)
    if err.shape != (tree.branching[0],) or np.any(err < 0) or np.any(err > 0.5):
        raise ValueError(
            f"teacher_error needs one value in [0, 0.5] per top-level branch ({tree.branching[0]}); got {list(err)}"
        )
    if not 0.0 <= slip_rate < 0.5:
        raise ValueError(f"slip_rate must lie in [0, 0.5); got {slip_rate!r}")
    if not 0.0 < local_spread <= 1.0:
        raise ValueError(f"local_spread must lie in (0, 1]; got {local_spread!r}")
    if dim < 2:
        raise ValueError(f"dim must be >= 2 (a teacher's rule is a rotation of the true one); got {dim!r}")
    seeds = np.random.SeedSequence(seed).generate_state(5)
    w = leaf_rules(tree, rows, dim, leaf_specific, seed=int(seeds[0]))
    w /= np.linalg.norm(w, axis=-1, keepdims=True)
    protos = np.sqrt(1.0 - local_spread**2) * _rng(int(seeds[1])).standard_normal((rows, tree.n_leaves, dim))
    p_real = real_popularity(tree.n_leaves, rows, zipf_a, seed=int(seeds[2]))
    path = collapsed_generator(p_real, refit_m, refit_generations, gen_temperature, seed=int(seeds[3]))
    # the teacher's rule: w rotated by pi * e_b towards a random direction orthogonal to w
    r = _rng(int(seeds[4])).standard_normal(w.shape)
    r -= np.einsum("rld,rld->rl", r, w)[..., None] * w
    r /= np.linalg.norm(r, axis=-1, keepdims=True)
    angle = np.pi * err[tree.branch][None, :, None]
    teacher = np.cos(angle) * w + np.sin(angle) * r
    return World(tree, w, teacher, protos, float(local_spread), p_real, path, float(slip_rate))


def complexity(margin: np.ndarray) -> np.ndarray:
    """``c = 2 Phi(-|margin|)`` of queries with margin ``w . u`` (``w`` of unit length), in [0, 1].

    Explained in :ref:`sec-coverage-domain`.
    """
    return 2.0 * special.ndtr(-np.abs(margin))


def teacher_answers(margin: np.ndarray, slip_rate: float, uniform: np.ndarray) -> np.ndarray:
    """The teacher's answers in {-1, +1}: ``sign(margin)`` (0 counts as +1), flipped where
    ``uniform < slip_rate``; ``margin`` is ``v . u`` under the teacher's own rule ``v`` and
    ``uniform`` holds independent U(0, 1) draws of the same shape.

    Explained in :ref:`sec-coverage-domain`.
    """
    answer = np.where(margin >= 0, 1, -1)
    return np.where(uniform < slip_rate, -answer, answer).astype(np.int8)


def trajectory(
    branching: Sequence[int],
    n_seeds: int,
    *,
    zipf_a: float,
    refit_m: int,
    refit_generations: int,
    gen_temperature: float,
    budget: int,
    q: float,
    seed: int,
) -> pd.DataFrame:
    """The book's common tail measures (:data:`vanishing_tails.core.tails.COLUMNS`) of the
    generator's popularity over leaves, per refit generation (``step``) and replicate.

    Two arms: ``generator`` (what naive sampling draws from) and ``taxonomy`` (the uniform
    law over all leaves that stratified sampling realises, whatever the generator). The
    reference and the start are the real popularity; ``support`` counts distinct leaves in
    ``budget`` draws relative to the real law; ``quality`` is the expected share of leaves a
    dataset of ``budget`` items covers (``1`` for the taxonomy once ``budget >= L``).
    ``mechanism`` is ``tilt`` when ``gen_temperature < 1``, else ``resampling``.
    Explained in :ref:`sec-coverage-domain`.
    """
    tree = make_tree(branching)
    n_leaves = tree.n_leaves
    seeds = np.random.SeedSequence(seed).generate_state(4)  # the streams of make_world: same seed, same generator
    p_real = real_popularity(n_leaves, n_seeds, zipf_a, seed=int(seeds[2]))
    path = collapsed_generator(p_real, refit_m, refit_generations, gen_temperature, seed=int(seeds[3]))
    uniform = np.full(n_leaves, 1.0 / n_leaves)
    mechanism = "tilt" if gen_temperature < 1 else "resampling"
    frames = []
    steps = np.arange(path.shape[0])
    for r in range(n_seeds):
        gen = path[:, r]
        with np.errstate(divide="ignore"):
            quality = -np.expm1(budget * np.log1p(-np.minimum(gen, 1.0))).sum(-1) / n_leaves
        for arm, p, qual in (
            ("generator", gen, quality),
            ("taxonomy", np.broadcast_to(uniform, gen.shape), np.full(len(steps), min(budget, n_leaves) / n_leaves)),
        ):
            m = tails.categorical_measures(p, p_real[r], p_real[r], q=q, n=budget, quality=qual)
            m.insert(0, "step", steps)
            m.insert(0, "replicate", r)
            m.insert(0, "arm", arm)
            frames.append(m)
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "experiment", "coverage")
    out["mechanism"] = mechanism
    return out
