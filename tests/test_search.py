"""Chapter 6's engine (``experiments.search``): the generated world and its environment, the
stacked transformer agents, the training loops, and the entropy mechanism of Cui et al. 2025.

Oracles first: every training question is solvable by all three strategies and every
held-out one by multi-hop alone; the strategy labels; the stacked agents against
TinyTransformer; the exact strategy probabilities against sampling; the covariance formula
of the entropy change (first and second order, vanilla and natural policy gradient) against
automatic differentiation on a tiny softmax policy. Seeds here are fresh (never used to
develop the chapter).
"""

from __future__ import annotations

import importlib
import inspect

import numpy as np
import pytest
import torch

from vanishing_tails.core import tails
from vanishing_tails.experiments.search import agent as ag
from vanishing_tails.experiments.search import entropy as en
from vanishing_tails.experiments.search import training as tr
from vanishing_tails.experiments.search import world as wd
from vanishing_tails.experiments.search.spec import SPEC

MODULES = [wd, ag, en, tr]
DIRECT, BROWSE, MULTI, OTHER = range(4)


@pytest.fixture(scope="module")
def world():
    return wd.make_worlds(3, n_entities=12, n_held_out=4, n_values=6, seed=9301)


def tiny_sizes(**kw):
    sizes = dict(
        n_seeds=2, n_entities=10, n_held_out=3, n_values=5, narrow_share=0.8, n_demos=32, d_model=8, n_layers=1,
        n_heads=2, sft_steps=6, sft_lr=3e-3, batch_size=16, rl_steps=4, rl_lr=3e-3, group_size=4,
        questions_per_step=4, entropy_beta=0.3, kl_beta=0.0, eval_every=2, n_eval=4, k=2, n_distinct=8, seed=9302,
    )  # fmt: skip
    sizes.update(kw)
    return sizes


# --- the world and its environment ------------------------------------------------------------


def test_links_form_one_cycle_and_source_inverts_them(world):
    for w in range(len(world)):
        link, source = world.link[w].numpy(), world.source[w].numpy()
        assert np.array_equal(source[link], np.arange(len(link)))
        seen, e = set(), 0
        for _ in range(len(link)):
            seen.add(e)
            e = link[e]
        assert len(seen) == len(link) and e == 0, "the links are one cycle through every entity"


def test_world_i_does_not_depend_on_how_many_worlds_are_drawn(world):
    more = wd.make_worlds(5, n_entities=12, n_held_out=4, n_values=6, seed=9301)
    for name in ("value", "link", "indexed", "train", "held_out"):
        assert torch.equal(getattr(more, name)[:3], getattr(world, name))


@pytest.mark.parametrize("strategy", [DIRECT, BROWSE, MULTI])
def test_every_training_question_is_solved_by_every_strategy(world, strategy):
    wi = torch.arange(len(world))
    t = world.train
    assert bool(wd.solves(world, wi, t, torch.full_like(t, strategy)).all())
    rows, reward = wd.run_programs(world, wi, t, torch.full_like(t, strategy), world.value.gather(1, t))
    assert bool((reward == 1).all())
    assert bool((wd.strategy_labels(_actions(world, rows)) == strategy).all())


def test_held_out_questions_need_multi_hop(world):
    wi = torch.arange(len(world))
    h = world.held_out
    truth = world.value.gather(1, h)
    for s in (DIRECT, BROWSE, MULTI):
        solved = wd.solves(world, wi, h, torch.full_like(h, s))
        _, reward = wd.run_programs(world, wi, h, torch.full_like(h, s), truth)
        assert bool(solved.all()) == (s == MULTI) and bool(solved.any()) == (s == MULTI)
        # the grader checks the citation: the true value answered from the wrong page earns nothing
        assert torch.equal(reward, solved.float())


def _actions(world, rows):
    legal = world.layout.legal
    inv = torch.full((int(legal.max()) + 1,), -1, dtype=torch.long)
    inv[legal] = torch.arange(len(legal))
    return inv[rows[..., list(wd.ACTION_POS)]]


