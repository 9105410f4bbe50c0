"""Chapter 8's engine: DARLING's partition diversity against brute force, the pair classifier,
the derived fitness and fixed point against exact enumeration, the training loop's null and
zero-learning-rate behaviour, and the common tail measures."""

from __future__ import annotations

import inspect
import itertools

import numpy as np
import pytest
import torch

from vanishing_tails.core import tails
from vanishing_tails.core.domains import make_domain
from vanishing_tails.core.rl import kl_regularised_optimum
from vanishing_tails.experiments.darling import partition as pt
from vanishing_tails.experiments.darling import theory
from vanishing_tails.experiments.darling import training as tr
from vanishing_tails.experiments.darling.spec import SPEC

MODULES = (pt, theory, tr)


# ------------------------------------------------------------------ partition diversity


def _brute_diversity(same: np.ndarray) -> np.ndarray:
    """Union-find over the judged pairs of one group, then (G - class size) / (G - 1), sample by sample."""
    G = len(same)
    parent = list(range(G))

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    for i in range(G):
        for j in range(i + 1, G):
            if same[i, j]:
                parent[find(i)] = find(j)
    roots = [find(i) for i in range(G)]
    return np.array([(G - roots.count(roots[i])) / (G - 1) for i in range(G)])


@pytest.mark.parametrize("G", [2, 3, 8, 11])
def test_partition_diversity_matches_union_find_brute_force(G):
    rng = np.random.default_rng(G)
    raw = rng.random((5, 3, G, G)) < 0.15
    same = torch.from_numpy(raw | raw.transpose(0, 1, 3, 2))  # symmetric, not transitive
    fast = pt.partition_diversity(same).numpy()
    for idx in itertools.product(range(5), range(3)):
        np.testing.assert_allclose(fast[idx], _brute_diversity(same[idx].numpy()), atol=1e-12)


def test_class_diversity_is_the_share_of_the_others_outside_the_class():
    classes = torch.tensor([[0, 0, 1, 2, 2, 2, 3, 0]])
    d = pt.class_diversity(classes)[0].numpy()
    counts = {c: int((classes == c).sum()) for c in range(4)}
    expected = [(8 - counts[int(c)]) / 7 for c in classes[0]]
    np.testing.assert_allclose(d, expected)
    assert pt.class_diversity(torch.zeros(1, 8, dtype=torch.long)).max() == 0  # one class: no diversity
    assert pt.class_diversity(torch.arange(8)[None]).min() == 1  # all distinct: full diversity


def test_closure_is_an_equivalence_relation_and_refuses_a_group_of_one():
    rng = np.random.default_rng(0)
    raw = rng.random((4, 9, 9)) < 0.2
    r = pt.closure(torch.from_numpy(raw | raw.transpose(0, 2, 1)))
    assert torch.equal(r, r.transpose(-1, -2))
    assert torch.equal(r, pt.closure(r))  # transitive: closing again changes nothing
    assert bool(torch.diagonal(r, dim1=-2, dim2=-1).all())
    with pytest.raises(ValueError, match="G >= 2"):
        pt.partition_diversity(torch.ones(3, 1, 1, dtype=torch.bool))


def test_expected_diversity_of_a_sample_in_class_c_is_one_minus_p_c():
    """E[d | y in class c] = 1 - p_c exactly, for any G (the (G - 1) normalisation)."""
    pi = np.array([0.5, 0.2, 0.3])
    classes = np.array([0, 0, 1])
    G = 4
    total = np.zeros(3)
    for ys in itertools.product(range(3), repeat=G):
        w = np.prod(pi[list(ys)])
        d = pt.class_diversity(torch.as_tensor(classes[list(ys)])).numpy()
        total[ys[0]] += w * d[0]
    p_c = np.array([0.7, 0.7, 0.3])
    np.testing.assert_allclose(total / pi, 1 - p_c, atol=1e-12)


def test_group_relation_with_one_judge_and_one_judge_per_seed():
    rel = torch.rand(6, 6) < 0.5
    y = torch.randint(0, 6, (2, 3, 4))
    g = pt.group_relation(rel, y)
    assert g.shape == (2, 3, 4, 4) and bool(g[1, 2, 0, 3] == rel[y[1, 2, 0], y[1, 2, 3]])
    per_seed = torch.rand(2, 6, 6) < 0.5
    g = pt.group_relation(per_seed, y)
    assert bool(g[1, 0, 2, 1] == per_seed[1, y[1, 0, 2], y[1, 0, 1]])
    assert bool(g[0, 2, 3, 0] == per_seed[0, y[0, 2, 3], y[0, 2, 0]])


