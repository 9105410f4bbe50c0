"""Reward optimisation (``core.rl``) and chapter 3's answer policies (``experiments.sharpening``).

Oracles first: the pass@k formula and the expected number of distinct answers against
simulation, the exact zero GRPO update for a group with equal rewards, and the tabular
control leaving never-solved problems bit for bit unchanged and covering problems like a
sampler frozen at the base. These are facts about the library (several true by
construction), so they are tested here rather than claimed in the chapter's claims
table. Seeds here are fresh (never used to develop the chapter).
"""

from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import stats

from vanishing_tails.core import metrics, rl
from vanishing_tails.experiments.sharpening import policies as ap
from vanishing_tails.experiments.sharpening.spec import SPEC


def small_task(seed: int, **kw):
    args = dict(
        n_seeds=4,
        n_solved=12,
        n_unsolved=12,
        n_held_out=8,
        n_answers=10,
        n_features=6,
        n_hidden=6,
        base_scale=2.0,
        p_unsolved=1e-3,
        seed=seed,
        device="cpu",
    )
    args.update(kw)
    return ap.make_answer_task(**args)


def arm(name="outcome", *, ucb_c=0.0, batch_c=0.0, entropy_beta=0.0, shared=True):
    return ap.Arm(name=name, ucb_c=ucb_c, batch_c=batch_c, entropy_beta=entropy_beta, shared=shared)


def train(task, a, *, steps, group_size, lr, seed, eval_every=None, n_distinct=8, k_max=16, normalize=True):
    return ap.train_answer_policy(
        task,
        a,
        steps=steps,
        group_size=group_size,
        lr=lr,
        eval_every=eval_every or steps,
        n_distinct=n_distinct,
        k_max=k_max,
        normalize=normalize,
        seed=seed,
    )


def random_logp(rng, shape):
    logits = rng.normal(0, 1.5, shape)
    return logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)


# --- group advantages and the zero update ------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
def test_equal_rewards_give_exactly_zero_advantages(normalize):
    rng = np.random.default_rng(7103)
    const = torch.as_tensor(rng.uniform(-3, 3, size=(5, 1))).expand(5, 8).clone()
    rewards = torch.cat([torch.zeros(2, 8), torch.ones(2, 8), const.float()])
    adv = rl.group_advantages(rewards, normalize=normalize)
    assert torch.equal(adv, torch.zeros_like(adv))


def test_grpo_step_on_all_wrong_group_has_exactly_zero_gradient():
    torch.manual_seed(0)  # only the logits' values; the assertion does not depend on them
    logits = torch.randn(3, 10, dtype=torch.float64, requires_grad=True)
    logp = torch.log_softmax(logits, -1)
    answers = torch.tensor([[1, 2, 3, 4], [0, 0, 5, 9], [7, 7, 7, 7]])
    rewards = torch.zeros(3, 4, dtype=torch.float64)
    loss = rl.policy_gradient_loss(logp.gather(-1, answers)[None], rl.group_advantages(rewards)[None])
    loss.sum().backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_group_advantages_are_mean_zero_and_reject_single_samples():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.3, 0.1, 0.2, 0.9]])
    for normalize in (True, False):
        assert torch.allclose(rl.group_advantages(r, normalize=normalize).sum(-1), torch.zeros(2), atol=1e-6)
    with pytest.raises(ValueError, match="group size"):
        rl.group_advantages(torch.ones(3, 1))


def test_kl_regularised_optimum_limits():
    p = np.array([0.5, 0.3, 0.2])
    r = np.array([0.0, 1.0, 0.0])
    assert np.allclose(rl.kl_regularised_optimum(p, r, 1e6), p, atol=1e-5)
    assert rl.kl_regularised_optimum(p, r, 1e-3)[1] > 0.999
    with pytest.raises(ValueError, match="beta"):
        rl.kl_regularised_optimum(p, r, 0.0)


# --- exploration rewards ------------------------------------------------------------------------


