"""Chapter 3 ("Sharpening spreads"): the common trajectory interface, the channel ablation,
the learnable-answer task and the vectorised coefficient sweeps. Fresh seeds, never the
chapter's development or test seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vanishing_tails.core import tails
from vanishing_tails.experiments.sharpening import policies as ap

TINY = dict(
    n_seeds=3,
    n_solved=16,
    n_unsolved=16,
    n_held_out=16,
    n_answers=12,
    n_features=6,
    n_hidden=6,
    base_scale=2.0,
    p_unsolved=1e-3,
    group_size=4,
    steps=20,
    lr=0.05,
    normalize=True,
    ucb_c=1.0,
    batch_c=1.0,
    entropy_beta=0.1,
    eval_every=10,
    n_distinct=8,
    q=0.1,
    seed=5813,
)


def test_trajectory_has_the_common_columns_in_sane_ranges():
    frame = ap.trajectory(**TINY)
    assert list(frame.columns) == ["experiment", "arm", "replicate", "step", "mechanism", *tails.COLUMNS]
    assert set(frame.experiment) == {"sharpening"} and set(frame.mechanism) <= set(tails.MECHANISMS)
    assert set(frame.step) == {0, 10, 20} and set(frame.replicate) == {0, 1, 2}
    assert {"outcome only", "historical (UCB)", "batch", "entropy bonus", "tabular control", "scale frozen"} == set(
        frame.arm
    )
    assert len(frame) == 6 * 3 * 3 and not frame.duplicated(["arm", "replicate", "step"]).any()
    assert frame["support"].gt(0).all() and frame["q_tail_mass"].ge(0).all()
    assert frame["kl_from_start"].ge(0).all()
    for col in ("error_mass", "mode_share", "quality"):
        assert frame[col].between(0, 1).all(), col
    start = frame[frame.step == 0]
    np.testing.assert_allclose(start["kl_from_start"], 0.0, atol=1e-9)
    np.testing.assert_allclose(start["support"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(start["q_tail_mass"], 1.0, rtol=1e-6)
    # the tabular control never touches a held-out problem: its tail columns stay at the start
    tab = frame[frame.arm == "tabular control"]
    np.testing.assert_allclose(tab["kl_from_start"], 0.0, atol=1e-9)
    # outcome-only RL moves the held-out problems it never trained on
    out = frame[(frame.arm == "outcome only") & (frame.step == 20)]
    assert out["kl_from_start"].gt(1e-4).all()


def test_trajectory_is_reproducible_and_depends_on_the_seed():
    a, b = ap.trajectory(**TINY), ap.trajectory(**TINY)
    pd.testing.assert_frame_equal(a, b)
    c = ap.trajectory(**{**TINY, "seed": 5814})
    assert not np.allclose(a["kl_from_start"], c["kl_from_start"])


def test_trajectory_null_configuration_moves_nothing():
    frame = ap.trajectory(**{**TINY, "lr": 0.0})
    np.testing.assert_allclose(frame["kl_from_start"], 0.0, atol=1e-9)
    np.testing.assert_allclose(frame["support"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(frame["q_tail_mass"], 1.0, rtol=1e-6)
    for col in ("mode_share", "quality"):
        spread = frame.groupby(["arm", "replicate"])[col].agg(lambda v: v.max() - v.min())
        assert (spread == 0).all(), col


def test_answer_tail_measures_match_the_common_categorical_measures():
    """Oracle: the vectorised per-problem measures equal core.tails.categorical_measures,
    problem by problem, averaged over the masked problems."""
    rng = np.random.default_rng(6029)
    S, P, K = 2, 7, 9
    logp0 = np.log(rng.dirichlet(np.full(K, 0.7), size=(S, P)))
    logp = np.log(rng.dirichlet(np.full(K, 0.7), size=(S, P)))
    mask = rng.random(P) < 0.6
    mask[0] = True
    got = ap.answer_tail_measures(logp, logp0, mask, q=0.2, n=5)
    for s in range(S):
        rows = [
            tails.categorical_measures(np.exp(logp[s, x]), np.exp(logp0[s, x]), np.exp(logp0[s, x]), q=0.2, n=5)
            for x in np.flatnonzero(mask)
        ]
        want = pd.concat(rows).mean()
        for col in ("support", "q_tail_mass", "error_mass", "mode_share", "kl_from_start"):
            assert got[col][s] == pytest.approx(want[col], rel=1e-9, abs=1e-12), col


# --- channel ablations ------------------------------------------------------------------------------


def small_task(seed: int, **kw):
    args = dict(
        n_seeds=3,
        n_solved=10,
        n_unsolved=10,
        n_held_out=6,
        n_answers=10,
        n_features=5,
        n_hidden=5,
        base_scale=2.0,
        p_unsolved=1e-3,
        seed=seed,
        device="cpu",
    )
    args.update(kw)
    return ap.make_answer_task(**args)


def train(task, arm, *, steps=15, seed=0, normalize=True):
    return ap.train_answer_policy(
        task,
        arm,
        steps=steps,
        group_size=4,
        lr=0.1,
        eval_every=steps,
        n_distinct=8,
        k_max=16,
        normalize=normalize,
        seed=seed,
    )


def test_scale_frozen_arm_keeps_the_inverse_temperature_and_moves_the_rest():
    task = small_task(6203)
    run = train(task, ap.scale_frozen_arm(), seed=6204)
    np.testing.assert_allclose(run.inverse_temperature, task.base_scale, rtol=1e-6)
    held = task.group == "held-out"
    assert not np.allclose(run.logp[:, held], run.logp0[:, held])  # W, e, b still transfer
    out = train(task, ap.standard_arms(ucb_c=0.0, batch_c=0.0, entropy_beta=0.0)[0], seed=6204)
    assert np.all(np.abs(out.inverse_temperature - task.base_scale) > 1e-4)


def test_scale_only_arm_moves_held_out_problems_only_through_the_temperature():
    """Oracle: with W, e and b frozen a held-out problem's logits are the base scores times the
    new inverse temperature, so its log-probabilities are log_softmax(scale' / scale0 * logits0)."""
    task = small_task(6211)
    run = train(task, ap.scale_only_arm(), seed=6212)
    held = task.group == "held-out"
    ratio = run.inverse_temperature / task.base_scale
    logits0 = run.logp0[:, held]
    expected = ratio[:, None, None] * logits0
    expected = expected - np.logaddexp.reduce(expected, axis=-1, keepdims=True)
    np.testing.assert_allclose(run.logp[:, held], expected, atol=2e-4)
    assert np.all(np.abs(ratio - 1) > 1e-4)


def test_arm_refuses_unknown_frozen_names_and_bad_tuples():
    with pytest.raises(ValueError, match="frozen"):
        ap.Arm(name="x", ucb_c=0.0, batch_c=0.0, entropy_beta=0.0, frozen=("temperature",))
    with pytest.raises(ValueError, match="ucb_c"):
        ap.Arm(name="x", ucb_c=(0.1, -0.1), batch_c=0.0, entropy_beta=0.0)
    arm = ap.Arm(name="x", ucb_c=(0.1, 0.2), batch_c=0.0, entropy_beta=0.0)
    with pytest.raises(ValueError, match="ucb_c"):
        train(small_task(1), arm)  # 2 values for 3 seeds


# --- the learnable-answer variant --------------------------------------------------------------------


def learnable(seed, overlap=0.5, **kw):
    args = dict(
        n_seeds=3,
        n_solved=12,
        n_unsolved=12,
        n_held_out=8,
        n_answers=16,
        n_features=6,
        n_hidden=6,
        base_scale=2.0,
        p_unsolved=1e-2,
        teacher_overlap=overlap,
        seed=seed,
        device="cpu",
    )
    args.update(kw)
    return ap.make_learnable_task(**args)


def test_learnable_task_layout_kinds_and_tail_answers():
    task = learnable(6301)
    logp0 = task.base_logprobs().numpy()
    correct = task.correct.numpy()
    assert (correct.sum(-1) == 1).all()
    solved = task.kind == "solved"
    assert np.all(logp0.argmax(-1)[:, solved] == correct.argmax(-1)[:, solved])
    assert np.all(logp0.argmax(-1)[:, ~solved] != correct.argmax(-1)[:, ~solved])
    p = (np.exp(logp0) * correct).sum(-1)[:, ~solved]
    assert np.median(p) < 0.05  # chosen near p_unsolved, deep in the tail
    assert list(task.group[:24]) == ["solved"] * 12 + ["unsolved"] * 12
    assert list(task.kind[24:]) == ["solved"] * 4 + ["unsolved"] * 4


def test_learnable_task_answer_is_a_learnable_function_of_the_features():
    """Oracle: every correct answer is the argmax of one linear teacher over the answer
    embeddings, so the multiclass perceptron (which converges on separable data) finds a map W
    with argmax_a <phi_x W, e_a> equal to the correct answer on every problem."""
    task = learnable(6311)
    s0 = 0
    X = task.features[s0].numpy()
    y = task.correct[s0].numpy().argmax(-1)
    # linear scores <phi W*, e_a>: the answer is argmax over a linear function of phi
    E = task.E0[s0].numpy()
    # find W* by the perceptron (a separable multiclass problem converges)
    W = np.zeros((X.shape[1], E.shape[1]))
    for _ in range(20000):
        pred = (X @ W @ E.T).argmax(-1)
        wrong = np.flatnonzero(pred != y)
        if len(wrong) == 0:
            break
        i = wrong[0]
        W += np.outer(X[i], E[y[i]] - E[pred[i]])
    assert (X @ W @ E.T).argmax(-1).tolist() == y.tolist()


def test_learnable_task_refuses_an_overlap_that_leaves_no_unsolved_problems():
    with pytest.raises(ValueError, match="teacher_overlap"):
        learnable(6321, overlap=1.0)
    with pytest.raises(ValueError, match="teacher_overlap"):
        learnable(6321, overlap=1.5)


# --- vectorised sweeps ---------------------------------------------------------------------------------


def test_sweep_configs_start_at_outcome_only_and_vary_one_knob():
    cfg = ap.sweep_configs(ucb_cs=[1.0, 0.3, 1.0], batch_cs=[2.0], entropy_betas=[0.1, 0.0])
    assert cfg.knob.tolist() == ["none", "ucb_c", "ucb_c", "batch_c", "entropy_beta"]
    assert cfg.value.tolist() == [0.0, 0.3, 1.0, 2.0, 0.1]
    assert ((cfg[["ucb_c", "batch_c", "entropy_beta"]] > 0).sum(axis=1) == [0, 1, 1, 1, 1]).all()


def test_tiled_task_repeats_every_seed_copy_major():
    task = small_task(6401)
    tiled = ap.tile_task(task, 4)
    assert tiled.n_seeds == 12
    for c in range(4):
        assert torch_equal(tiled.features[c * 3 : (c + 1) * 3], task.features)
        assert torch_equal(tiled.correct[c * 3 : (c + 1) * 3], task.correct)


def torch_equal(a, b):
    return bool((a == b).all())


@pytest.mark.parametrize("field", ["ucb_c", "batch_c", "entropy_beta"])
def test_per_seed_scales_equal_to_a_scalar_reproduce_the_scalar_arm(field):
    task = small_task(6411)
    scalar = ap.Arm(name="a", **{"ucb_c": 0.0, "batch_c": 0.0, "entropy_beta": 0.0, field: 0.5})
    vector = ap.Arm(name="a", **{"ucb_c": 0.0, "batch_c": 0.0, "entropy_beta": 0.0, field: (0.5, 0.5, 0.5)})
    a, b = train(task, scalar, seed=6412), train(task, vector, seed=6412)
    np.testing.assert_allclose(a.logp, b.logp, rtol=0, atol=1e-6)


def test_sweep_slice_with_zero_coefficients_is_outcome_only_and_others_differ():
    task = small_task(6421)
    cfg = ap.sweep_configs(ucb_cs=[2.0], batch_cs=[2.0], entropy_betas=[2.0])
    tiled = ap.tile_task(task, len(cfg))
    run = train(tiled, ap.sweep_arm(cfg, task.n_seeds, "sweep"), seed=6422, normalize=False)
    entropy = -(np.exp(run.logp) * run.logp).sum(-1)[:, task.group == "held-out"].mean(-1)
    by_config = entropy.reshape(len(cfg), task.n_seeds).mean(-1)
    # every bonus keeps more held-out entropy than outcome only (config 0) at this strength
    assert np.all(by_config[1:] > by_config[0])