# ------------------------------------------------------------------ the partitions


@pytest.fixture(scope="module")
def domains():
    return {name: make_domain(name, 3, 0.5) for name in ("code", "creative")}


def test_lexical_proxy_is_wrong_in_both_directions(domains):
    code, creative = domains["code"], domains["creative"]
    _, overlap = pt.output_views(code)
    lex = pt.lexical_relation(overlap, 0.5)
    i, j = code.lookup(["2 + x", "x + 2"])
    assert code.semantic[i] == code.semantic[j] and not lex[i, j]  # same meaning, "different"
    _, overlap = pt.output_views(creative)
    lex = pt.lexical_relation(overlap, 0.5)
    i, j = creative.lookup(["sea sleeps under moon", "moon sleeps under sea"])
    assert creative.semantic[i] != creative.semantic[j] and lex[i, j]  # different meaning, "same"
    assert torch.equal(lex, lex.T) and bool(torch.diagonal(lex).all())
    with pytest.raises(ValueError, match="lexical_threshold"):
        pt.lexical_relation(overlap, 0.0)


def test_classifier_scores_every_pair_as_its_features_say(domains):
    dom = domains["creative"]
    words, overlap = pt.output_views(dom)
    clf = pt.train_classifier(dom, 60, seed=3, ridge=1.0, views=(words, overlap))
    rng = np.random.default_rng(1)
    a, b = rng.integers(dom.n_outputs, size=(2, 200))
    X = pt.pair_features(words, overlap, a, b)
    W = clf.W[np.triu_indices(len(clf.W))]
    linear = X @ np.concatenate([W, [clf.w_overlap]]) + clf.bias
    np.testing.assert_allclose(clf.score(words, overlap)[a, b], linear, atol=1e-6)  # float32 views
    assert np.allclose(clf.score(words, overlap), clf.score(words, overlap).T)  # symmetric judge
    rel = clf.relation(words, overlap)
    assert bool(torch.diagonal(rel).all())


@pytest.mark.parametrize(("name", "floor"), [("creative", 0.9), ("code", 0.65)])
def test_classifier_pair_accuracy_beats_chance_on_balanced_pairs(domains, name, floor):
    clf = pt.train_classifier(domains[name], 300, seed=0, ridge=1.0)
    assert floor < clf.accuracy <= 1.0
    assert 0 <= clf.false_same < 0.5 and 0 <= clf.false_different < 0.5
    assert abs(clf.accuracy - (1 - 0.5 * (clf.false_same + clf.false_different))) < 1e-9  # balanced test set


def test_balanced_pairs_are_half_equivalent_and_never_identical(domains):
    a, b, same = pt.sample_pairs(domains["creative"], 40, rng=np.random.default_rng(0))
    assert len(a) == 3 * 40 and same.mean() == 0.5 and not (a == b).any()
    sem = domains["creative"].semantic
    assert np.array_equal(sem[a] == sem[b], same)


# ------------------------------------------------------------------ theory


def _brute_update(pi, ref, q, classes, combine, G, lam, beta):
    """E[(1/G) sum_i A_i (e_{y_i} - pi)] by enumerating every group, with the KL-shaped reward."""
    N = len(pi)
    E = np.zeros(N)
    for ys in itertools.product(range(N), repeat=G):
        ys = np.array(ys)
        d = pt.class_diversity(torch.as_tensor(classes[ys])).numpy()
        r = {"quality": q[ys], "multiply": q[ys] * d, "add": q[ys] + lam * d}[combine]
        r = r - beta * (np.log(pi[ys]) - np.log(ref[ys]))
        A = r - r.mean()
        E += np.prod(pi[ys]) * (A[:, None] * (np.eye(N)[ys] - pi)).sum(0) / G
    return E


@pytest.mark.parametrize("combine", theory.COMBINES)
@pytest.mark.parametrize("beta", [0.0, 0.3])
def test_expected_update_matches_enumeration_of_every_group(combine, beta):
    rng = np.random.default_rng(7)
    pi, ref = rng.dirichlet(np.ones(5)), rng.dirichlet(np.ones(5))
    classes = np.array([0, 0, 1, 1, 2])
    q = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    for G in (2, 3):
        brute = _brute_update(pi, ref, q, classes, combine, G, 0.7, beta)
        formula = theory.expected_update(pi, ref, q, classes, combine=combine, group_size=G, additive_weight=0.7,
                                         beta=beta)  # fmt: skip
        np.testing.assert_allclose(formula, brute, atol=1e-12)