def test_ucb_bonus_values_and_a_constant_shift_cancels_under_group_baseline():
    counts = torch.tensor([[0.0, 1.0, 4.0, 100.0]])
    answers = torch.tensor([[0, 1, 2, 3, 3]])
    b = rl.ucb_bonus(counts, answers, 0.5)
    assert torch.allclose(b, torch.tensor([[0.5, 0.5, 0.25, 0.05, 0.05]], dtype=b.dtype))
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    for normalize in (True, False):
        a0 = rl.group_advantages(r + b, normalize=normalize)
        a1 = rl.group_advantages(r + b - 0.3, normalize=normalize)
        assert torch.allclose(a0, a1, atol=1e-12)


def test_batch_penalty_counts_repeats_in_the_group():
    answers = torch.tensor([[0, 0, 1, 2], [3, 3, 3, 3]])
    pen = rl.batch_repetition_penalty(answers, 2.0)
    expected = torch.tensor([[-0.5, -0.5, 0.0, 0.0], [-1.5, -1.5, -1.5, -1.5]], dtype=pen.dtype)
    assert torch.allclose(pen, expected)


# --- theory: pass@k and distinct answers (formerly oracle claims of the chapter) -----------------


@pytest.mark.parametrize("p", [0.003, 0.2, 0.7])
def test_unbiased_pass_at_k_averages_exactly_to_formula(p):
    n = 64
    c = np.arange(n + 1)
    w = stats.binom.pmf(c, n, p)
    for k in (1, 5, 32, 64):
        expected = float(w @ metrics.pass_at_k(n, c, k))
        assert expected == pytest.approx(float(ap.exact_pass_at_k(p, k)), abs=1e-12)


def test_sample_evaluation_matches_theory_on_fresh_policies():
    rng = np.random.default_rng(9131)
    logp = random_logp(rng, (6, 50, 12))
    correct = np.zeros((6, 50, 12), dtype=bool)
    correct[np.arange(6)[:, None], np.arange(50)[None], rng.integers(0, 12, (6, 50))] = True
    ev = ap.sample_evaluation(logp, correct, n=128, ks=[1, 8, 64, 128], seed=9132)
    for (q, k), g in ev.groupby(["quantity", "k"]):
        d = g["estimate"] - g["theory"]
        z = d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))
        assert abs(z) < 4.5, (q, k, z)
    dist = ev[ev.quantity == "distinct"]
    assert np.allclose(dist["theory"], metrics.expected_distinct(np.exp(logp), 128).reshape(-1))


def test_expected_distinct_matches_simulation():
    rng = np.random.default_rng(4417)
    p = metrics.as_distribution(rng.dirichlet(np.full(30, 0.3)))
    n, reps = 20, 20000
    draws = rng.multinomial(n, p, size=reps)
    observed = (draws > 0).sum(-1)
    expected = float(metrics.expected_distinct(p, n))
    assert expected == pytest.approx(float(np.sum(1 - (1 - p) ** n)))
    z = (observed.mean() - expected) / (observed.std(ddof=1) / np.sqrt(reps))
    assert abs(z) < 4


# --- the toy ------------------------------------------------------------------------------------


def test_task_layout_and_correct_answers():
    task = small_task(5501, p_unsolved=0.01)
    logp0 = task.base_logprobs().numpy()
    correct = task.correct.numpy()
    assert correct.sum(-1).tolist() == [[1] * task.n_problems] * task.n_seeds
    solved = task.kind == "solved"
    assert np.all(logp0.argmax(-1)[:, solved] == correct.argmax(-1)[:, solved])
    p_correct = (np.exp(logp0) * correct).sum(-1)
    assert np.all(p_correct[:, ~solved] < np.exp(logp0).max(-1)[:, ~solved])
    assert list(task.group[:24]) == ["solved"] * 12 + ["unsolved"] * 12
    assert (task.group[24:] == "held-out").all()
    assert list(task.kind[24:]) == ["solved"] * 4 + ["unsolved"] * 4  # half of each kind held out


def test_training_logits_are_the_training_rows_of_all_logits():
    task = small_task(5507)
    policy = ap.AnswerPolicy(task)
    with torch.no_grad():
        policy.theta.normal_()
        full, tr = policy(), policy(train_only=True)
    assert torch.allclose(full[:, task.train], tr, atol=1e-12)
    assert torch.allclose(full[:, ~task.train], ap.AnswerPolicy(task)()[:, ~task.train], atol=1e-12)


