"""Chapter 4's engines: the format task, corpus, classifier and checker (task.py, vocab.py);
the stacked transformers, pretraining with its checkpoint cache, the RL loop and the KL
optimum (echo.py); and the spec's one-source-of-defaults rule."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest
import torch

from vanishing_tails.core import lm, rl, tails
from vanishing_tails.core.rl import kl_regularised_optimum
from vanishing_tails.experiments.formats import analytic, echo, flip, vocab
from vanishing_tails.experiments.formats import task as fm
from vanishing_tails.experiments.formats import trajectory as trajectory_module
from vanishing_tails.experiments.formats.spec import SPEC
from vanishing_tails.experiments.formats.trajectory import trajectory


def make_task(**kw) -> fm.Task:
    base = dict(n_ops=2, max_value=19, max_operand=9, slip=0.05, code_misreads=("eats",))
    base.update(kw)
    return fm.Task(**base)


TASK = make_task()
SMALL_TASK = make_task(max_value=9, max_operand=4)
TINY = echo.ModelSize("tiny", d_model=16, n_layers=1, n_heads=2)


def tiny_cfg(**kw) -> echo.PretrainConfig:
    base = dict(
        task=SMALL_TASK,
        proportions=(0.4, 0.4, 0.2),
        size=TINY,
        n_corpus=400,
        steps=15,
        batch_size=16,
        seed=3,
    )
    base.update(kw)
    return echo.PretrainConfig(**base)


def rl_cfg(**kw) -> echo.RLConfig:
    base = dict(steps=4, batch_problems=4, group_size=4, lr=1e-3)
    base.update(kw)
    return echo.RLConfig(**base)


# ---------------------------------------------------------------------- classifier and checker
@pytest.mark.parametrize(
    "text, fmt, answer",
    [
        ("answer 9", "bare", 9),
        ("answer 9 9", "bare", None),  # trailing junk: malformed
        ("answer", "bare", None),
        ("7 plus 5 is 12 minus 3 is 9", "steps", 9),
        ("7 plus 5 is 13 minus 3 is 9", "steps", 9),  # outcome reward: only the last number counts
        ("7 plus 5 is 12 minus 3", "steps", None),  # unfinished chain
        ("7 plus 5 is 12 minus 3 is 9 answer 9", "steps", None),
        ("x = 7 + 5 - 3", "code", 9),
        ("x = 7 + 5", "code", 12),  # a dropped term is still a program
        ("x = 7", "code", 7),
        ("x = 7 + - 3", "code", None),
        ("x 7 + 5", "code", None),
        ("eats 3", "other", None),
        ("", "other", None),
        ("answer banana", "bare", None),  # unknown word
    ],
)
def test_classifier_and_checker_on_constructed_examples(text, fmt, answer):
    assert fm.classify_text(TASK, [text]) == [fmt]
    assert fm.extract_answer_text(TASK, [text]) == [answer]


def test_checker_rewards_only_the_true_answer():
    comps = fm.encode_completions(
        TASK, ["answer 9", "answer 8", "x = 4 + 5", "4 plus 3 is 7 plus 2 is 9", "4 plus 5 is 9"]
    )
    np.testing.assert_array_equal(fm.check_answers(TASK, comps, np.full(5, 9)), [1, 0, 1, 1, 0])


def test_clean_corpus_solutions_are_correct_and_parse_back():
    task = make_task(slip=0.0, code_misreads=())
    probs = fm.generate_problems(task, 500, seed=1)
    assert probs.answer.min() >= 0 and probs.answer.max() <= task.max_value
    for f in fm.FORMATS:
        sol = fm.encode_solutions(task, probs, f, rng=np.random.default_rng(0))
        assert sol.shape[1] <= task.completion_len(f)
        assert (fm.classify(task, sol) == fm.FORMATS.index(f)).all()
        np.testing.assert_array_equal(fm.extract_answers(task, sol), probs.answer)


def test_corpus_accuracy_matches_the_generated_corpus():
    task = make_task(slip=0.1, code_misreads=("eats", "finds"))
    probs = fm.generate_problems(task, 20000, seed=2)
    expect = task.corpus_accuracy(probs)
    for f in fm.FORMATS:
        sol = fm.encode_solutions(task, probs, f, rng=np.random.default_rng(5))
        got = (fm.extract_answers(task, sol) == probs.answer).mean()
        sd = np.sqrt(expect[f] * (1 - expect[f]) / len(probs))
        assert abs(got - expect[f]) < 4 * sd + 1e-3, (f, got, expect[f])
    # the generator-level formula is close to the empirical share (clipping aside)
    assert abs(task.corpus_accuracy()["code"] - expect["code"]) < 0.05


def test_code_translator_drops_exactly_the_misread_verbs():
    task = make_task(slip=0.0, code_misreads=("eats",))
    probs = fm.generate_problems(task, 2000, seed=4)
    sol = fm.encode_solutions(task, probs, "code", rng=np.random.default_rng(0))
    has = np.isin(probs.verb_words(), ["eats"]).any(axis=1)
    ok = fm.extract_answers(task, sol) == probs.answer
    assert ok[~has].all() and not ok[has].any()


def test_heldout_split_never_overlaps_pretraining():
    pre = fm.generate_problems(TASK, 3000, seed=0, split="pretrain")
    held = fm.generate_problems(TASK, 300, seed=1, split="heldout")
    assert not set(pre.key()) & set(held.key())
    data, fmt = fm.pretraining_corpus(TASK, 300, [0.5, 0.25, 0.25], seed=0)
    assert data.shape == (300, TASK.seq_len) and set(np.unique(fmt)) <= {0, 1, 2}


def test_corpus_mixture_follows_the_proportions():
    _, fmt = fm.pretraining_corpus(TASK, 6000, {"bare": 0.6, "code": 0.4}, seed=0)
    share = np.bincount(fmt, minlength=3) / len(fmt)
    assert share[1] == 0 and abs(share[0] - 0.6) < 0.03


def test_majority_vote_ignores_malformed_answers():
    M = fm.MALFORMED
    answers = np.array([[3, 3, 5, M], [M, M, M, M], [4, 5, 5, 4], [M, M, 7, 2]])
    truth = np.array([3, 1, 4, 2])
    # row 3: tie 4/5 -> smallest wins (4); row 4: tie 7/2 -> 2
    np.testing.assert_array_equal(echo._majority_correct(answers, truth), [True, False, True, True])


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: fm.check_formats(["bare", "prose"]), "formats"),
        (lambda: fm.check_proportions({"bare": 0.5, "poem": 0.5}, formats=fm.FORMATS), "proportions"),
        (lambda: fm.check_proportions([0.5, 0.4, 0.4], formats=fm.FORMATS), "proportions"),
        (lambda: fm.check_proportions([0.5, 0.5], formats=fm.FORMATS), "proportions"),
        (lambda: fm.check_proportions([1.2, -0.1, -0.1], formats=fm.FORMATS), "proportions"),
        (lambda: fm.pretraining_corpus(TASK, 10, [0.3, 0.3, 0.3], seed=0), "proportions"),
        (lambda: rl_cfg(lr=-1.0), "lr"),
        (lambda: rl_cfg(group_size=1), "group_size"),
        (lambda: analytic.format_optimum([0.5, 0.5], [0.1, 0.2], 0.0), "beta"),
        (
            lambda: analytic.bandit_pg(
                [0.5, 0.5], [0.1, 0.2], 0.1, optimiser="rmsprop", steps=1, lr=0.1, draws=4, n_chains=1, seed=0
            ),
            "optimiser",
        ),  # fmt: skip
        (lambda: rl.kl_shaped_advantages(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, 2), 0.0), "beta"),
        (lambda: make_task(code_misreads=("devours",)), "code_misreads"),
    ],
)
def test_bad_input_is_refused_naming_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.parametrize(
    "override, name",
    [
        ({"formats": ["bare", "prose", "code"]}, "formats"),
        ({"proportions": [0.5, 0.5, 0.5]}, "proportions"),
        ({"proportions": [0.5, 0.5]}, "proportions"),
        ({"betas": [0.0, 0.3]}, "betas"),
        ({"betas": [-0.1, 0.3]}, "betas"),
        ({"d_models": [32, 64, 128]}, "d_models"),
        ({"rl_steps": 10}, "rl_steps"),
        ({"rl_lr": -0.1}, "rl_lr"),
    ],
)
def test_spec_refuses_bad_parameters(override, name):
    with pytest.raises(ValueError, match=name):
        SPEC.resolve(scale="smoke", **override)


def test_runner_refuses_a_non_positive_kl_before_starting(capsys):
    from vanishing_tails.book.runner import main

    assert main(["run", "formats", "--scale", "smoke", "-p", "betas", "[0, 0.3]"]) == 2
    assert "betas" in capsys.readouterr().err


# ---------------------------------------------------------------------- the KL optimum
def test_arm_optimum_is_the_tilted_reference():
    rng = np.random.default_rng(7)
    p = rng.dirichlet(np.ones(3))
    r = rng.random(3)
    for beta in (0.05, 0.3, 2.0):
        w = p * np.exp(r / beta)
        np.testing.assert_allclose(analytic.format_optimum(p, r, beta, within_format=False), w / w.sum())


def test_sequence_optimum_closed_form_and_limits():
    rng = np.random.default_rng(8)
    p = rng.dirichlet(np.ones(3))
    a = rng.random(3)
    for beta in (0.05, 0.3, 2.0):
        w = p * (1 - a + a * np.exp(1 / beta))
        np.testing.assert_allclose(analytic.format_optimum(p, a, beta), w / w.sum())
    # beta -> 0: the reference conditioned on being correct; beta -> inf: the reference
    np.testing.assert_allclose(analytic.format_optimum(p, a, 1e-3), p * a / (p * a).sum(), atol=1e-6)
    np.testing.assert_allclose(analytic.format_optimum(p, a, 1e4), p, atol=1e-4)


def test_sequence_optimum_maximises_the_regularised_objective():
    """Brute force over the (format, correct) outcome space: no random perturbation of the
    closed form does better on E[r] - beta KL(p || p_ref)."""
    rng = np.random.default_rng(9)
    p_ref = rng.dirichlet(np.ones(3))
    a = rng.uniform(0.1, 0.9, 3)
    beta = 0.4
    out_ref = np.concatenate([p_ref * a, p_ref * (1 - a)])
    reward = np.r_[np.ones(3), np.zeros(3)]
    best = kl_regularised_optimum(out_ref, reward, beta)

    def objective(q):
        return q @ reward - beta * np.sum(q * np.log(q / out_ref))

    f_best = objective(best)
    for _ in range(200):
        q = best * np.exp(0.3 * rng.standard_normal(6))
        assert objective(q / q.sum()) <= f_best + 1e-12
    np.testing.assert_allclose(best[:3] + best[3:], analytic.format_optimum(p_ref, a, beta))


# the format bandit under three optimisers, each against its oracle path (fresh seeds, not 0/1/31/47)
BANDIT_P = np.array([0.5, 0.3, 0.2])
BANDIT_ACC = np.array([0.3, 0.5, 0.7])


def _mean_path(frame):
    """Mean share over chains and its standard error, [steps + 1, F] each (FORMATS order)."""
    g = frame.groupby(["step", "format"])["share"]
    mean = g.mean().unstack()[list(fm.FORMATS)].to_numpy()
    se = (g.std() / np.sqrt(frame.chain.nunique())).unstack()[list(fm.FORMATS)].to_numpy()
    return mean, se


def test_softmax_pg_rate_is_the_chain_rule_through_the_softmax():
    """ṗ = η p ⊙ (p ⊙ d − Σ p² d): a small logit step along ∂J/∂θ moves the shares by it."""
    rng = np.random.default_rng(2025)
    for beta in (0.0, 0.3):
        p_ref, p = rng.dirichlet(np.ones(4), size=2)
        r = rng.random(4)
        g = analytic.objective_gradient(p, p_ref, r, beta)
        h = 1e-6
        q = np.exp(np.log(p) + h * g)
        np.testing.assert_allclose((q / q.sum() - p) / h, analytic.softmax_pg_rate(p, p_ref, r, beta), atol=1e-6)
        # ... which is not the replicator / exponential-weights rate p_j (r_j - r̄) at beta = 0
        if beta == 0:
            assert not np.allclose(analytic.softmax_pg_rate(p, p_ref, r, 0.0), p * (r - p @ r), atol=1e-3)


def test_exponential_weights_is_a_path_of_kl_optima():
    """Each point of the natural-gradient path is the KL optimum at beta_t = beta / (1 - (1 - lr beta)^t)."""
    lr, beta = 0.1, 0.2
    path = analytic.exponential_weights(BANDIT_P, BANDIT_ACC, beta, lr=lr, steps=np.array([5, 50, 5000]))
    for row, t in zip(path, (5, 50, 5000)):
        beta_t = beta / (1 - (1 - lr * beta) ** t)
        np.testing.assert_allclose(row, analytic.format_optimum(BANDIT_P, BANDIT_ACC, beta_t, within_format=False))


@pytest.mark.parametrize(
    "optimiser, lr, draws, steps",
    [("sgd", 1.0, 256, 300), ("natural", 0.1, 256, 300), ("adam", 0.02, 4096, 200)],
)
def test_bandit_chains_follow_their_oracle_path(optimiser, lr, draws, steps):
    """The library's RL loss with sampled formats and rewards, averaged over independent chains,
    follows the optimiser's deterministic path: the softmax policy-gradient ODE (SGD), exponential
    weights in closed form (natural gradient), Adam on the exact gradient (Adam; its noise-free
    limit, hence many draws). The expected gradient of the group-centred loss is (1 - 1/D) ∇J."""
    beta, chains = 0.1, 24
    frame = analytic.bandit_pg(
        BANDIT_P, BANDIT_ACC, beta, optimiser=optimiser, steps=steps, lr=lr, draws=draws, n_chains=chains, seed=2026
    )
    mean, se = _mean_path(frame)
    t = np.arange(steps + 1)
    eff = lr * (1 - 1 / draws)
    oracle = {
        "sgd": lambda: analytic.softmax_pg_path(BANDIT_P, BANDIT_ACC, beta, times=eff * t),
        "natural": lambda: analytic.exponential_weights(BANDIT_P, BANDIT_ACC, beta, lr=eff, steps=t),
        "adam": lambda: analytic.adam_flow(BANDIT_P, BANDIT_ACC, beta, lr=lr, steps=steps),
    }[optimiser]()
    assert (np.abs(mean - oracle) <= 5 * se + 0.005).all(), np.abs(mean - oracle).max()


def test_adam_moves_every_logit_by_the_learning_rate_at_first():
    """Adam's first (bias-corrected) step is lr · sign(g) for every logit, whatever the shares:
    the rare format's logit moves as fast as the common one's, unlike vanilla policy gradient."""
    lr = 0.05
    path = analytic.adam_flow(BANDIT_P, BANDIT_ACC, 0.1, lr=lr, steps=1)
    step = np.log(path[1]) - np.log(path[0])
    step -= step.mean()
    sign = np.sign(BANDIT_ACC - BANDIT_P @ BANDIT_ACC)
    np.testing.assert_allclose(step, lr * (sign - sign.mean()), atol=1e-6)


def test_vanilla_policy_gradient_is_slower_for_a_rare_format_than_exponential_weights():
    """The corrected statement: a rare best format grows with its squared share under softmax PG,
    so at equal time it holds less than on the exponential-weights path (and both end at the optimum)."""
    p_ref, acc = np.array([0.6, 0.35, 0.05]), np.array([0.3, 0.4, 0.8])
    times = np.array([0.0, 2.0, 5.0])
    pg = analytic.softmax_pg_path(p_ref, acc, 0.0, times=times)
    ew = analytic.exponential_weights(p_ref, acc, 0.0, lr=1.0, steps=times)
    assert (pg[1:, 2] < ew[1:, 2] - 0.05).all()
    late = analytic.softmax_pg_path(p_ref, acc, 0.05, times=np.array([0.0, 5000.0]))[-1]
    np.testing.assert_allclose(late, analytic.format_optimum(p_ref, acc, 0.05, within_format=False), atol=1e-3)


@pytest.mark.parametrize("optimiser, lr", [("sgd", 2.0), ("natural", 0.05), ("adam", 0.01)])
@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_bandit_settles_on_the_optimum(optimiser, lr, beta):
    """Every optimiser's fixed point is p_ref exp(r/beta)/Z (mean over chains and the last quarter)."""
    frame = analytic.bandit_pg(
        BANDIT_P, BANDIT_ACC, beta, optimiser=optimiser, steps=1200, lr=lr, draws=256, n_chains=8, seed=2027
    )
    tail = frame[frame.step >= 900].groupby("format")["share"].mean().reindex(fm.FORMATS)
    np.testing.assert_allclose(
        tail.to_numpy(), analytic.format_optimum(BANDIT_P, BANDIT_ACC, beta, within_format=False), atol=0.02
    )


