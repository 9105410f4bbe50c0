"""Chapter 4's engines: the format corpus, classifier and checker (formats.py); pretraining
with its checkpoint cache, the RL loop and the KL optimum (echo.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vanishing_tails.core import lm
from vanishing_tails.experiments.formats import echo
from vanishing_tails.experiments.formats import task as fm
from vanishing_tails.core.rl import kl_regularised_optimum
from vanishing_tails.experiments.formats.spec import SPEC

TASK = fm.Task()  # n_ops=2, max_value=14/19 family, drops "eats" in code
TINY = echo.ModelSize("tiny", d_model=16, n_layers=1, n_heads=2)


def tiny_cfg(**kw) -> echo.PretrainConfig:
    base = dict(task=fm.Task(max_value=9, max_operand=4), proportions=(0.4, 0.4, 0.2), size=TINY,
                n_corpus=400, steps=15, batch_size=16, seed=3)
    base.update(kw)
    return echo.PretrainConfig(**base)


# ---------------------------------------------------------------------- classifier and checker
@pytest.mark.parametrize("text, fmt, answer", [
    ("answer 9", "bare", 9),
    ("answer 9 9", "bare", None),                      # trailing junk: malformed
    ("answer", "bare", None),
    ("7 plus 5 is 12 minus 3 is 9", "steps", 9),
    ("7 plus 5 is 13 minus 3 is 9", "steps", 9),       # outcome reward: only the last number counts
    ("7 plus 5 is 12 minus 3", "steps", None),         # unfinished chain
    ("7 plus 5 is 12 minus 3 is 9 answer 9", "steps", None),
    ("x = 7 + 5 - 3", "code", 9),
    ("x = 7 + 5", "code", 12),                         # a dropped term is still a program
    ("x = 7", "code", 7),
    ("x = 7 + - 3", "code", None),
    ("x 7 + 5", "code", None),
    ("eats 3", "other", None),
    ("", "other", None),
    ("answer banana", "bare", None),                   # unknown word
])
def test_classifier_and_checker_on_constructed_examples(text, fmt, answer):
    assert fm.classify_text(TASK, [text]) == [fmt]
    assert fm.extract_answer_text(TASK, [text]) == [answer]


def test_checker_rewards_only_the_true_answer():
    comps = fm.encode_completions(TASK, ["answer 9", "answer 8", "x = 4 + 5", "4 plus 3 is 7 plus 2 is 9",
                                       "4 plus 5 is 9"])
    np.testing.assert_array_equal(fm.check_answers(TASK, comps, np.full(5, 9)), [1, 0, 1, 1, 0])


def test_clean_corpus_solutions_are_correct_and_parse_back():
    task = fm.Task(slip=0.0, code_misreads=())
    probs = fm.generate_problems(task, 500, seed=1)
    assert probs.answer.min() >= 0 and probs.answer.max() <= task.max_value
    for f in fm.FORMATS:
        sol = fm.encode_solutions(task, probs, f, rng=np.random.default_rng(0))
        assert sol.shape[1] <= task.completion_len(f)
        assert (fm.classify(task, sol) == fm.FORMATS.index(f)).all()
        np.testing.assert_array_equal(fm.extract_answers(task, sol), probs.answer)


def test_corpus_accuracy_matches_the_generated_corpus():
    task = fm.Task(slip=0.1, code_misreads=("eats", "finds"))
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
    task = fm.Task(slip=0.0, code_misreads=("eats",))
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
@pytest.mark.parametrize("call, name", [
    (lambda: fm.check_formats(["bare", "prose"]), "formats"),
    (lambda: fm.check_proportions({"bare": 0.5, "poem": 0.5}), "proportions"),
    (lambda: fm.check_proportions([0.5, 0.4, 0.4]), "proportions"),
    (lambda: fm.check_proportions([0.5, 0.5]), "proportions"),
    (lambda: fm.check_proportions([1.2, -0.1, -0.1]), "proportions"),
    (lambda: fm.pretraining_corpus(TASK, 10, [0.3, 0.3, 0.3], seed=0), "proportions"),
    (lambda: echo.RLConfig(beta=0.0), "beta"),
    (lambda: echo.RLConfig(beta=-1.0), "beta"),
    (lambda: echo.format_optimum([0.5, 0.5], [0.1, 0.2], 0.0), "beta"),
    (lambda: echo.policy_gradient_loss(torch.zeros(4), torch.zeros(4), torch.zeros(4), 0.0, 2), "beta"),
    (lambda: fm.Task(code_misreads=("devours",)), "code_misreads"),
])
def test_bad_input_is_refused_naming_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.parametrize("override, name", [
    ({"formats": ["bare", "prose", "code"]}, "formats"),
    ({"proportions": [0.5, 0.5, 0.5]}, "proportions"),
    ({"proportions": [0.5, 0.5]}, "proportions"),
    ({"betas": [0.0, 0.3]}, "betas"),
    ({"betas": [-0.1, 0.3]}, "betas"),
    ({"d_models": [32, 64, 128]}, "d_models"),
])
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
        np.testing.assert_allclose(echo.format_optimum(p, r, beta, within_format=False), w / w.sum())


def test_sequence_optimum_closed_form_and_limits():
    rng = np.random.default_rng(8)
    p = rng.dirichlet(np.ones(3))
    a = rng.random(3)
    for beta in (0.05, 0.3, 2.0):
        w = p * (1 - a + a * np.exp(1 / beta))
        np.testing.assert_allclose(echo.format_optimum(p, a, beta), w / w.sum())
    # beta -> 0: the reference conditioned on being correct; beta -> inf: the reference
    np.testing.assert_allclose(echo.format_optimum(p, a, 1e-3), p * a / (p * a).sum(), atol=1e-6)
    np.testing.assert_allclose(echo.format_optimum(p, a, 1e4), p, atol=1e-4)


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
    np.testing.assert_allclose(best[:3] + best[3:], echo.format_optimum(p_ref, a, beta))


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_bandit_oracle_settles_on_the_optimum(beta):
    """The library's RL loss on a format bandit converges to p_ref exp(r/beta)/Z (fresh seed)."""
    p = np.array([0.5, 0.3, 0.2])
    acc = np.array([0.3, 0.5, 0.7])
    traj = echo.bandit_pg(p, acc, beta, steps=2000, seed=2024)
    tail = traj[traj.step >= 1500].groupby("format", sort=False)["share"].mean().reindex(fm.FORMATS)
    np.testing.assert_allclose(tail.to_numpy(), echo.format_optimum(p, acc, beta, within_format=False),
                               atol=0.03)