def test_tabular_control_leaves_never_solved_problems_bit_for_bit_unchanged():
    # formerly the claim "tabular-unsolved-unchanged": true by construction, since a group
    # with equal rewards has its advantages set to exactly zero
    task = small_task(6607, p_unsolved=1e-6)  # so small that training never samples it
    run = train(task, arm("tabular", shared=False), steps=40, group_size=4, lr=0.1, eval_every=10, seed=6608)
    never = (task.group == "unsolved")[None, :] & ~run.found
    assert never.sum() > 0
    assert np.array_equal(run.logp[never], run.logp0[never])
    assert np.all(run.never_found_change == 0.0)
    held = task.group == "held-out"
    assert np.array_equal(run.logp[:, held], run.logp0[:, held])
    # ... while the solved problems did learn
    solved = task.group == "solved"
    assert not np.array_equal(run.logp[:, solved], run.logp0[:, solved])


def test_shared_policy_moves_problems_that_got_no_gradient():
    task = small_task(6611, p_unsolved=1e-6)
    run = train(task, arm(), steps=40, group_size=4, lr=0.1, eval_every=10, seed=6612)
    assert np.all(run.never_found_change > 1e-3)
    h = run.history
    ent = h[(h.group == "not yet solved") & (h.metric == "entropy_change") & (h.step == 40)]
    assert ent["value"].mean() < 0


def test_tabular_coverage_follows_frozen_sampler():
    # formerly the oracle claim "tabular-coverage-theory": until its first correct sample a
    # problem's advantages are exactly zero, so the tabular policy samples it from the base
    task = small_task(7719, n_seeds=16, n_solved=4, n_unsolved=60, p_unsolved=0.02)
    G, steps = 4, 10
    run = train(task, arm("tabular", shared=False), steps=steps, group_size=G, lr=0.1, seed=7720)
    uns = task.group == "unsolved"
    p0 = (np.exp(run.logp0) * task.correct.numpy()).sum(-1)[:, uns]
    q = ap.base_sampler_coverage(p0, G, steps)
    z = (run.found[:, uns].sum() - q.sum()) / np.sqrt((q * (1 - q)).sum())
    assert abs(z) < 4


@pytest.mark.parametrize("shared", [True, False])
def test_zero_learning_rate_leaves_every_arm_at_the_base(shared):
    # the chapter's null configuration: lr = 0 (every arm is the base policy throughout)
    task = small_task(7731)
    for a in ap.standard_arms(ucb_c=1.0, batch_c=1.0, entropy_beta=0.1):
        a = ap.Arm(name=a.name, ucb_c=a.ucb_c, batch_c=a.batch_c, entropy_beta=a.entropy_beta, shared=shared)
        run = train(task, a, steps=5, group_size=4, lr=0.0, eval_every=1, seed=7732)
        assert np.array_equal(run.logp, run.logp0), a.name
        h = run.history
        assert (h[h.metric == "entropy_change"]["value"] == 0).all()


def test_history_is_tidy_and_complete():
    task = small_task(8123)
    run = train(task, arm("batch", batch_c=1.0), steps=6, group_size=3, lr=0.05, eval_every=3, k_max=16, seed=8124)
    h = run.history
    assert list(h.columns) == ["arm", "seed", "step", "group", "metric", "value"]
    assert sorted(h.step.unique()) == [0, 3, 6]
    assert {"solved", "unsolved", "held-out"} <= set(h.group)
    assert {"entropy", "distinct", "pass@1", "pass@16", "coverage"} <= set(h.metric)
    assert "coverage" not in set(h[h.group == "held-out"].metric)
    assert h.value.notna().all()
    start = h[(h.step == 0) & (h.metric == "entropy_change")]
    assert np.all(start.value == 0)


def test_training_is_deterministic_given_seeds():
    mixed = arm("ucb", ucb_c=1.0, batch_c=0.5, entropy_beta=0.01)
    kw = dict(steps=8, group_size=4, lr=0.05, eval_every=4)
    a = train(small_task(9901), mixed, seed=3, **kw)
    b = train(small_task(9901), mixed, seed=3, **kw)
    c = train(small_task(9901), mixed, seed=4, **kw)
    assert a.history.equals(b.history)
    assert np.array_equal(a.logp, b.logp) and np.array_equal(a.first_found, b.first_found)
    assert not np.array_equal(a.logp, c.logp)
    e1 = ap.sample_evaluation(a.logp, small_task(9901).correct.numpy(), n=16, ks=[1, 4], seed=1)
    e2 = ap.sample_evaluation(a.logp, small_task(9901).correct.numpy(), n=16, ks=[1, 4], seed=1)
    assert e1.equals(e2)