def test_group_centred_kl_shaped_advantages():
    logp = torch.tensor([-1.0, -2.0, -1.5, -0.5], requires_grad=True)
    ref = torch.tensor([-1.0, -2.0, -1.0, -1.0])
    r = torch.tensor([1.0, 1.0, 0.0, 1.0])
    adv, log_ratio = rl.kl_shaped_advantages(logp.view(2, 2), ref.view(2, 2), r.view(2, 2), 0.5)
    loss = rl.policy_gradient_loss(logp.view(2, 2), adv)
    torch.testing.assert_close(log_ratio.reshape(-1), torch.tensor([0.0, 0.0, -0.5, 0.5]))
    loss.backward()
    # group 1: equal shaped rewards -> no gradient; group 2: shaped (0.25, 0.75) -> A = (-0.25, 0.25)
    torch.testing.assert_close(logp.grad, torch.tensor([0.0, 0.0, 0.25, -0.25]) / 4)


@pytest.mark.parametrize("beta", [0.3, np.inf])
def test_per_prompt_optimum_keeps_leading_axes(beta):
    """format_optimum works along the last axis: a [models, prompts, F] array gives the
    optimum of every prompt (to be averaged after), and beta = inf returns the reference."""
    rng = np.random.default_rng(10)
    p = rng.dirichlet(np.ones(3), size=(2, 5))
    a = rng.random((2, 5, 3))
    got = analytic.format_optimum(p, a, beta)
    for i in range(2):
        for j in range(5):
            np.testing.assert_allclose(got[i, j], analytic.format_optimum(p[i, j], a[i, j], beta))
    if np.isinf(beta):
        np.testing.assert_allclose(got, p)