def test_strategy_labels():
    A = wd.N_ACTIONS  # any value token answers
    cases = {
        (wd.FIND, wd.OPEN, A + 3, -1): DIRECT,
        (wd.LIST, wd.OPEN, A, -1): BROWSE,
        (wd.HUB, wd.OPEN, wd.FOLLOW, A + 1): MULTI,
        (wd.FIND, wd.FIND, wd.OPEN, A): OTHER,
        (wd.HUB, wd.OPEN, A, -1): OTHER,
        (A + 2, -1, -1, -1): OTHER,
        (wd.FIND, wd.OPEN, wd.FOLLOW, wd.OPEN): OTHER,
    }
    got = wd.strategy_labels(torch.tensor(list(cases)))
    assert got.tolist() == list(cases.values())


def test_an_answer_ends_the_episode_and_the_budget_ends_every_episode(world):
    wi = torch.zeros(1, dtype=torch.long)
    env = wd.Env(world, wi, world.train[:1, :2])
    env.step(torch.tensor([[wd.N_ACTIONS, wd.FIND]]))  # episode 0 answers at once
    assert env.done.tolist() == [[True, False]]
    obs = env.step(torch.tensor([[wd.FIND, wd.OPEN]]))
    assert int(obs[0, 0]) == 0, "a finished episode observes PAD"
    env.step(torch.tensor([[wd.FIND, wd.OPEN]]))
    env.step(torch.tensor([[wd.FIND, wd.OPEN]]))
    assert bool(env.done.all()) and env.reward[0, 1] == 0
    with pytest.raises(ValueError, match="at most"):
        env.step(torch.tensor([[wd.FIND, wd.FIND]]))


def test_demonstrations_follow_their_mix_and_wrong_answers_are_wrong(world):
    wi = torch.tensor([0, 0, 1])
    mix = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1 / 3, 1 / 3, 1 / 3]])
    wrong = torch.tensor([False, False, True])
    rows, strategy = wd.demonstrations(world, wi, mix, wrong, 200, seed=9303)
    assert bool((strategy[0] == DIRECT).all()) and bool((strategy[1] == MULTI).all())
    assert set(strategy[2].tolist()) == {DIRECT, BROWSE, MULTI}
    labels = wd.strategy_labels(_actions(world, rows))
    assert torch.equal(labels, strategy)
    # replay every demonstration through the environment: right answers earn 1, wrong ones 0
    legal = world.layout.legal
    acts = _actions(world, rows)
    targets = torch.stack([torch.tensor([world.layout.entity_names.index(world.layout.vocab.itos[t]) for t in r])
                           for r in rows[..., 1]])  # fmt: skip
    env = wd.Env(world, wi, targets)
    for t in range(wd.MAX_ACTIONS):
        env.step(torch.where(acts[..., t] >= 0, acts[..., t], wd.N_ACTIONS))
    assert bool((env.reward[:2] == 1).all()) and bool((env.reward[2] == 0).all())
    again, _ = wd.demonstrations(world, wi, mix, wrong, 200, seed=9303)
    assert torch.equal(rows, again)
    assert int(legal.numel()) == world.layout.n_legal


# --- the stacked agents ---------------------------------------------------------------------


def test_stack_computes_what_each_tiny_transformer_computes(world):
    stack = ag.build_stack(len(world.layout.vocab), [5, 6, 7], d_model=8, n_layers=2, n_heads=2)
    wi = torch.arange(3)
    rows, _ = wd.demonstrations(world, wi, torch.full((3, 3), 1 / 3), torch.zeros(3, dtype=torch.bool), 9,
                                seed=9304)  # fmt: skip
    logits = stack.logits(rows)
    for i in range(3):
        assert torch.allclose(stack.model(i)(rows[i]), logits[i], atol=1e-5)
    again = ag.build_stack(len(world.layout.vocab), [5, 6, 7], d_model=8, n_layers=2, n_heads=2)
    assert all(torch.equal(a, b) for a, b in zip(stack.parameters(), again.parameters()))


