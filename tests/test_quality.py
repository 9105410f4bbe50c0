"""Chapter 7's engines: the three-knob generator, the batched logistic model, the exact
least-squares error (an oracle, on fresh seeds), the self-improvement loop and its tail
measures, and the spec's contract (no competing defaults, back-links, a null)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from scipy import optimize

from vanishing_tails.core import tails
from vanishing_tails.experiments.quality import grid, linear, loop, model, task
from vanishing_tails.experiments.quality.spec import SPEC

FRESH = 20240607  # a seed no chapter run uses
SHAPE = dict(amplitude=0.8, period=1.0)
MODULES = (task, model, grid, linear, loop)


def _knobs(**over):
    kw = dict(budget=500, n_segments=10, covered=10, noise=0.15, hard_share=0.25, hard_band=0.15, **SHAPE)
    return kw | over


def _measured(phase, seed, **over):
    kw = _knobs(**over)
    d = task.knob_data(phase, **kw, seed=seed)
    m = task.measure(d, phase, n_segments=10, hard_band=kw["hard_band"], **SHAPE)
    return {k: float(v.mean()) for k, v in m.items()}


@pytest.fixture(scope="module")
def phase():
    return task.make_phases(64, seed=FRESH)


def test_quality_knob_moves_only_the_label_noise(phase):
    lo, hi = _measured(phase, FRESH + 1, noise=0.3), _measured(phase, FRESH + 2, noise=0.0)
    assert lo["noise_rate"] == pytest.approx(0.3) and hi["noise_rate"] == 0.0  # exactly round(noise * n) flips
    assert lo["diversity"] == pytest.approx(hi["diversity"])
    assert lo["complexity"] == pytest.approx(hi["complexity"], abs=0.01)


def test_diversity_knob_moves_only_the_coverage(phase):
    lo, hi = _measured(phase, FRESH + 3, covered=4), _measured(phase, FRESH + 4, covered=10)
    assert lo["diversity"] == pytest.approx(4.0) and hi["diversity"] == pytest.approx(10.0)  # even coverage
    assert lo["noise_rate"] == pytest.approx(hi["noise_rate"])
    assert lo["complexity"] == pytest.approx(hi["complexity"], abs=0.02)


def test_complexity_knob_moves_only_the_share_near_the_boundary(phase):
    lo, hi = _measured(phase, FRESH + 5, hard_share=0.0), _measured(phase, FRESH + 6, hard_share=1.0)
    assert hi["complexity"] == 1.0 and lo["complexity"] < 0.2  # the natural share inside the band
    assert lo["diversity"] == pytest.approx(hi["diversity"])
    assert lo["noise_rate"] == pytest.approx(hi["noise_rate"])


def test_covered_segments_and_test_sets(phase):
    d = task.knob_data(phase[:4], **_knobs(covered=4), seed=FRESH)
    seg = task.segment_of(d["u"], 10)
    assert set(seg.unique().tolist()) == {3, 4, 5, 6}
    core, ood = grid.id_ood_segments(10, 4)
    assert core.tolist() == [3, 4, 5, 6] and ood.tolist() == [0, 1, 2, 7, 8, 9]
    t = grid.test_sets(phase[:4], n_segments=10, n_core=4, n_test=300, **SHAPE, seed=FRESH)
    assert set(task.segment_of(t["ood"]["u"], 10).unique().tolist()) == set(ood.tolist())
    assert torch.equal(t["id"]["y"], task.labels(t["id"]["u"], t["id"]["v"], phase[:4], **SHAPE))  # clean
    with pytest.raises(ValueError, match="parity"):
        task.central_segments(3, 10)


def test_real_positions_follow_the_truncated_normal():
    u = task.real_positions((1, 200_000), real_sd=0.4, g=task.generator(FRESH))
    assert float(u.min()) >= -1 and float(u.max()) <= 1
    counts = np.bincount(task.segment_of(u, 10)[0].numpy(), minlength=10) / u.numel()
    p = task.real_segment_probabilities(10, real_sd=0.4)
    assert p.sum() == pytest.approx(1.0)
    assert np.abs(counts - p).max() < 5 * np.sqrt(p.max() / u.numel())


def test_effective_segments_is_the_hill_number():
    seg = torch.tensor([[0, 0, 1, 1], [0, 0, 0, 0], [0, 1, 2, 2]])
    p3 = np.array([0.25, 0.25, 0.5])
    assert task.effective_segments(seg, 3) == pytest.approx([2.0, 1.0, np.exp(-(p3 * np.log(p3)).sum())])


def _random_problem(batch, n, seed):
    g = task.generator(seed)
    u = 2 * torch.rand(batch, n, generator=g, dtype=task.DTYPE) - 1
    v = torch.randn(batch, n, generator=g, dtype=task.DTYPE)
    y = (torch.rand(batch, n, generator=g, dtype=task.DTYPE) < torch.sigmoid(2 * v - u)).to(task.DTYPE)
    return model.features(u, v, n_segments=6), y


def test_logistic_fit_reaches_the_optimum_and_matches_scipy():
    X, y = _random_problem(3, 120, FRESH)
    theta = model.fit(X, y, ridge=0.5, newton_steps=25)
    assert float(model.gradient_norm(theta, X, y, ridge=0.5).max()) < 1e-8
    x, t = X[1].numpy(), y[1].numpy()

    def objective(w):
        z = x @ w
        return np.logaddexp(0, -(2 * t - 1) * z).sum() + 0.25 * w @ w

    ref = optimize.minimize(objective, np.zeros(x.shape[1]), method="BFGS", options={"gtol": 1e-10}).x
    assert theta[1].numpy() == pytest.approx(ref, abs=1e-4)


def test_batched_fit_equals_one_by_one():
    X, y = _random_problem(4, 80, FRESH + 1)
    together = model.fit(X, y, ridge=1.0, newton_steps=15)
    alone = torch.cat([model.fit(X[i : i + 1], y[i : i + 1], ridge=1.0, newton_steps=15) for i in range(4)])
    assert torch.allclose(together, alone, atol=1e-10)
    with pytest.raises(ValueError, match="ridge"):
        model.fit(X, y, ridge=0.0, newton_steps=1)


def test_line_error_formula_by_hand():
    x = torch.tensor([[[0.0], [1.0], [3.0]]], dtype=task.DTYPE)
    x0 = torch.tensor([[2.0], [-1.0]], dtype=task.DTYPE)
    err = linear.predictive_error(x, x0, torch.ones(1, 1, dtype=task.DTYPE), noise=2.0)
    xbar, sxx = 4 / 3, (16 + 1 + 25) / 9
    expected = [4 * (1 / 3 + (2 - xbar) ** 2 / sxx), 4 * (1 / 3 + (-1 - xbar) ** 2 / sxx)]
    assert err[0].numpy() == pytest.approx(expected)


def test_least_squares_fit_matches_numpy():
    g = task.generator(FRESH)
    X = torch.randn(2, 30, 3, generator=g, dtype=task.DTYPE)
    y = torch.randn(2, 30, generator=g, dtype=task.DTYPE)
    x0 = torch.randn(5, 3, generator=g, dtype=task.DTYPE)
    got = linear.fit_predict(X, y, x0)
    for r in range(2):
        A = np.c_[np.ones(30), X[r].numpy()]
        coef = np.linalg.lstsq(A, y[r].numpy(), rcond=None)[0]
        assert got[r].numpy() == pytest.approx(np.c_[np.ones(5), x0.numpy()] @ coef)


def test_line_oracle_on_fresh_seeds():
    x0 = np.linspace(-1, 1, 9)
    out = linear.line_experiment(widths=[0.2, 1.0], n=12, noise=0.7, replicates=3000, x0=x0, seed=FRESH)
    for w, res in out.items():
        n, xs = 12, np.linspace(-w, w, 12)
        by_hand = 0.49 * (1 / n + (x0 - xs.mean()) ** 2 / ((xs - xs.mean()) ** 2).sum())
        assert res["theory"] == pytest.approx(by_hand)
        ratio = (res["err"] / res["theory"]).mean(1)
        assert abs(ratio.mean() - 1) < 4 * ratio.std(ddof=1) / np.sqrt(ratio.size)


def test_subspace_oracle_on_fresh_seeds():
    out = linear.subspace_experiment(ranks=[2, 5], dim=6, n=15, noise=0.5, replicates=3000, n_points=20, seed=FRESH)
    for r, res in out.items():
        for kind in ("id", "ood"):
            ratio = (res[f"err_{kind}"] / res[f"theory_{kind}"]).mean(1)
            assert abs(ratio.mean() - 1) < 4 * ratio.std(ddof=1) / np.sqrt(ratio.size), (r, kind)
            # the closed form averaged over designs, truths and points
            avg = res[f"theory_{kind}"].mean(1)
            closed = linear.expected_subspace_error(r, dim=6, n=15, noise=0.5, generic=kind == "ood")
            assert abs(avg.mean() - closed) < 4 * avg.std(ddof=1) / np.sqrt(avg.size), (r, kind)
        assert res["theory_ood"].mean() > res["theory_id"].mean()  # the unseen directions cost bias
    with pytest.raises(ValueError):
        linear.expected_subspace_error(5, dim=6, n=7, noise=1.0, generic=False)


def test_grid_rows_and_the_diversity_effect():
    G = grid.run_grid(
        qualities=[1.0], coverages=[4, 10], hard_shares=[0.0], n_seeds=4, budget=200, n_segments=10, n_core=4,
        hard_band=0.15, ridge=1.0, newton_steps=10, n_test=400, seed=FRESH, **SHAPE,
    )  # fmt: skip
    assert len(G) == 2 * 4 and {"id_acc", "ood_acc", "noise_rate", "diversity", "complexity"} <= set(G.columns)
    assert G[["id_acc", "ood_acc"]].stack().between(0, 1).all()
    ood = G.pivot(index="seed", columns="coverage", values="ood_acc")
    assert (ood[10] > ood[4]).all()  # data in the OOD segments helps there, on every task
    with pytest.raises(ValueError, match="ID segments"):
        grid.run_grid(
            qualities=[1.0], coverages=[2], hard_shares=[0.0], n_seeds=2, budget=50, n_segments=10, n_core=4,
            hard_band=0.15, ridge=1.0, newton_steps=2, n_test=10, seed=FRESH, **SHAPE,
        )  # fmt: skip


def _loop_kw(**over):
    kw = dict(
        n_seeds=6, budget=160, generations=4, n_segments=10, n_core=4, keep=0.5, jitter=0.05, real_sd=0.4,
        real_fraction=0.0, real_mix=0.5, ridge=1.0, newton_steps=10, n_test=300, q=0.1, n_distinct=100, **SHAPE,
    )  # fmt: skip
    return kw | over


def test_trajectory_has_the_common_columns_with_sane_ranges():
    traj = loop.trajectory(**_loop_kw(n_seeds=3, generations=3, n_test=50), seed=FRESH)
    assert list(traj.columns) == ["experiment", "arm", "replicate", "step", "mechanism", *tails.COLUMNS]
    assert set(traj.mechanism) <= set(tails.MECHANISMS) and set(traj.arm) == {"self-trained", "real-mixed"}
    assert len(traj) == 2 * 3 * 4
    assert traj.support.between(0, 1.5).all() and (traj.q_tail_mass >= 0).all()
    assert traj.error_mass.between(0, 1).all() and traj.mode_share.between(0, 1).all()
    assert (traj.kl_from_start >= 0).all() and np.isfinite(traj.kl_from_start).all()
    assert traj.quality.between(0, 1).all()


def test_trajectory_starts_at_kl_zero_and_moves_from_there():
    """Step 0 is the start (the contract): KL 0 there exactly, in every arm and replicate; the
    self-trained loop then moves away from it."""
    traj = loop.trajectory(**_loop_kw(n_seeds=3, generations=2, n_test=50), seed=FRESH + 3)
    assert (traj[traj.step == 0].kl_from_start == 0).all()
    assert (traj[(traj.step > 0) & (traj.arm == "self-trained")].kl_from_start > 0).all()


def test_kl_from_start_is_the_kl_of_the_smoothed_laws():
    from vanishing_tails.core.tails import kl_from_start

    """Against the closed form on fresh draws: zero on the start, KL of the ε-mixtures elsewhere,
    finite where the plain KL is infinite, never above it where that is finite."""
    rng = np.random.default_rng(FRESH + 4)
    p, s = rng.dirichlet(np.ones(6), size=4), rng.dirichlet(np.ones(6), size=4)
    eps = 1e-3
    pt, st = (1 - eps) * p + eps / 6, (1 - eps) * s + eps / 6
    np.testing.assert_allclose(kl_from_start(p, s, smoothing=eps), (pt * np.log(pt / st)).sum(1), rtol=1e-12)
    assert (kl_from_start(p, p, smoothing=eps) == 0).all()
    assert (kl_from_start(p, s, smoothing=eps) <= (p * np.log(p / s)).sum(1) + 1e-12).all()
    s[:, 0] = 0.0
    assert np.isfinite(kl_from_start(p, s / s.sum(1, keepdims=True), smoothing=eps)).all()
    assert np.isinf(kl_from_start(p, s / s.sum(1, keepdims=True))).all()  # unsmoothed: p has mass where s has none
    with pytest.raises(ValueError, match="smoothing"):
        kl_from_start(p, s, smoothing=1.0)


def test_self_training_loses_segments_and_the_filter_keeps_right_labels():
    L = loop.run_loop(**_loop_kw(), seed=FRESH + 1)
    selft = L[L.arm == "self-trained"].groupby("step")
    assert selft.diversity.mean().iloc[-1] < selft.diversity.mean().iloc[0] - 0.1
    assert (L.error_rate == L.error_mass).all()  # the tail measure is the wrong-label share


def test_null_configuration_leaves_the_tail_measures_where_they_start():
    L = loop.run_loop(**_loop_kw(real_fraction=1.0, generations=5), seed=FRESH + 2)
    assert (L.real_fraction == 1.0).all() and (L.error_mass == 0).all()  # real labels are clean
    per_step = L.groupby("step")[["support", "q_tail_mass", "diversity"]].mean()
    assert np.abs(per_step["support"] - 1).max() < 0.05
    assert np.abs(per_step["diversity"] - 1).max() < 0.05
    assert np.abs(per_step["q_tail_mass"] - 1).max() < 0.35
    first, last = per_step.iloc[0], per_step.iloc[-1]
    assert abs(last["support"] - first["support"]) < 0.05 and abs(last["q_tail_mass"] - first["q_tail_mass"]) < 0.4


def test_outcome_reference_puts_no_mass_on_wrong_labels():
    ref = loop.outcome_reference(10, real_sd=0.4)
    assert ref.sum() == pytest.approx(1.0) and (ref[1::2] == 0).all()


def test_no_engine_default_for_a_spec_parameter():
    names = set(SPEC.names)
    offenders = []
    for module in MODULES:
        for fname, fn in inspect.getmembers(module, inspect.isfunction):
            if fname.startswith("_") or fn.__module__ != module.__name__:
                continue
            for p in inspect.signature(fn).parameters.values():
                if p.name in names and p.default is not inspect.Parameter.empty:
                    offenders.append(f"{module.__name__}.{fname}({p.name}={p.default!r})")
    assert not offenders, offenders
    assert set(loop.LOOP_PARAMS) <= names


def test_every_public_object_links_back_to_the_chapter():
    for module in MODULES:
        for name, obj in inspect.getmembers(module, lambda o: inspect.isfunction(o) or inspect.isclass(o)):
            if name.startswith("_") or obj.__module__ != module.__name__:
                continue
            doc = inspect.getdoc(obj) or ""
            assert doc.rstrip().splitlines()[-1].startswith("Explained in :ref:`sec-quality-"), name


def test_spec_null_and_checks():
    P = SPEC.resolve(scale="smoke", **SPEC.null)
    assert P["real_fraction"] == 1.0 and len(set(P["qualities"])) == 1
    assert all(c.kind != "direction" or c.delta > 0 for c in SPEC.claims)  # a zero effect can never hold
    assert {c.unit for c in SPEC.claims} <= {"seeds", "noise draws", "replicates"}
    with pytest.raises(ValueError, match="coverages"):
        SPEC.resolve(scale="smoke", coverages=[2, 10])
    with pytest.raises(ValueError, match="low to high"):
        SPEC.resolve(scale="smoke", qualities=[1.0, 0.7])
    with pytest.raises(ValueError, match="ls_ranks"):
        SPEC.resolve(scale="smoke", ls_ranks=[19])