# ---------------------------------------------------------------------- the stacked transformer
def _tiny_stack(n=2, seed=0, size=TINY, task=SMALL_TASK):
    states = [
        lm.build_model(
            "transformer",
            len(task.vocab),
            seed=seed + i,
            d_model=size.d_model,
            n_layers=size.n_layers,
            n_heads=size.n_heads,
            max_len=task.seq_len,
        ).state_dict()
        for i in range(n)
    ]
    return echo.Stack.from_state_dicts(states, size)


@pytest.mark.parametrize("size", [TINY, echo.ModelSize("two layers", 24, 2, 4)])
def test_stack_computes_what_each_tiny_transformer_computes(size):
    stack = _tiny_stack(3, size=size)
    tokens = torch.randint(
        1, len(SMALL_TASK.vocab), (3, 5, SMALL_TASK.seq_len), generator=torch.Generator().manual_seed(0)
    )
    logits = stack.logits(tokens)
    for i in range(3):
        torch.testing.assert_close(logits[i], stack.model(i)(tokens[i]), atol=1e-5, rtol=1e-5)


def test_shared_prompts_and_incremental_decoding_equal_the_full_forward_pass():
    stack = _tiny_stack(2, size=echo.ModelSize("two layers", 24, 2, 4))
    task = SMALL_TASK
    P, L, G = task.prompt_len, task.max_completion_len, 3
    gen = torch.Generator().manual_seed(1)
    prompts = fm.encode_prompts(task, fm.generate_problems(task, 4, seed=0)).unsqueeze(0).expand(2, -1, -1)
    comp = torch.randint(3, len(task.vocab), (2, 4 * G, L), generator=gen)
    full = stack.logits(torch.cat([prompts.repeat_interleave(G, 1), comp], -1)[..., :-1])[:, :, P - 1 :]
    torch.testing.assert_close(stack.completion_logits(prompts, comp, G), full, atol=1e-5, rtol=1e-5)
    logits, state = stack.init_state(prompts, G, room=L)
    steps = [logits]
    for t in range(L - 1):
        logits, state = stack.step(comp[..., t], state)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 2), full, atol=1e-5, rtol=1e-5)