def test_adam_matches_torch_adam():
    gen = torch.Generator().manual_seed(9305)
    a = torch.randn(3, 4, generator=gen).requires_grad_(True)
    b = a.detach().clone().requires_grad_(True)
    ref, ours = torch.optim.Adam([a], lr=0.01), ag.Adam([b], lr=0.01)
    for _ in range(25):
        g = torch.randn(3, 4, generator=gen)
        a.grad, b.grad = g.clone(), g.clone()
        ref.step()
        ours.step()
    assert torch.allclose(a, b, atol=1e-6)


def test_one_stack_and_one_adam_in_core():
    """Chapters 4 and 6 share core's Stack; chapters 2, 3 and 6 share core's Adam, which follows
    torch.optim.Adam bit for bit on a stacked parameter (fresh seed)."""
    from vanishing_tails.core import lm, optim
    from vanishing_tails.experiments.families import fitting
    from vanishing_tails.experiments.formats import echo

    assert ag.Stack is lm.Stack is echo.Stack
    assert ag.Adam is optim.Adam is fitting.Adam
    gen = torch.Generator().manual_seed(9311)
    a = torch.randn(4, 3, 5, generator=gen).requires_grad_(True)
    b = a.detach().clone().requires_grad_(True)
    ref, ours = torch.optim.Adam([a], lr=0.03), optim.Adam([b], lr=0.03)
    for _ in range(30):
        g = torch.randn(4, 3, 5, generator=gen)
        a.grad, b.grad = g.clone(), g.clone()
        ref.step()
        ours.step()
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="lr"):
        optim.Adam([b], lr=-1.0)


def test_rollout_replays_and_does_not_depend_on_the_other_replicas(world):
    stack = ag.build_stack(len(world.layout.vocab), [11, 12], d_model=8, n_layers=1, n_heads=2)
    wi = torch.tensor([0, 1])
    targets = world.train[:2].repeat(1, 3)
    ro = ag.rollout(stack, wd.Env(world, wi, targets), [torch.Generator().manual_seed(s) for s in (1, 2)])
    env = wd.Env(world, wi, targets)  # replay the sampled actions
    for t in range(wd.MAX_ACTIONS):
        env.step(torch.where(ro.actions[..., t] >= 0, ro.actions[..., t], wd.N_ACTIONS))
    assert torch.equal(env.reward, ro.reward)
    assert torch.allclose(ag.legal_logp(stack, ro.rows, world.layout.legal) * ro.acted[..., None],
                          ro.logp * ro.acted[..., None], atol=1e-5)  # fmt: skip
    alone = ag.rollout(stack.take([1]), wd.Env(world, wi[1:], targets[1:]), [torch.Generator().manual_seed(2)])
    assert torch.equal(alone.rows[0], ro.rows[1])


def test_exact_strategy_probabilities_match_sampled_frequencies(world):
    stack = ag.build_stack(len(world.layout.vocab), [13], d_model=8, n_layers=1, n_heads=2)
    wi = torch.zeros(1, dtype=torch.long)
    # make the strategies likely: a few SFT steps on diverse demonstrations
    rows, _ = wd.demonstrations(world, wi, torch.full((1, 3), 1 / 3), torch.zeros(1, dtype=torch.bool), 64,
                                seed=9306)  # fmt: skip
    for p in stack.parameters():
        p.requires_grad_(True)
    tr.sft(stack, rows, world.layout.legal, steps=20, batch_size=32, lr=1e-2, seeds=[9307])
    target = world.train[:1, :1]
    p, first = ag.strategy_probabilities(stack, world, wi, target)
    assert p.shape == (1, 1, 4) and abs(float(p.sum()) - 1) < 1e-5 and bool((p[..., :3] <= first + 1e-6).all())
    n = 4000
    ro = ag.rollout(stack, wd.Env(world, wi, target.expand(1, n)), [torch.Generator().manual_seed(9308)])
    freq = torch.bincount(ro.strategy[0], minlength=4).double() / n
    pe = p[0, 0].double()
    z = (freq - pe) / torch.sqrt(pe * (1 - pe) / n).clamp(min=1e-9)
    assert float(z.abs().max()) < 4, (freq, pe)


