"""Chapter 9's engines: the tree, the samplers' exact budgets, the coverage and recovery oracles
against brute force, the student's gradient, the common tail measures and the spec's rules.

Seeds here are fresh (never used while the chapter was written).
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools

import numpy as np
import pytest
from scipy import optimize

from vanishing_tails.core import tails
from vanishing_tails.experiments.coverage import generator, samplers, seedless, student, taxonomy
from vanishing_tails.experiments.coverage.spec import SPEC

FRESH = 52_817
ENGINES = (taxonomy, generator, samplers, seedless, student)


def _world(rows=3, branching=(2, 3, 2), **over):
    kw = dict(
        dim=3,
        leaf_specific=0.5,
        local_spread=0.3,
        zipf_a=1.0,
        refit_m=200,
        refit_generations=3,
        gen_temperature=0.9,
        teacher_error=[0.0, 0.2],
        slip_rate=0.1,
    )
    kw.update(over)
    return generator.make_world(list(branching), rows, **kw, seed=FRESH)


# ----------------------------------------------------------------------------- the tree
def test_tree_numbering_paths_and_nodes():
    tree = taxonomy.make_tree([2, 3, 2])
    assert tree.n_leaves == 12 and tree.depth == 3 and tree.n_nodes == 1 + 2 + 6 + 12
    assert tree.paths[7].tolist() == [1, 0, 1]  # 7 = 1*6 + 0*2 + 1
    assert tree.nodes[7].tolist() == [0, 1 + 1, 3 + 3, 9 + 7]
    assert (tree.branch == np.repeat([0, 1], 6)).all()
    for level in range(tree.depth + 1):  # a subtree's leaves are contiguous
        assert (np.diff(tree.level_index(level)) >= 0).all()


def test_tree_walk_is_a_round_robin_over_branches_at_every_level():
    tree = taxonomy.make_tree([3, 2, 2])
    order = taxonomy.tree_walk(tree, 5, seed=FRESH)
    assert (np.sort(order, axis=1) == np.arange(tree.n_leaves)).all()  # a permutation per row
    for row in order:
        assert sorted(tree.branch[row[:3]]) == [0, 1, 2]  # the first b_1 leaves: one per branch
        level2 = tree.level_index(2)[row[:6]]
        assert np.unique(level2).size == 6  # the first b_1 b_2 leaves: one per level-2 node


def test_leaf_rules_share_their_ancestors():
    tree = taxonomy.make_tree([4, 4])
    w = taxonomy.leaf_rules(tree, 200, 4, 0.2, seed=FRESH)
    unit = w / np.linalg.norm(w, axis=-1, keepdims=True)
    cos = np.einsum("rld,rld->rl", unit[:, :-1], unit[:, 1:])
    siblings = tree.level_index(1)[:-1] == tree.level_index(1)[1:]
    assert cos[:, siblings].mean() > cos[:, ~siblings].mean() + 0.2
    with pytest.raises(ValueError, match="leaf_specific"):
        taxonomy.leaf_rules(tree, 1, 2, 1.5, seed=0)


# ----------------------------------------------------------------------------- the generator
def test_collapsed_generator_without_refits_is_the_real_popularity_and_refits_lose_leaves():
    p_real = generator.real_popularity(50, 4, 1.0, seed=FRESH)
    assert np.allclose(p_real.sum(1), 1) and np.allclose(np.sort(p_real, 1), np.sort(p_real[0]))
    assert np.allclose(generator.collapsed_generator(p_real, 100, 0, 0.9, seed=0)[0], p_real)
    path = generator.collapsed_generator(p_real, 100, 5, 0.9, seed=FRESH)
    assert path.shape == (6, 4, 50)
    lost = path == 0
    assert (lost[1:] >= lost[:-1]).all()  # a leaf with p = 0 never comes back
    assert lost[-1].any()
    assert np.allclose(generator.real_popularity(7, 2, 0.0, seed=0), 1 / 7)


def test_teacher_errs_on_its_share_of_real_queries_and_slips_at_its_rate():
    world = _world(rows=2, branching=(2, 50), teacher_error=[0.0, 0.25], slip_rate=0.0)
    rng = np.random.default_rng(FRESH)
    u = rng.standard_normal((2, world.tree.n_leaves, 4000, 3))
    true = np.einsum("rlnd,rld->rln", u, world.rules)
    seen = np.einsum("rlnd,rld->rln", u, world.teacher_rules)
    wrong = generator.teacher_answers(seen, 0.0, np.ones_like(seen)) != np.where(true >= 0, 1, -1)
    err = [wrong[:, world.tree.branch == b].mean() for b in (0, 1)]
    assert err[0] == 0.0 and err[1] == pytest.approx(0.25, abs=0.01)
    flips = generator.teacher_answers(np.ones(100_000), 0.1, rng.random(100_000))
    assert (flips == -1).mean() == pytest.approx(0.1, abs=0.005)


def test_complexity_is_one_half_for_real_queries():
    z = np.random.default_rng(FRESH).standard_normal(200_000)
    assert generator.complexity(z).mean() == pytest.approx(0.5, abs=0.005)
    assert generator.complexity(np.array([0.0]))[0] == 1.0


def test_make_world_refuses_bad_teacher_lists():
    with pytest.raises(ValueError, match="teacher_error"):
        _world(teacher_error=[0.0, 0.1, 0.2])
    with pytest.raises(ValueError, match="slip_rate"):
        _world(slip_rate=0.6)


# ----------------------------------------------------------------------------- samplers
ARMS = [
    samplers.Arm("x", g, k, c, r)
    for g, k, c, r in itertools.product(samplers.GLOBAL_SAMPLERS, (1, 3), (0.0, 0.5), (0, 2))
]


@pytest.mark.parametrize(
    "arm", ARMS, ids=lambda a: f"{a.global_sampler}-k{a.candidates}-c{a.complexify}-r{a.critic_rounds}"
)
def test_every_sampler_fills_exactly_its_budget(arm):
    world = _world()
    for budget in (1, 7, 50):
        d = samplers.sample_dataset(world, arm, budget, hardening=0.1, seed=FRESH)
        for a in (d.leaf, d.y, d.correct, d.margin, d.hardened):
            assert a.shape == (world.rows, budget)
        assert d.u.shape == (world.rows, budget, world.dim)
        assert np.isin(d.y, (-1, 1)).all()
        assert (d.calls >= budget * arm.candidates).all()


def test_walk_gives_every_leaf_floor_or_ceil_of_its_share():
    world = _world()
    arm = samplers.Arm("t", "taxonomy", 1, 0.0, 2)  # the critic regenerates in the same leaf
    for budget in (5, 12, 29):
        d = samplers.sample_dataset(world, arm, budget, hardening=0.1, seed=FRESH)
        counts = np.stack([np.bincount(r, minlength=world.tree.n_leaves) for r in d.leaf])
        assert counts.min() == budget // 12 and counts.max() == -(-budget // 12)
        assert (samplers.properties(world, d)["coverage"] == min(budget, 12) / 12).all()


def test_walk_restricted_to_known_leaves_stays_inside_them():
    world = _world()
    allowed = np.zeros((world.rows, world.tree.n_leaves), dtype=bool)
    allowed[:, [1, 5, 6]] = True
    d = samplers.sample_dataset(world, samplers.Arm("t", "taxonomy", 2, 0.0, 0), 30, hardening=0.1, seed=FRESH,
                                allowed=allowed)  # fmt: skip
    assert set(np.unique(d.leaf)) == {1, 5, 6}


def test_naive_sampling_never_draws_a_lost_leaf():
    p = np.array([[0.0, 0.5, 0.0, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0]])
    leaves = samplers.draw_leaves(p, 10_000, np.random.default_rng(FRESH))
    assert set(np.unique(leaves[0])) == {1, 3} and set(np.unique(leaves[1])) == {0}


def test_knobs_change_only_what_they_touch():
    """Paired streams: candidate 0, the leaves and the answers' randomness are shared, so
    turning a knob off gives back the plain sampler exactly."""
    world = _world()
    plain = samplers.sample_dataset(world, samplers.Arm("p", "naive", 1, 0.0, 0), 40, hardening=0.1, seed=FRESH)
    same = samplers.sample_dataset(world, samplers.Arm("q", "naive", 1, 0.0, 0), 40, hardening=0.1, seed=FRESH)
    assert np.array_equal(plain.u, same.u) and np.array_equal(plain.y, same.y)
    hard = samplers.sample_dataset(world, samplers.Arm("h", "naive", 1, 1.0, 0), 40, hardening=0.1, seed=FRESH)
    assert np.array_equal(hard.leaf, plain.leaf) and hard.hardened.all()
    assert np.abs(hard.margin).max() < np.abs(plain.margin).max()
    assert generator.complexity(hard.margin).mean() > generator.complexity(plain.margin).mean()


def test_local_diversity_spreads_the_queries_of_a_leaf():
    world = _world(rows=4, branching=(2, 2))
    props = [
        samplers.properties(
            world,
            samplers.sample_dataset(world, samplers.Arm("a", "taxonomy", k, 0.0, 0), 80, hardening=0.1, seed=FRESH),
        )  # fmt: skip
        for k in (1, 6)
    ]
    assert (props[1]["diversity"] > props[0]["diversity"] + 0.05).all()
    assert props[0]["diversity"].mean() == pytest.approx(world.local_spread, rel=0.25)  # relative to real queries


def test_critic_catches_slips_not_blind_spots():
    world = _world(rows=4, teacher_error=[0.0, 0.0], slip_rate=0.2)
    q = [
        samplers.properties(
            world,
            samplers.sample_dataset(world, samplers.Arm("a", "taxonomy", 1, 0.0, r), 400, hardening=0.1, seed=FRESH),
        )["quality"].mean()  # fmt: skip
        for r in (0, 3)
    ]
    # each check passes a wrong answer w.p. e^2 and rejects w.p. rho = 2e(1 - e); after R rounds the
    # last regenerated items go unchecked: error = e^2 (1 + rho + ... + rho^(R-1)) + e rho^R
    e, rho = 0.2, 2 * 0.2 * 0.8
    assert q[0] == pytest.approx(1 - e, abs=0.03)
    assert q[1] == pytest.approx(1 - e**2 * sum(rho**r for r in range(3)) - e * rho**3, abs=0.02)
    blind = _world(rows=4, teacher_error=[0.3, 0.3], slip_rate=0.0)  # no slips: nothing to catch
    d0, d3 = (
        samplers.sample_dataset(blind, samplers.Arm("a", "taxonomy", 1, 1.0, r), 200, hardening=0.1, seed=FRESH)
        for r in (0, 3)
    )
    assert np.array_equal(d0.y, d3.y) and d0.correct.mean() < 0.8


# ----------------------------------------------------------------------------- coverage oracle
def test_expected_coverage_against_brute_force_enumeration():
    p = np.array([0.5, 0.3, 0.15, 0.05, 0.0])
    for n in (1, 2, 3, 4):
        brute = 0.0
        for seq in itertools.product(range(p.size), repeat=n):
            brute += np.prod(p[list(seq)]) * len(set(seq))
        assert samplers.expected_coverage(p, [n])[0] == pytest.approx(brute, abs=1e-12)


def test_expected_coverage_for_all_n_equals_a_loop_and_the_simulation():
    rng = np.random.default_rng(FRESH)
    p = rng.dirichlet(np.full(30, 0.3), size=3)
    n = np.array([1, 5, 20, 100, 400])
    loop = np.stack([[np.sum(1 - (1 - row) ** k) for k in n] for row in p])
    assert np.allclose(samplers.expected_coverage(p, n), loop)
    stream = samplers.draw_leaves(np.repeat(p, 2000, axis=0), int(n[-1]), rng)
    sim = samplers.coverage_curve(stream, 30, n).reshape(3, 2000, -1)
    se = sim.std(1) / np.sqrt(2000) + 1e-12
    assert np.all(np.abs(sim.mean(1) - loop) / se < 4.5)


def test_coverage_curve_counts_distinct_prefixes():
    leaves = np.array([[2, 2, 0, 2, 1, 0], [3, 3, 3, 3, 3, 3]])
    n = np.arange(7)
    expected = np.array([[len(set(row[:k])) for k in n] for row in leaves])
    assert np.array_equal(samplers.coverage_curve(leaves, 4, n), expected)
    with pytest.raises(ValueError, match="n_values"):
        samplers.coverage_curve(leaves, 4, [7])


def test_walk_covers_min_n_l_exactly():
    world = _world(rows=2)
    for n in (3, 12, 40):
        d = samplers.sample_dataset(world, samplers.Arm("t", "taxonomy", 1, 0.0, 0), n, hardening=0.1, seed=FRESH)
        assert (samplers.properties(world, d)["coverage"] * 12 == min(n, 12)).all()


# ----------------------------------------------------------------------------- seedless taxonomy
def test_recovery_probability_against_brute_force():
    """Two levels of two children: enumerate every proposal outcome at the root and at both nodes."""
    tree = taxonomy.make_tree([2, 2])
    p = np.array([[0.5, 0.2, 0.25, 0.05]])
    k = 2
    q_root = np.array([0.7, 0.3])
    q_child = np.array([[0.5 / 0.7, 0.2 / 0.7], [0.25 / 0.3, 0.05 / 0.3]])
    brute = np.zeros(4)
    for root in itertools.product(range(2), repeat=k):
        pr = np.prod(q_root[list(root)])
        for a in itertools.product(range(2), repeat=k):
            for b in itertools.product(range(2), repeat=k):
                pa, pb = np.prod(q_child[0, list(a)]), np.prod(q_child[1, list(b)])
                found = [0 in root and 0 in a, 0 in root and 1 in a, 1 in root and 0 in b, 1 in root and 1 in b]
                brute += pr * pa * pb * np.array(found, dtype=float)
    assert np.allclose(seedless.expected_recovery(tree, p, k)[0], brute)
    calls = k * (1 + (1 - (1 - q_root) ** k).sum())
    assert seedless.expected_calls(tree, p, k)[0] == pytest.approx(calls)


def test_recovery_simulation_matches_its_oracle_and_never_finds_a_lost_leaf():
    tree = taxonomy.make_tree([3, 4])
    rng = np.random.default_rng(FRESH)
    p = rng.dirichlet(np.full(12, 0.5))
    p[[2, 7]] = 0.0
    p /= p.sum()
    rows = np.tile(p, (4000, 1))
    rec = seedless.recover_taxonomy(tree, rows, 3, seed=FRESH)
    assert not rec.leaves[:, [2, 7]].any()
    expected = seedless.expected_recovery(tree, p[None], 3)[0]
    se = np.sqrt(expected * (1 - expected) / 4000) + 1e-12
    assert np.all(np.abs(rec.leaves.mean(0) - expected) / se < 4.5)
    assert rec.calls.mean() == pytest.approx(seedless.expected_calls(tree, p[None], 3)[0], rel=0.02)
    for child, parent in zip(rec.levels[2:], rec.levels[1:-1]):  # a node is found only under a found parent
        assert not (child.reshape(parent.shape[0], parent.shape[1], -1) & ~parent[..., None]).any()


# ----------------------------------------------------------------------------- the student
def test_student_gradient_is_exact():
    world = _world(rows=2)
    d = samplers.sample_dataset(world, samplers.Arm("n", "naive", 1, 0.0, 0), 30, hardening=0.1, seed=FRESH)
    W = student.fit_student(world.tree, d.leaf, d.u, d.y, l2=1e-2, train_steps=200)

    # at the optimum of a strictly convex problem the gradient vanishes: perturbing W raises the loss
    def loss(flat):
        V = student.leaf_vectors(world.tree, flat.reshape(W.shape))
        v = np.take_along_axis(V, d.leaf[..., None], 1)
        m = d.y * np.einsum("bnd,bnd->bn", v, d.u)
        return np.logaddexp(0, -m).mean(1).sum() + 1e-2 * (flat**2).sum()

    grad = optimize.approx_fprime(W.ravel(), loss, 1e-6)
    assert np.abs(grad).max() < 1e-4


def test_student_recovers_rules_from_clean_data_and_an_unseen_leaf_borrows_from_its_sibling():
    world = _world(rows=2, branching=(2, 2), leaf_specific=0.1)
    rng = np.random.default_rng(FRESH)
    leaf = np.tile(np.repeat([0, 1, 2], 200), (2, 1))  # leaf 3 is never seen
    u = rng.standard_normal((2, leaf.shape[1], world.dim))
    y = np.where(np.einsum("rnd,rnd->rn", u, np.take_along_axis(world.rules, leaf[..., None], 1)) >= 0, 1, -1)
    W = student.fit_student(world.tree, leaf, u, y, l2=1e-4, train_steps=300)
    assert np.allclose(W[:, world.tree.nodes[3, -1]], 0, atol=1e-8)  # no data, no own weights
    acc = student.leaf_accuracy(student.leaf_vectors(world.tree, W), world.rules)
    assert acc[:, :3].min() > 0.95
    assert 0.6 < acc[:, 3].min() < acc[:, :3].min()
    assert student.leaf_accuracy(np.zeros((1, 2, 3)), np.ones((1, 2, 3)))[0, 0] == 0.5


# ----------------------------------------------------------------------------- common tail measures
def _trajectory(**over):
    kw = dict(zipf_a=1.0, refit_m=300, refit_generations=4, gen_temperature=0.8, budget=64, q=0.1, seed=FRESH)
    kw.update(over)
    return generator.trajectory([4, 5], 3, **kw)


def test_trajectory_has_the_common_columns_with_sane_ranges():
    traj = _trajectory()
    assert set(tails.COLUMNS) | {"experiment", "arm", "replicate", "step", "mechanism"} <= set(traj.columns)
    assert set(traj.mechanism) <= set(tails.MECHANISMS) and set(traj.arm) == {"generator", "taxonomy"}
    gen = traj[traj.arm == "generator"]
    assert gen[list(tails.COLUMNS)].notna().all().all()
    assert ((gen.support > 0) & (gen.support < 1.5)).all()  # relative to the real law: drift may exceed it a little
    assert ((gen.quality >= 0) & (gen.quality <= 1)).all() and ((gen.mode_share > 0) & (gen.mode_share <= 1)).all()
    assert (gen.error_mass == 0).all()  # refitting never invents a leaf
    last = gen[gen.step == gen.step.max()]
    assert last.q_tail_mass.mean() < 1 and (last.kl_from_start > 0).all()


def test_trajectory_follows_the_chapters_generator():
    world = _world(rows=3, branching=(4, 5), refit_m=300, refit_generations=4, gen_temperature=0.8,
                   teacher_error=[0.0] * 4)  # fmt: skip
    traj = generator.trajectory([4, 5], 3, zipf_a=1.0, refit_m=300, refit_generations=4, gen_temperature=0.8,
                                budget=64, q=0.1, seed=FRESH)  # fmt: skip
    last = traj.query("arm == 'generator' and step == 4")
    assert np.allclose(last["mode_share"], world.p_gen.max(1))


def test_trajectory_does_not_move_under_the_null():
    null = _trajectory(zipf_a=0.0, refit_generations=0)
    assert null.step.unique().tolist() == [0]
    gen = null[null.arm == "generator"]
    assert np.allclose(gen.support, 1) and np.allclose(gen.q_tail_mass, 1) and np.allclose(gen.kl_from_start, 0)
    flat = _trajectory(zipf_a=0.0, refit_m=10**7, refit_generations=4, gen_temperature=1.0)  # uniform, huge refits
    g = flat[flat.arm == "generator"]
    assert np.allclose(g.support, 1, atol=1e-3) and np.allclose(g.q_tail_mass, 1, atol=0.05)


# ----------------------------------------------------------------------------- spec rules
def test_no_engine_default_competes_with_the_spec():
    """The spec's presets are the only place a chapter parameter gets a value."""
    names = set(SPEC.names)
    offenders = []
    for module in ENGINES:
        for public in module.__all__:
            obj = getattr(module, public)
            if not callable(obj):
                continue
            for p in inspect.signature(obj).parameters.values():
                if p.name in names and p.default is not inspect.Parameter.empty:
                    offenders.append(f"{module.__name__}.{public}({p.name}={p.default!r})")
    assert not offenders, offenders


def test_standard_arms_take_their_knobs_from_the_caller():
    arms = samplers.standard_arms(5, 0.3, 4)
    assert arms["naive"] == samplers.Arm("naive", "naive", 1, 0.0, 0)
    full = arms["taxonomy + local + complexify + critic"]
    assert (full.global_sampler, full.candidates, full.complexify, full.critic_rounds) == ("taxonomy", 5, 0.3, 4)
    with pytest.raises(ValueError, match="candidates"):
        dataclasses.replace(full, candidates=0)


def test_null_configuration_is_valid_and_switches_every_knob_off():
    P = SPEC.resolve(scale="smoke", **SPEC.null)
    assert P["zipf_a"] == 0 and P["refit_generations"] == 0
    assert (P["candidates"], P["complexify"], P["critic_rounds"]) == (1, 0.0, 0)
    assert all(c.kind != "direction" or c.delta > 0 for c in SPEC.claims)


def test_spec_checks_the_teacher_list_against_the_tree():
    with pytest.raises(ValueError, match="teacher_error"):
        SPEC.resolve(scale="smoke", teacher_error=[0.0, 0.1])