def test_sampler_follows_the_probabilities_and_never_draws_an_impossible_token():
    """The inverse-CDF sampler: empirical frequencies match the softmax within 5 standard
    errors, a token of probability 0 is never drawn, and a replica's draws depend only on
    its own generator."""

    class Fixed:
        params = {"embed": torch.zeros(2, 5, 1)}
        device = torch.device("cpu")
        probs = torch.tensor([[0.5, 0.3, 0.2, 0.0, 0.0], [0.0, 0.1, 0.0, 0.9, 0.0]])

        def __len__(self):
            return 2

        def init_state(self, prefix, group, room=0):
            return self.probs.log().unsqueeze(1).expand(2, prefix.shape[1] * group, 5), None

    n = 20000

    def draw(seeds):
        gens = [torch.Generator().manual_seed(i) for i in seeds]
        return echo.sample(
            Fixed(), torch.zeros(2, 1, 1, dtype=torch.long), 1, generators=gens, eos_id=99, pad_id=0, group=n
        )

    seq = draw((0, 1))
    for m in range(2):
        freq = torch.bincount(seq[m, :, -1], minlength=5).double() / n
        p = Fixed.probs[m].double()
        assert (freq[p == 0] == 0).all()
        assert ((freq - p).abs() <= 5 * (p * (1 - p) / n).sqrt() + 1e-12).all()
    alone = draw((0, 7))
    assert torch.equal(alone[0], seq[0]) and not torch.equal(alone[1], seq[1])


def test_per_replica_clipping_is_clip_grad_norm_of_each_replica():
    from vanishing_tails.core.optim import clip_grad_norm_per_replica

    grads = [torch.randn(3, 4, 5), torch.randn(3, 7)]
    grads[0][1] *= 1e-3  # replica 1 is below the norm: untouched
    params = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    clip_grad_norm_per_replica(params, 1.0)
    for m in range(3):
        ref = [torch.zeros_like(g[m], requires_grad=True) for g in grads]
        for p, g in zip(ref, grads):
            p.grad = g[m].clone()
        torch.nn.utils.clip_grad_norm_(ref, 1.0)
        for p, r in zip(params, ref):
            torch.testing.assert_close(p.grad[m], r.grad)


# ---------------------------------------------------------------------- pretraining and cache
def _weights(stack: echo.Stack, i: int = 0) -> torch.Tensor:
    return torch.cat([v.flatten() for v in stack.state_dict(i).values()])