def test_fixed_point_zeroes_the_expected_update_and_quality_gives_the_kl_optimum():
    rng = np.random.default_rng(2)
    ref = rng.dirichlet(np.ones(7), size=3)
    classes = np.array([0, 0, 1, 1, 2, 3, 3])
    q = (rng.random((3, 7)) < 0.6).astype(float)
    for combine in theory.COMBINES:
        star = theory.fixed_point(ref, q, classes, combine=combine, group_size=8, additive_weight=1.0, beta=0.4)
        upd = theory.expected_update(star, ref, q, classes, combine=combine, group_size=8, additive_weight=1.0,
                                     beta=0.4)  # fmt: skip
        assert np.abs(upd).max() < 1e-10
        np.testing.assert_allclose(star.sum(-1), 1.0)
    star = theory.fixed_point(ref, q, classes, combine="quality", group_size=8, additive_weight=1.0, beta=0.4)
    np.testing.assert_allclose(star, kl_regularised_optimum(ref, q, 0.4), atol=1e-10)


def test_small_beta_fixed_point_spreads_darling_evenly_over_the_valid_classes():
    ref = np.array([[0.6, 0.2, 0.1, 0.05, 0.05]])
    classes = np.array([0, 0, 1, 2, 2])
    q = np.array([[1.0, 1.0, 1.0, 0.0, 0.0]])  # classes 0 and 1 valid, class 2 invalid
    star = theory.fixed_point(ref, q, classes, combine="multiply", group_size=8, additive_weight=1.0, beta=0.02)
    shares = theory.class_shares(star, classes, 3)
    limit = theory.zero_beta_shares(q > 0, classes, 3)
    np.testing.assert_allclose(limit, [[0.5, 0.5, 0.0]])
    assert np.abs(shares - limit).max() < 0.05
    quality_only = theory.fixed_point(ref, q, classes, combine="quality", group_size=8, additive_weight=1.0, beta=0.02)
    assert theory.class_shares(quality_only, classes, 3)[0, 0] > 0.85  # no force toward the rare class


def test_darling_fitness_falls_with_the_class_mass_and_the_correction_vanishes_with_g():
    classes = np.array([0, 1])
    q = np.array([1.0, 1.0])
    for G in (4, 64):
        f = theory.fitness(np.array([0.9, 0.1]), q, classes, combine="multiply", group_size=G, additive_weight=0.0)
        assert f[0] < f[1]
    f_large = theory.fitness(np.array([0.9, 0.1]), q, classes, combine="multiply", group_size=10**6,
                             additive_weight=0.0)  # fmt: skip
    np.testing.assert_allclose(f_large, [0.1, 0.9], atol=1e-5)  # 1 - p_c


# ------------------------------------------------------------------ training


def _train(dom, **kw):
    words, overlap = pt.output_views(dom)
    clfs = [pt.train_classifier(dom, 20, seed=s, ridge=1.0, views=(words, overlap)) for s in range(2)]
    rel = tr.relations_for(dom, views=(words, overlap), classifiers=clfs, lexical_threshold=0.5)
    args = dict(n_seeds=2, steps=6, group_size=4, n_groups=1, lr=1.0, beta=0.0, additive_weight=1.0,
                eval_every=3, n_distinct=8, q=0.1, null_partition=False, seed=11)  # fmt: skip
    args.update(kw)
    return tr.train_arms(dom, rel, tr.ARMS, **args), rel


def test_zero_learning_rate_moves_nothing(domains):
    run, _ = _train(domains["code"], lr=0.0)
    np.testing.assert_allclose(run.probs, np.broadcast_to(domains["code"].prior, run.probs.shape), atol=1e-12)
    assert run.tails["kl_from_start"].abs().max() < 1e-9
    first = run.tails[run.tails.step == 0][list(tails.COLUMNS)].to_numpy()
    last = run.tails[run.tails.step == 6][list(tails.COLUMNS)].to_numpy()
    np.testing.assert_allclose(first, last, atol=1e-9)


def test_null_partition_makes_every_arm_quality_only(domains):
    run, _ = _train(domains["creative"], null_partition=True)
    names = [a.name for a in run.arms]
    quality = run.probs[names.index(tr.QUALITY.name)]
    for arm in (tr.DARLING, tr.LEARNED, tr.LEXICAL):  # reward q * 1 = q exactly
        np.testing.assert_array_equal(run.probs[names.index(arm.name)], quality)
    np.testing.assert_allclose(run.probs[names.index(tr.ADDITIVE.name)], quality, atol=1e-9)  # q + lambda
    t = run.tails.set_index(["arm", "replicate", "step"])[list(tails.COLUMNS)]
    for arm in names:
        np.testing.assert_allclose(t.loc[arm].to_numpy(), t.loc[tr.QUALITY.name].to_numpy(), atol=1e-9)