def test_standard_arms_carry_the_given_scales():
    arms = ap.standard_arms(ucb_c=0.7, batch_c=0.3, entropy_beta=0.05)
    assert [a.name for a in arms] == [
        "outcome only",
        "historical (UCB)",
        "batch",
        "entropy bonus",
        "tabular control",
    ]
    assert [(a.ucb_c, a.batch_c, a.entropy_beta, a.shared) for a in arms] == [
        (0.0, 0.0, 0.0, True),
        (0.7, 0.0, 0.0, True),
        (0.0, 0.3, 0.0, True),
        (0.0, 0.0, 0.05, True),
        (0.0, 0.0, 0.0, False),
    ]


# --- one source for every default ---------------------------------------------------------------


def test_no_engine_default_competes_with_the_spec():
    """The spec's presets are the only place a chapter parameter gets a value: no public
    function or class of the chapter's package gives a spec parameter a default."""
    names = set(SPEC.names)
    offenders = []
    for public in ap.__all__:
        obj = getattr(ap, public)
        if not callable(obj):
            continue
        for p in inspect.signature(obj).parameters.values():
            if p.name in names and p.default is not inspect.Parameter.empty:
                offenders.append(f"{public}({p.name}={p.default!r})")
    assert not offenders, offenders


def test_null_configuration_is_a_valid_parameter_set():
    P = SPEC.resolve(scale="smoke", **SPEC.null)
    assert P["lr"] == 0.0
    assert all(c.kind != "direction" or c.delta > 0 for c in SPEC.claims)  # a zero effect can never hold


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["ucb_c", "batch_c", "entropy_beta"])
def test_negative_bonus_is_refused(field):
    with pytest.raises(ValueError, match=field):
        arm("bad", **{field: -0.1})


def test_bonus_functions_refuse_negative_scales():
    with pytest.raises(ValueError, match="c must be >= 0"):
        rl.ucb_bonus(torch.zeros(1, 3), torch.zeros(1, 2, dtype=torch.long), -1.0)
    with pytest.raises(ValueError, match="coefficient"):
        rl.batch_repetition_penalty(torch.zeros(1, 3, dtype=torch.long), -1.0)


def test_group_size_below_two_is_refused():
    with pytest.raises(ValueError, match="group_size"):
        train(small_task(1), arm(), steps=2, group_size=1, lr=0.1, seed=0)
    with pytest.raises(ValueError, match="group size"):
        rl.batch_repetition_penalty(torch.zeros(2, 1, dtype=torch.long), 1.0)


def test_negative_learning_rate_is_refused():
    with pytest.raises(ValueError, match="lr"):
        train(small_task(1), arm(), steps=2, group_size=2, lr=-0.1, seed=0)


def test_k_larger_than_samples_is_refused():
    logp = random_logp(np.random.default_rng(0), (1, 2, 4))
    with pytest.raises(ValueError, match="k cannot exceed"):
        ap.sample_evaluation(logp, np.ones((1, 2, 4), bool), n=8, ks=[1, 16], seed=0)


@pytest.mark.parametrize(
    "override, name",
    [
        ({"ks": [1, 2048]}, "ks"),
        ({"group_size": 1}, "group_size"),
        ({"ucb_c": -1.0}, "ucb_c"),
        ({"batch_c": -0.5}, "batch_c"),
        ({"entropy_beta": -1.0}, "entropy_beta"),
        ({"eval_every": 10_000}, "eval_every"),
        ({"lr": -0.01}, "lr"),
    ],
)
def test_spec_refuses_bad_parameters(override, name):
    with pytest.raises(ValueError, match=name):
        SPEC.resolve(scale="smoke", **override)


def test_runner_refuses_bad_parameter_before_a_kernel_starts():
    proc = subprocess.run(
        [sys.executable, "-m", "vanishing_tails", "run", "sharpening", "--scale", "smoke", "-p", "group_size", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "group_size" in proc.stderr + proc.stdout