def test_pretraining_is_deterministic_and_independent_of_the_stack():
    """A model's weights depend on its own config only: the same alone or stacked with others,
    in any position (odd sizes, so that vectorised kernels have scalar tails whose rounding
    could differ with the stack's length)."""
    odd = echo.ModelSize("odd", 12, 1, 2)
    cfgs = [tiny_cfg(size=odd, seed=s) for s in (3, 4, 5)]
    three, _ = echo.pretrain(cfgs, cache_dir=False)
    two, _ = echo.pretrain(cfgs[:2], cache_dir=False)
    alone, _ = echo.pretrain(cfgs[2:], cache_dir=False)
    assert torch.equal(_weights(three, 0), _weights(two, 0))
    assert torch.equal(_weights(three, 1), _weights(two, 1))
    assert torch.equal(_weights(three, 2), _weights(alone, 0))
    assert not torch.equal(_weights(three, 0), _weights(three, 1))


def test_pretraining_trains_what_lm_train_lm_trains():
    """Same initial weights, corpus and minibatches as the single-model trainer: the first
    step's loss agrees, and the weights after it agree to float rounding (Adam's first step
    divides by |g|, which magnifies rounding in the smallest gradients)."""
    cfg = tiny_cfg(steps=1)
    stack, info = echo.pretrain([cfg], cache_dir=False)
    init, corpus, batches = cfg.streams()
    model = lm.build_model(
        "transformer", len(cfg.task.vocab), seed=init, d_model=16, n_layers=1, n_heads=2, max_len=cfg.task.seq_len
    )
    data, _ = fm.pretraining_corpus(cfg.task, cfg.n_corpus, cfg.proportions, seed=corpus)
    log = lm.train_lm(model, data, steps=1, batch_size=cfg.batch_size, lr=cfg.lr, seed=batches)
    assert info[0]["loss"] == pytest.approx(float(log.loss.iloc[-1]), rel=1e-6)
    mine = stack.state_dict(0)
    for key, value in model.state_dict().items():
        assert (value - mine[key]).abs().max() < 1e-3, key


def test_cache_returns_identical_weights_and_is_keyed_on_config(tmp_path):
    cfg = tiny_cfg()
    fresh, info = echo.pretrain([cfg], cache_dir=tmp_path)
    assert not info[0]["cached"] and (tmp_path / f"{info[0]['key']}.pt").exists()
    again, info2 = echo.pretrain([cfg, tiny_cfg(seed=4)], cache_dir=tmp_path)
    assert info2[0]["cached"] and not info2[1]["cached"] and info2[0]["key"] == info[0]["key"]
    assert torch.equal(_weights(fresh), _weights(again))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{i['key']}.pt" for i in info2)  # no temporary files
    # every ingredient of the weights changes the key; the label of the size does not
    keys = {
        cfg.key(),
        tiny_cfg(steps=16).key(),
        tiny_cfg(seed=4).key(),
        tiny_cfg(lr=1e-3).key(),
        tiny_cfg(proportions=(0.2, 0.4, 0.4)).key(),
        tiny_cfg(size=echo.ModelSize("tiny", 16, 2, 2)).key(),
        tiny_cfg(task=make_task(max_value=9, max_operand=4, slip=0.2)).key(),
        tiny_cfg(task=make_task(max_value=9, max_operand=4, code_misreads=())).key(),
        cfg.key("cuda"),
    }
    assert len(keys) == 9
    assert tiny_cfg(size=echo.ModelSize("other name", 16, 1, 2)).key() == cfg.key()


def test_a_snapshot_is_the_shorter_budget_bit_for_bit(tmp_path):
    """A constant learning rate makes a shorter budget a prefix of a longer one: the weights
    a long run leaves in the cache at a snapshot equal a run trained for that many steps."""
    long_cfg, short_cfg = tiny_cfg(steps=12), tiny_cfg(steps=5)
    _, info = echo.pretrain([long_cfg], cache_dir=tmp_path, snapshots=(5, 12, 40))
    assert (tmp_path / f"{short_cfg.key()}.pt").exists() and len(list(tmp_path.iterdir())) == 2
    served, served_info = echo.pretrain([short_cfg], cache_dir=tmp_path)
    trained, trained_info = echo.pretrain([short_cfg], cache_dir=False)
    assert served_info[0]["cached"] and not trained_info[0]["cached"]
    assert torch.equal(_weights(served), _weights(trained))
    assert served_info[0]["loss"] == trained_info[0]["loss"]


def test_the_cache_key_covers_the_vocabulary_and_the_trainer():
    files = {p.name for p in echo._code_files()}
    assert {"task.py", "vocab.py", "echo.py", "lm.py"} <= files
    assert any(p.samefile(vocab.__file__) for p in echo._code_files())


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(echo.CACHE_ENV, str(tmp_path / "ckpt"))
    assert echo.default_cache_dir() == tmp_path / "ckpt"
    monkeypatch.delenv(echo.CACHE_ENV)
    (tmp_path / "chapters").mkdir()
    monkeypatch.setenv("VANISHING_TAILS_ROOT", str(tmp_path))
    assert echo.default_cache_dir() == tmp_path / "_build" / "cache" / "checkpoints"


def test_a_corrupt_cache_file_is_retrained(tmp_path):
    cfg = tiny_cfg()
    (tmp_path / f"{cfg.key()}.pt").write_bytes(b"not a checkpoint")
    stack, info = echo.pretrain([cfg], cache_dir=tmp_path)
    assert not info[0]["cached"]
    ref, _ = echo.pretrain([cfg], cache_dir=False)
    assert torch.equal(_weights(stack), _weights(ref))