def test_group_centred_kl_shaped_advantages():
    logp = torch.tensor([-1.0, -2.0, -1.5, -0.5], requires_grad=True)
    ref = torch.tensor([-1.0, -2.0, -1.0, -1.0])
    r = torch.tensor([1.0, 1.0, 0.0, 1.0])
    loss, log_ratio = echo.policy_gradient_loss(logp, ref, r, 0.5, group_size=2)
    torch.testing.assert_close(log_ratio, torch.tensor([0.0, 0.0, -0.5, 0.5]))
    loss.backward()
    # group 1: equal shaped rewards -> no gradient; group 2: shaped (0.25, 0.75) -> A = (-0.25, 0.25)
    torch.testing.assert_close(logp.grad, torch.tensor([0.0, 0.0, 0.25, -0.25]) / 4)


# ---------------------------------------------------------------------- pretraining and cache
def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values()])


def test_pretraining_is_deterministic_for_a_seed():
    a, _ = echo.pretrain(tiny_cfg(), cache_dir=False)
    b, _ = echo.pretrain(tiny_cfg(), cache_dir=False)
    c, _ = echo.pretrain(tiny_cfg(seed=4), cache_dir=False)
    assert torch.equal(_weights(a), _weights(b))
    assert not torch.equal(_weights(a), _weights(c))


def test_cache_returns_identical_weights_and_is_keyed_on_config(tmp_path):
    cfg = tiny_cfg()
    fresh, info = echo.pretrain(cfg, cache_dir=tmp_path)
    assert not info["cached"] and (tmp_path / f"{info['key']}.pt").exists()
    again, info2 = echo.pretrain(cfg, cache_dir=tmp_path)
    assert info2["cached"] and info2["key"] == info["key"]
    assert torch.equal(_weights(fresh), _weights(again))
    assert [p.name for p in tmp_path.iterdir()] == [f"{info['key']}.pt"]  # no temporary files left
    # every ingredient of the weights changes the key; the label of the size does not
    keys = {cfg.key(),
            tiny_cfg(steps=16).key(), tiny_cfg(seed=4).key(), tiny_cfg(lr=1e-3).key(),
            tiny_cfg(proportions=(0.2, 0.4, 0.4)).key(),
            tiny_cfg(size=echo.ModelSize("tiny", 16, 2, 2)).key(),
            tiny_cfg(task=fm.Task(max_value=9, max_operand=4, slip=0.2)).key(),
            tiny_cfg(task=fm.Task(max_value=9, max_operand=4, code_misreads=())).key(),
            cfg.key("cuda")}
    assert len(keys) == 9
    assert tiny_cfg(size=echo.ModelSize("other name", 16, 1, 2)).key() == cfg.key()


def test_a_corrupt_cache_file_is_retrained(tmp_path):
    cfg = tiny_cfg()
    (tmp_path / f"{cfg.key()}.pt").write_bytes(b"not a checkpoint")
    model, info = echo.pretrain(cfg, cache_dir=tmp_path)
    assert not info["cached"]
    ref, _ = echo.pretrain(cfg, cache_dir=False)
    assert torch.equal(_weights(model), _weights(ref))


# ---------------------------------------------------------------------- sampling and RL
def test_rl_run_records_every_quantity_and_leaves_the_reference_untouched():
    task = fm.Task(max_value=9, max_operand=4)
    ref, _ = echo.pretrain(tiny_cfg(task=task), cache_dir=False)
    before = _weights(ref).clone()
    probs = fm.generate_problems(task, 12, seed=0, split="heldout")
    steps, policy = echo.rl_run(task, ref, probs, echo.RLConfig(beta=0.1, steps=4, batch_problems=4,
                                                               group_size=4, seed=0))
    assert torch.equal(_weights(ref), before) and not torch.equal(_weights(policy), before)
    w = echo.wide(steps, ["step", "epoch"])
    np.testing.assert_allclose(w.epoch, [0, 1 / 3, 2 / 3, 1])
    probs_sum = w[[f"p_{f}" for f in (*fm.FORMATS, fm.OTHER)]].sum(axis=1)
    np.testing.assert_allclose(probs_sum, 1.0, atol=1e-5)
    for q in ("pass@1", "pass@4", "maj@4", "kl", "share_code", "acc_bare"):
        assert q in w.columns
    assert (w["pass@4"] >= w["pass@1"] - 1e-12).all()
    ev = echo.evaluate(task, policy, probs, samples=4, seed=0,
                       subsets={"first half": np.arange(12) < 6})
    assert {"pass@4", "first half/pass@4", "p_steps"} <= set(ev)