def test_training_is_deterministic_and_arms_share_their_draws_at_step_one(domains):
    a, _ = _train(domains["code"])
    b, _ = _train(domains["code"])
    np.testing.assert_array_equal(a.probs, b.probs)
    assert {"pass@1", "distinct correct", "semantic", "lexical", "gamed pairs", "pass@n"} == set(a.history.metric)


def test_exact_measures_of_the_prior(domains):
    dom = domains["code"]
    _, rel = _train(dom, steps=1, eval_every=1)
    m = tr.exact_measures(dom, torch.as_tensor(dom.prior), rel, 16)
    np.testing.assert_allclose(m["pass@1"].numpy(), 0.5)
    assert (m["distinct correct"] >= 1).all() and (m["gamed pairs"] <= 1 - m["lexical"] + m["semantic"]).all()
    mis = tr.misjudged(np.broadcast_to(dom.prior, (1, 2, *dom.prior.shape)), rel["learned"], rel["oracle"])
    assert mis.shape == (1, 2, dom.n_prompts) and ((0 <= mis) & (mis <= 1)).all()


def test_arms_are_checked_and_rewards_combine_as_named():
    with pytest.raises(ValueError):
        tr.Arm("bad", "oracle", "quality")
    with pytest.raises(ValueError):
        tr.Arm("bad", "nonsense", "multiply")
    q, d = torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0.5, 1.0, 0.0])
    assert torch.equal(tr.rewards(tr.QUALITY, q, None, 2.0), q)
    assert torch.equal(tr.rewards(tr.DARLING, q, d, 2.0), torch.tensor([0.5, 0.0, 0.0]))
    assert torch.equal(tr.rewards(tr.ADDITIVE, q, d, 2.0), torch.tensor([2.0, 2.0, 1.0]))


def test_trajectory_has_the_common_columns_in_sane_ranges():
    frame = tr.trajectory(n_seeds=2, n_prompts=2, valid_share=0.5, group_size=4, steps=4, lr=1.0, beta=0.0,
                          additive_weight=1.0, lexical_threshold=0.5, n_pairs=20, ridge=1.0, n_distinct=8,
                          eval_every=2, q=0.1, null_partition=False, seed=0)  # fmt: skip
    assert list(frame.columns) == ["experiment", "arm", "replicate", "step", "mechanism", *tails.COLUMNS]
    assert set(frame.mechanism) <= set(tails.MECHANISMS) and set(frame.step) == {0, 2, 4}
    assert frame["support"].gt(0).all() and frame["kl_from_start"].ge(-1e-12).all()
    for col in ("error_mass", "mode_share", "quality"):
        assert frame[col].between(0, 1).all(), col
    assert frame["q_tail_mass"].ge(0).all()
    start = frame[frame.step == 0]
    np.testing.assert_allclose(start["error_mass"], 0.5)  # the prior's invalid half
    assert len(frame.arm.unique()) == 2 * len(tr.ARMS)


# ------------------------------------------------------------------ structure


def test_no_engine_default_for_a_spec_parameter():
    names = set(SPEC.names)
    offenders = []
    for module in MODULES:
        for fname, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ != module.__name__ or fname.startswith("_"):
                continue
            for p in inspect.signature(fn).parameters.values():
                if p.name in names and p.default is not inspect.Parameter.empty:
                    offenders.append(f"{module.__name__}.{fname}({p.name}={p.default!r})")
    assert not offenders, offenders


def test_every_public_object_links_back_to_the_chapter():
    for module in MODULES:
        for name, obj in inspect.getmembers(module, lambda o: inspect.isfunction(o) or inspect.isclass(o)):
            if name.startswith("_") or obj.__module__ != module.__name__:
                continue
            doc = inspect.getdoc(obj) or ""
            assert doc.rstrip().splitlines()[-1].startswith("Explained in :ref:`sec-darling-"), name


def test_spec_null_and_checks():
    P = SPEC.resolve(scale="smoke", **SPEC.null)
    assert P["null_partition"] is True
    assert all(c.kind != "direction" or c.delta > 0 for c in SPEC.claims)
    assert {c.unit for c in SPEC.claims} == {"seeds"}
    assert SPEC.resolve(scale="book")["n_seeds"] >= 5
    with pytest.raises(ValueError, match="eval_every"):
        SPEC.resolve(scale="smoke", eval_every=10_000)