# ---------------------------------------------------------------------- sampling and RL
@pytest.fixture(scope="module")
def tiny_refs():
    """Two tiny models trained long enough to be right now and then (so rewards vary)."""
    stack, _ = echo.pretrain(
        [tiny_cfg(steps=300, n_corpus=3000), tiny_cfg(steps=300, n_corpus=3000, seed=4)], cache_dir=False
    )
    return stack


def test_rl_run_records_every_quantity_and_leaves_the_reference_untouched(tiny_refs):
    task = SMALL_TASK
    before = _weights(tiny_refs).clone()
    probs = fm.generate_problems(task, 12, seed=0, split="heldout")
    steps, policy = echo.rl_run(task, tiny_refs, probs, rl_cfg(), betas=[0.1, 0.1], seeds=[0, 1])
    assert torch.equal(_weights(tiny_refs), before) and not torch.equal(_weights(policy), before)
    w = echo.wide(steps, ["replica", "step", "epoch"])
    np.testing.assert_allclose(w[w.replica == 0].epoch, [0, 1 / 3, 2 / 3, 1])
    probs_sum = w[[f"p_{f}" for f in (*fm.FORMATS, fm.OTHER)]].sum(axis=1)
    np.testing.assert_allclose(probs_sum, 1.0, atol=1e-5)
    for q in ("pass@1", "pass@4", "maj@4", "kl", "share_code", "acc_bare"):
        assert q in w.columns
    assert (w["pass@4"] >= w["pass@1"] - 1e-12).all()
    ev = echo.evaluate(task, policy, probs, samples=4, seeds=[0, 0], subsets={"first half": np.arange(12) < 6})
    assert len(ev.rows) == 2 and {"pass@4", "first half/pass@4", "p_steps"} <= set(ev.rows[0])
    # the correct mass per format adds up to pass@1, and never exceeds the format's share
    for m, row in enumerate(ev.rows):
        assert ev.correct_mass[m].sum(-1).mean() == pytest.approx(row["pass@1"])
        assert ev.correct_mass.shape == (2, 12, 3) and ev.p_format.shape == (2, 12, 4)


def test_a_replica_does_not_depend_on_the_others_in_its_stack(tiny_refs):
    probs = fm.generate_problems(SMALL_TASK, 12, seed=0, split="heldout")
    both, pol = echo.rl_run(
        SMALL_TASK, tiny_refs.take([0, 1, 0]), probs, rl_cfg(), betas=[0.1, 0.5, 0.3], seeds=[5, 6, 7]
    )
    for m, (ref, beta, seed) in enumerate([(0, 0.1, 5), (0, 0.3, 7)]):
        alone, pol1 = echo.rl_run(SMALL_TASK, tiny_refs.take([ref]), probs, rl_cfg(), betas=[beta], seeds=[seed])
        a = echo.wide(both[both.replica == 2 * m], ["step"])
        b = echo.wide(alone, ["step"])
        np.testing.assert_array_equal(a.drop(columns="step").to_numpy(), b.drop(columns="step").to_numpy())
        assert torch.equal(_weights(pol, 2 * m), _weights(pol1, 0))


def test_zero_learning_rate_leaves_the_policy_at_the_reference(tiny_refs):
    """The chapter's null control: with lr = 0 RL cannot move the model (KL exactly 0)."""
    probs = fm.generate_problems(SMALL_TASK, 12, seed=0, split="heldout")
    steps, policy = echo.rl_run(SMALL_TASK, tiny_refs, probs, rl_cfg(lr=0.0), betas=[0.02, 0.02], seeds=[0, 1])
    for i in range(2):
        assert torch.equal(_weights(policy, i), _weights(tiny_refs, i))
    assert (steps[steps.quantity == "kl"].value == 0).all()


# ---------------------------------------------------------------------- one source for every default
def _public_callables():
    for mod in (echo, analytic, fm, vocab, trajectory_module, flip):
        for name, obj in vars(mod).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            if inspect.isfunction(obj):
                yield f"{mod.__name__}.{name}", obj
            elif inspect.isclass(obj):
                yield f"{mod.__name__}.{name}", obj
                for meth_name, meth in vars(obj).items():
                    if inspect.isfunction(meth) and not meth_name.startswith("_"):
                        yield f"{mod.__name__}.{name}.{meth_name}", meth


# the spec's parameters under the names the engines use for the same values
SAME_MEANING = {
    "steps": "pretrain_steps / rl_steps",
    "batch_size": "pretrain_batch",
    "lr": "rl_lr",
    "samples": "eval_samples",
}


def test_no_engine_default_competes_with_the_spec():
    """The spec's presets are the only place a size or coefficient is set: no public
    function or class of the chapter's package gives a default to a spec parameter (or to
    a name that means one), so the chapter must pass ``P[...]`` explicitly."""
    spec_names = ({p.name for p in SPEC.params} | set(SAME_MEANING)) - {"device"}  # device="cpu" may stay
    # learning rates that are not the chapter's: pretraining's, and the illustrative bandit's
    allowed = {("echo.PretrainConfig", "lr"), ("analytic.bandit_pg", "lr")}
    bad = []
    for qual, fn in _public_callables():
        for p in inspect.signature(fn).parameters.values():
            if p.name in spec_names and p.default is not inspect.Parameter.empty:
                if (qual.split("formats.")[-1], p.name) not in allowed:
                    bad.append(f"{qual}({p.name}={p.default!r})")
    assert not bad, f"defaults that compete with the spec's presets: {bad}"


def test_the_spec_declares_every_claim_with_a_null_that_freezes_rl():
    assert SPEC.null["rl_lr"] == 0.0
    P = SPEC.resolve(scale="smoke", **SPEC.null)
    assert P["d_models"][0] == P["d_models"][1] and P["n_layers"][0] == P["n_layers"][1]
    kinds = {c.id: c.kind for c in SPEC.claims}
    assert "bandit-optimum" not in kinds and "same-winner" not in kinds  # a unit test; not tested at this budget
    assert {c.id for c in SPEC.claims if c.expected == "fails"} == {"strong-kl-keeps-pass-at-k"}