# --- the entropy mechanism (Cui et al. 2025) ------------------------------------------------


def _entropy(z):
    return -(torch.softmax(z, -1) * torch.log_softmax(z, -1)).sum(-1)


def test_first_order_covariance_is_the_exact_directional_derivative():
    gen = torch.Generator().manual_seed(9309)
    z = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    dz = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    grad = torch.autograd.functional.jvp(_entropy, z, dz)[1]
    assert torch.allclose(en.entropy_change_first_order(torch.log_softmax(z, -1), dz), grad, atol=1e-12)
    # a constant added to every logit changes nothing
    assert torch.allclose(en.entropy_change_first_order(torch.log_softmax(z, -1), dz + 3.0), grad, atol=1e-12)


def test_second_order_term_is_the_hessian_quadratic_form():
    gen = torch.Generator().manual_seed(9310)
    z = torch.randn(6, generator=gen, dtype=torch.float64)
    dz = torch.randn(6, generator=gen, dtype=torch.float64)
    hess = torch.autograd.functional.hessian(_entropy, z)
    first = en.entropy_change_first_order(torch.log_softmax(z, -1), dz)
    expected = first + 0.5 * dz @ hess @ dz
    assert torch.allclose(en.entropy_change_second_order(torch.log_softmax(z, -1), dz), expected, atol=1e-12)


@pytest.mark.parametrize("natural", [False, True])
def test_policy_gradient_step_changes_entropy_by_the_covariance(natural):
    """A real policy-gradient step on a tiny tabular softmax (autograd on J = Σ π A for vanilla PG):
    the entropy change approaches −η Cov(log π, π(A − E A)) (vanilla) or −η Cov(log π, A) (natural)."""
    gen = torch.Generator().manual_seed(9311)
    z0 = torch.randn(8, generator=gen, dtype=torch.float64)
    A = torch.randn(8, generator=gen, dtype=torch.float64)
    logp = torch.log_softmax(z0, -1)
    p = logp.exp()
    for eta in (1e-2, 1e-3, 1e-4):
        if natural:
            z1 = z0 + eta * A
            cov_term = (p * (logp - (p * logp).sum()) * (A - (p * A).sum())).sum()
        else:
            z = z0.clone().requires_grad_(True)
            (torch.softmax(z, -1) * A).sum().backward()
            z1 = z0 + eta * z.grad
            assert torch.allclose(z.grad, en.pg_logit_change(logp, A, 1.0, natural=False), atol=1e-12)
            pa = p * (A - (p * A).sum())
            cov_term = (p * (logp - (p * logp).sum()) * (pa - (p * pa).sum())).sum()
        measured = _entropy(z1) - _entropy(z0)
        predicted = -eta * cov_term
        assert torch.allclose(en.entropy_change_first_order(logp, en.pg_logit_change(logp, A, eta, natural=natural)),
                              predicted, atol=1e-14)  # fmt: skip
        assert abs(float(measured / predicted) - 1) < 20 * eta  # the remainder is second order


def test_batch_covariance_is_the_masked_centred_product():
    rng = np.random.default_rng(9312)
    lp, adv = rng.normal(size=(3, 10)), rng.normal(size=(3, 10))
    mask = rng.random((3, 10)) < 0.7
    got = en.batch_covariance(torch.tensor(lp), torch.tensor(adv), torch.tensor(mask)).numpy()
    for m in range(3):
        x, y = lp[m][mask[m]], adv[m][mask[m]]
        assert np.isclose(got[m], np.mean((x - x.mean()) * (y - y.mean())))


def test_entropy_law_fit_recovers_its_coefficients():
    H = np.linspace(0.05, 1.2, 12)
    law = en.fit_entropy_law(H, -0.3 * np.exp(H) + 1.25)
    assert np.isclose(law.a, 0.3) and np.isclose(law.b, 1.25) and np.isclose(law.r2, 1.0)
    assert np.isclose(law.ceiling, 0.95)
    assert np.isnan(en.fit_entropy_law(np.ones(5), np.arange(5.0)).a)