# ---------------------------------------------------------------------- the common trajectory (chapter 10)
TRAJ_TINY = dict(
    n_pretrain=3, betas=[0.02, 0.3], proportions=[0.4, 0.4, 0.2], n_ops=2, max_value=9, max_operand=4, slip=0.05,
    code_misreads=["eats"], d_model=16, n_layers=1, n_heads=2, pretrain_steps=150, pretrain_batch=32,
    n_corpus=2000, n_rl=40, rl_steps=10, batch_problems=4, group_size=8, rl_lr=3e-3, n_probe=32, q=0.2, seed=0,
)  # fmt: skip


@pytest.fixture(scope="module")
def traj_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("traj-ckpt")


@pytest.fixture(scope="module")
def traj(traj_cache):
    return trajectory(**TRAJ_TINY, cache_dir=traj_cache)


def test_trajectory_has_the_common_columns_and_ranges(traj):
    assert list(traj.columns) == ["experiment", "arm", "replicate", "step", "mechanism", *tails.COLUMNS]
    assert set(traj.experiment) == {"formats"} and set(traj.mechanism) <= set(tails.MECHANISMS)
    assert set(traj.arm) == {"beta=0.02", "beta=0.3"}
    assert sorted(traj.replicate.unique()) == [0, 1, 2]
    assert sorted(traj.step.unique()) == list(range(TRAJ_TINY["rl_steps"]))
    assert len(traj) == 2 * 3 * TRAJ_TINY["rl_steps"]
    assert (traj.support >= 0).all() and (traj.q_tail_mass >= 0).all() and (traj.kl_from_start >= 0).all()
    for col in ("error_mass", "mode_share", "quality"):
        assert traj[col].between(0, 1).all(), col
    assert (traj[traj.step == 0].kl_from_start.abs() < 1e-12).all()
    # RL moves the format shares away from the pretrained model's
    assert traj[traj.step == traj.step.max()].kl_from_start.mean() > 1e-3
    # both arms of a replicate start from the same pretrained model
    first = traj[traj.step == 0].set_index(["replicate", "arm"]).mode_share.unstack("arm")
    np.testing.assert_allclose(first["beta=0.02"], first["beta=0.3"])


def test_trajectory_is_reproducible_from_the_cache_and_without_it(traj, traj_cache):
    again = trajectory(**TRAJ_TINY, cache_dir=traj_cache)  # the pretrained models come from the cache
    pd.testing.assert_frame_equal(traj, again)
    fresh = trajectory(**{**TRAJ_TINY, "n_pretrain": 1}, cache_dir=False)  # retrained: the same first model
    pd.testing.assert_frame_equal(fresh, traj[traj.replicate == 0].reset_index(drop=True))


def test_trajectory_null_leaves_the_tail_measures_in_place():
    """rl_lr = 0: the policy never leaves the pretrained model, so no tail column moves."""
    null = trajectory(**{**TRAJ_TINY, "rl_lr": 0.0, "n_pretrain": 2}, cache_dir=False)
    moved = null.groupby(["arm", "replicate"])[["support", "q_tail_mass", "error_mass", "mode_share"]].agg(np.ptp)
    assert (moved.to_numpy() == 0).all()
    assert (null.kl_from_start == 0).all()


# ---------------------------------------------------------------------- the winner-flip sweep
FLIP_TINY = dict(
    n_pretrain=2, seed=5, pretrain_batch=16, n_corpus=500, n_rl=24, n_eval=16, eval_samples=8, batch_problems=4,
    group_size=4, rl_lr=3e-3,
)  # fmt: skip


def test_steps_mixture_keeps_code_and_refuses_a_share_that_leaves_bare_negative():
    np.testing.assert_allclose(flip.steps_mixture([0.4, 0.4, 0.2], 0.7), [0.1, 0.7, 0.2])
    np.testing.assert_allclose(flip.steps_mixture([0.4, 0.4, 0.2], 0.4), [0.4, 0.4, 0.2])
    with pytest.raises(ValueError, match="flip_steps_shares"):
        flip.steps_mixture([0.4, 0.4, 0.2], 0.9)
    # the sweep's cell at the chapter's own mixture names the chapter's checkpoints (0.6 - 0.2 != 0.4)
    same = flip.steps_mixture([0.4, 0.4, 0.2], 0.4)
    assert tiny_cfg(proportions=tuple(same)).key() == tiny_cfg(proportions=(0.4, 0.4, 0.2)).key()
    with pytest.raises(ValueError, match="flip_steps_shares"):
        SPEC.resolve(scale="smoke", flip_steps_shares=[0.9])
    with pytest.raises(ValueError, match="flip_n_rl"):
        SPEC.resolve(scale="smoke", flip_n_rl=40)  # a pass of 3 steps: too short to average the last five


@pytest.fixture(scope="module")
def flip_sweep():
    mixes = [flip.steps_mixture([0.4, 0.4, 0.2], x) for x in (0.4, 0.7)]
    return flip.winner_flip(SMALL_TASK, mixes, [10, 30], TINY, 0.02, **FLIP_TINY, cache_dir=False)


def test_winner_flip_has_one_row_per_model_and_cell(flip_sweep):
    df = flip_sweep
    assert len(df) == 2 * 2 * 2
    assert sorted(set(zip(df.pretrain_steps, df.steps_share, df.pretrain))) == sorted(
        (b, x, j) for b in (10, 30) for x in (0.4, 0.7) for j in range(2)
    )
    shares = df[[f"share_{f}" for f in fm.FORMATS]].to_numpy()
    assert ((shares >= 0) & (shares <= 1)).all() and (shares.sum(1) <= 1 + 1e-9).all()
    np.testing.assert_array_equal(df.winner, np.array(fm.FORMATS)[shares.argmax(1)])
    np.testing.assert_allclose(df.winner_share, shares.max(1))
    assert set(df.most_accurate) <= set(fm.FORMATS)