# --- the training loops, the common tail measures, the spec ---------------------------------


def test_zero_learning_rate_moves_nothing_and_the_tail_measures_stay_put():
    null = tr.experiment(**tiny_sizes(rl_lr=0.0))
    frame = tr.tail_measures(null, q=0.2, n_distinct=tiny_sizes()["n_distinct"])
    assert set(tails.COLUMNS) | {"experiment", "arm", "replicate", "step", "mechanism"} <= set(frame.columns)
    assert set(frame["mechanism"]) <= set(tails.MECHANISMS)
    assert np.allclose(frame["kl_from_start"], 0.0, atol=1e-9)
    moved = frame.groupby(["arm", "replicate"])[["q_tail_mass", "error_mass", "mode_share", "support"]].agg(np.ptp)
    assert np.allclose(moved.to_numpy(), 0.0, atol=1e-9)
    # every evaluation reuses the same random numbers, so with nothing learned nothing measured moves
    assert np.allclose(null.evals.groupby(["arm", "replicate", "metric"])["value"].agg(np.ptp), 0.0)
    assert np.allclose(null.steps[["dH", "dH_pred", "dH_pred2"]].to_numpy(), 0.0)


@pytest.fixture(scope="module")
def tiny():
    return tr.experiment(**tiny_sizes())


def test_trajectory_is_reproducible_and_has_sane_ranges(tiny):
    frame = tr.trajectory(**tiny_sizes(q=0.2))  # a second run with the same seed
    assert frame.equals(tr.tail_measures(tiny, q=0.2, n_distinct=tiny_sizes()["n_distinct"]))
    assert set(frame.arm) == {a.name for a in tr.ARMS} | set(tr.SFT_ONLY)
    assert sorted(frame.step.unique()) == [0, 2, 4]
    for col in ("error_mass", "mode_share", "quality"):
        assert frame[col].between(0, 1).all(), col
    assert (frame["support"] > 0).all() and (frame["q_tail_mass"] >= 0).all()
    assert (frame["kl_from_start"] >= -1e-9).all()


def test_experiment_logs_every_step(tiny):
    assert len(tiny.steps) == 2 * len(tr.ARMS) * 4
    assert np.isfinite(tiny.steps[["dH", "dH_pred", "dH_pred2", "cov"]].to_numpy()).all()
    assert set(tiny.evals.metric) >= {"train success@1", "held-out success@k", "strategy entropy"}


def test_no_engine_default_for_a_spec_parameter():
    names = set(SPEC.names)
    offenders = []
    for mod in MODULES:
        for name, obj in vars(mod).items():
            if name.startswith("_") or not callable(obj) or getattr(obj, "__module__", None) != mod.__name__:
                continue
            try:
                params = inspect.signature(obj).parameters.values()
            except (TypeError, ValueError):
                continue
            offenders += [f"{mod.__name__}.{name}({p.name})" for p in params
                          if p.name in names and p.default is not inspect.Parameter.empty]  # fmt: skip
    assert not offenders, offenders


def test_null_configuration_and_presets_are_valid():
    for scale in ("smoke", "book", "full"):
        SPEC.resolve(scale=scale)
    P = SPEC.resolve(scale="smoke", **SPEC.null)
    assert P["rl_lr"] == 0.0
    assert all(c.kind != "direction" or c.delta > 0 for c in SPEC.claims)  # a zero effect can never hold
    assert SPEC.resolve(scale="book")["n_seeds"] >= 5
    with pytest.raises(ValueError, match="early_step"):
        SPEC.resolve(scale="smoke", early_step=7)
    with pytest.raises(ValueError, match="'k'"):
        SPEC.resolve(scale="smoke", k=100)


def test_the_spec_imports_no_engine():
    spec = importlib.import_module("vanishing_tails.experiments.search.spec")
    assert "torch" not in vars(spec)