def test_winner_flip_repeats_the_chapter_experiment_and_ignores_the_rest_of_the_grid(flip_sweep, monkeypatch):
    """A cell is the chapter's experiment at that budget and mixture (same streams): its
    accuracy before RL and its first-pass shares are those of echo.experiment, and they do
    not depend on which other cells share the stacks."""
    mix = flip.steps_mixture([0.4, 0.4, 0.2], 0.7)
    alone = flip.winner_flip(SMALL_TASK, [mix], [30], TINY, 0.02, **FLIP_TINY, cache_dir=False)
    cell = flip_sweep[(flip_sweep.pretrain_steps == 30) & (flip_sweep.steps_share == 0.7)].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone.drop(columns="mixture"), cell.drop(columns="mixture"))
    spp = FLIP_TINY["n_rl"] // FLIP_TINY["batch_problems"]
    res = echo.experiment(
        SMALL_TASK, mix, [TINY], [0.02], n_seeds=1, pretrain_steps=30, rl_steps=spp, cache_dir=False,
        **{k: v for k, v in FLIP_TINY.items() if k != "seed"}, seed=FLIP_TINY["seed"],
    )  # fmt: skip
    w = echo.wide(res["steps"], ["pretrain", "step"])
    late = w[w.step >= spp - flip.LAST].groupby("pretrain")[[f"p_{f}" for f in fm.FORMATS]].mean()
    np.testing.assert_allclose(cell[[f"share_{f}" for f in fm.FORMATS]].to_numpy(), late.to_numpy())
    ev = echo.wide(res["evals"], ["pretrain", "when"])
    acc = ev[ev.when == "before"].sort_values("pretrain")[[f"acc_{f}" for f in fm.FORMATS]].to_numpy()
    np.testing.assert_allclose(cell[[f"acc_{f}" for f in fm.FORMATS]].to_numpy(), acc)
    # so the sweep reads such cells from the chapter instead of running them again: the same
    # numbers bit for bit, and no RL run; a chapter run with other settings is not read
    runs = []
    real = echo.rl_run
    monkeypatch.setattr(echo, "rl_run", lambda *a, **k: runs.append(1) or real(*a, **k))
    reread = flip.winner_flip(SMALL_TASK, [mix], [30], TINY, 0.02, **FLIP_TINY, cache_dir=False, chapter=res)
    pd.testing.assert_frame_equal(reread, alone, check_exact=True)
    assert runs == []
    other = flip.winner_flip(
        SMALL_TASK, [mix], [30], TINY, 0.02, **{**FLIP_TINY, "rl_lr": 1e-3}, cache_dir=False, chapter=res
    )
    assert runs == [1] and len(other) == len(alone)


def test_the_chapter_pretrains_the_sweeps_models_in_its_stack(tmp_path):
    """also_pretrain: the sweep's configurations at the chapter's budget join the chapter's
    stack and land in the cache; the chapter's own models are those of a run without them."""
    mixes = [flip.steps_mixture([0.4, 0.4, 0.2], x) for x in (0.4, 0.7)]
    kw = {k: v for k, v in FLIP_TINY.items() if k not in ("seed", "n_pretrain")}
    extra = flip.pretrain_configs(SMALL_TASK, mixes, [10, 30], TINY, n_pretrain=2, seed=5, pretrain_batch=16,
                                  n_corpus=500)  # fmt: skip
    assert {c.steps for c in extra} == {30} and len({c.key() for c in extra}) == 4
    run = dict(n_seeds=1, n_pretrain=1, pretrain_steps=30, rl_steps=3, seed=5, **kw)
    res = echo.experiment(SMALL_TASK, mixes[0], [TINY], [0.02], **run, cache_dir=tmp_path, also_pretrain=extra)
    plain = echo.experiment(SMALL_TASK, mixes[0], [TINY], [0.02], **run, cache_dir=False)
    pd.testing.assert_frame_equal(res["steps"], plain["steps"], check_exact=True)
    assert all((tmp_path / f"{c.key()}.pt").exists() for c in extra)
    _, infos = echo.pretrain(extra, cache_dir=tmp_path)
    assert all(i["cached"] for i in infos)


def test_flip_summary_reads_a_flip_and_its_absence():
    """The sweep's reading: a cell winner that changes with the budget is a flip, told in
    words; a sweep where one format always wins has none; counts come from the rows."""
    rows = []
    for b, winner in ((100, "code"), (400, "steps")):
        for j in range(3):
            acc = {"bare": 0.2, "steps": 0.5 if winner == "steps" else 0.1, "code": 0.3 + 0.01 * j}
            rows.append({"pretrain_steps": b, "steps_share": 0.4, "pretrain": j, "winner": winner,
                         "most_accurate": max(acc, key=acc.get), **{f"acc_{f}": a for f, a in acc.items()},
                         **{f"share_{f}": 0.9 if f == winner else 0.05 for f in fm.FORMATS}})  # fmt: skip
    sweep = pd.DataFrame(rows)
    read = flip.summarise(sweep, 3)
    assert read["flips"] == ["with steps at 40% of the corpus the winner goes code (100 steps) → steps (400 steps)"]
    assert read["agree"] == 6 and read["n_models"] == 6
    assert read["best_cell"]["pretraining steps"] == 400 and read["best_gap"].estimate > 0
    assert list(read["table"].index) == [(100, 0.4), (400, 0.4)]
    assert read["verdict"].startswith("So at these sizes the pretraining budget does move the winner")
    same = flip.summarise(sweep.assign(winner="code", most_accurate="code"), 3)
    assert same["flips"] == [] and "winner" in same["verdict"]
    assert flip.in_words(["a"]) == "a" and flip.in_words(["a", "b", "c"]) == "a, b and c"
