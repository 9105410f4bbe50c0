"""Chapter 2's engines: oracles, tautologies of the toy (moved out of the claims table),
batched chains equal to one chain at a time, determinism, one source for every default,
the loaders and bad input.

Seeds here are fresh (never used while the chapter was written).
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from vanishing_tails.book.claims import contradictions
from vanishing_tails.book.runner import run_chapter
from vanishing_tails.core import collapse, data, lm
from vanishing_tails.experiments.families import charlm, mixture, vae
from vanishing_tails.experiments.families import tale_of_tails as tot
from vanishing_tails.experiments.families.fitting import seeded_fit
from vanishing_tails.experiments.families.spec import CLAIM_FAMILY, FAMILIES, SPEC, check_family, spec_for

FRESH = 9173
MODULES = ["fitting", "members", "mixture", "vae", "charlm", "tale_of_tails", "spec"]


# ----------------------------------------------------------------------------- one source for every default
# Engine arguments that mean a spec parameter under another name (the spec's presets are the
# only place these are set; the chapter passes them explicitly).
SAME_MEANING = {"chains", "n", "generations", "steps", "regime", "k"}
SAME_MEANING_IN = {"charlm": {"d_hidden", "batch_size", "n_measure"}}  # lm_hidden, lm_batch, lm_measure


@pytest.mark.parametrize("module", MODULES)
def test_no_engine_default_competes_with_the_spec(module):
    mod = importlib.import_module(f"vanishing_tails.experiments.families.{module}")
    declared = set(SPEC.names) | SAME_MEANING | SAME_MEANING_IN.get(module, set())
    offending = []
    for name, obj in vars(mod).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
            continue
        members = [(name, obj)] if inspect.isfunction(obj) else []
        if inspect.isclass(obj):
            members = [(f"{name}.{m}", f) for m, f in vars(obj).items() if inspect.isfunction(f) and m != "__init__"]
            members += [(f"{name}.__init__", obj.__init__)] if "__init__" in vars(obj) else []
        for qual, fn in members:
            for p in inspect.signature(fn).parameters.values():
                if p.name in declared and p.default is not inspect.Parameter.empty:
                    offending.append(f"{qual}({p.name}={p.default!r})")
    assert not offending, f"defaults that compete with the spec's presets: {offending}"


def test_every_claim_belongs_to_a_family_and_subsets_keep_only_theirs():
    assert {CLAIM_FAMILY[c.id.split("-")[0]] for c in SPEC.claims} == set(FAMILIES)
    ids = [c.id for c in spec_for(["tale_of_tails", "mixture"]).claims]
    assert ids and all(i.startswith(("tale-", "gmm-")) for i in ids)
    assert spec_for(FAMILIES).claims == SPEC.claims
    with pytest.raises(ValueError, match="family must be one of"):
        spec_for(["gmm"])


def test_the_null_configuration_is_real_data_every_generation():
    assert SPEC.null == {"real_fraction": 1.0}
    assert SPEC.resolve(scale="smoke")["real_fraction"] == 0.0  # the notes' setting by default
    assert all(c.unit in ("chains", "simulated chains", "simulated learning curves") for c in SPEC.claims)


# ----------------------------------------------------------------------------- A Tale of Tails
def test_expected_error_matches_enumeration():
    """sum_i p_i (1 - q_i)^T against brute-force enumeration of every training sequence."""
    p = np.array([0.5, 0.3, 0.2])
    q = np.array([0.6, 0.4, 0.0])
    for T in (1, 2, 3):
        err = 0.0
        for seq in itertools.product(range(3), repeat=T):
            prob = np.prod(q[list(seq)])
            err += prob * sum(p[i] for i in range(3) if i not in seq)
        assert tot.expected_error(p, q, T) == pytest.approx(err, abs=1e-12)


@pytest.mark.parametrize("kind", ["clean", "cut", "mixed"])
def test_simulated_error_matches_formula(kind):
    p = tot.zipf(2000, 1.7)
    q = {"clean": p, "cut": tot.cut_tail(p, 50), "mixed": tot.mix_clean(tot.cut_tail(p, 50), p, 0.3)}[kind]
    T = np.array([5, 50, 500, 5000, 50000])
    sim = tot.simulate_error(p, q, T, 1500, seed=FRESH)
    m = sim.groupby("T")["error"].agg(["mean", "sem"])
    z = (m["mean"].to_numpy() - tot.expected_error(p, q, T)) / np.maximum(m["sem"].to_numpy(), 1e-15)
    assert np.all(np.abs(z) < 4.5), z


def test_tail_cut_error_never_falls_below_the_cut_tail_mass():
    """The old claim 'tale-plateau' was this tautology: items beyond k are never seen, so every
    simulated chain errs on at least sum_{i>k} p_i, at every T, and reaches it for large T."""
    p = tot.zipf(5000, 2.0)
    plateau = tot.tail_mass_beyond(p, 100)
    sim = tot.simulate_error(p, tot.cut_tail(p, 100), [10, 100, 1000, 10**5, 10**6], 20, seed=FRESH)
    assert (sim.error >= plateau - 1e-12).all()
    assert np.allclose(sim[sim["T"] == 10**6].error, plateau, rtol=1e-9)


def test_cut_tail_plateau_and_mixing_restores_scaling():
    p = tot.zipf(10000, 2.0)
    q = tot.cut_tail(p, 100)
    plateau = tot.tail_mass_beyond(p, 100)
    big = np.array([1e6, 1e7])
    assert np.allclose(tot.expected_error(p, q, big), plateau, rtol=1e-6)
    mixed = tot.expected_error(p, tot.mix_clean(q, p, 0.2), big)
    assert mixed[1] < mixed[0] < plateau
    assert tot.expected_error(p, p, 1e7) < 0.1 * plateau
    assert np.allclose(tot.mix_clean(q, p, 1.0), p)  # the null control: 'cut' data that are clean


def test_hutter_recursion_is_irreversible_and_accumulate_never_forgets():
    p = tot.zipf(3000, 2.0)
    rep = tot.hutter_chains(p, 2000, 8, 6, k=50, regime="replace", real_fraction=0.0, seed=FRESH)
    support = rep[rep.quantity == "support"].pivot(index="chain", columns="generation", values="value")
    assert (support.diff(axis=1).iloc[:, 1:] <= 0).all().all()  # an item once lost never returns
    assert (support.iloc[:, 1:] <= 50).all().all()  # a top-k generator passes on at most k items
    acc = tot.hutter_chains(p, 2000, 8, 6, k=50, regime="accumulate", real_fraction=0.0, seed=FRESH)
    err = acc[acc.quantity == "error"].pivot(index="chain", columns="generation", values="value")
    assert np.allclose(err.to_numpy(), err[[0]].to_numpy())
    # 'mix' without real data is 'replace'
    mix0 = tot.hutter_chains(p, 2000, 8, 6, k=50, regime="mix", real_fraction=0.0, seed=FRESH)
    pd.testing.assert_frame_equal(rep, mix0)


# ----------------------------------------------------------------------------- the one loop
def _gauss(batched: bool):
    C = 5

    def real_sample(n, rng):
        return rng.standard_normal((C, n)) if batched else rng.standard_normal(n)

    def fit(x, rng):
        return (x.mean(-1), x.std(-1))

    def sample(m, n, rng):
        mu, sd = m
        z = rng.standard_normal((C, n) if batched else n)
        return (mu[:, None] + sd[:, None] * z) if batched else mu + sd * z

    return real_sample, fit, sample


def test_recursive_fit_batched_chains_and_three_argument_measure():
    real_sample, fit, sample = _gauss(True)
    out = collapse.recursive_fit(
        fit,
        sample,
        lambda m, t, rng: {"sd": m[1]},
        real_sample=real_sample,
        n=20,
        generations=4,
        regime="accumulate",
        concat=lambda ps: np.concatenate(ps, axis=1),
        seed=FRESH,
    )
    assert list(out.columns) == ["generation", "quantity", "chain", "value"]
    assert len(out) == 5 * 5 and set(out.chain) == set(range(5))


def test_measurement_never_changes_the_training_trajectory():
    real_sample, fit, sample = _gauss(False)
    plain = collapse.recursive_fit(
        fit,
        sample,
        lambda m, t: {"sd": m[1]},
        real_sample=real_sample,
        n=10,
        generations=6,
        regime="replace",
        seed=FRESH,
    )

    def greedy_measure(m, t, rng):
        rng.standard_normal(1000)  # a measurement that draws a lot of randomness
        return {"sd": m[1]}

    greedy = collapse.recursive_fit(
        fit, sample, greedy_measure, real_sample=real_sample, n=10, generations=6, regime="replace", seed=FRESH
    )
    pd.testing.assert_frame_equal(plain, greedy)


def test_seeded_fit_memoises_identical_calls_only():
    trained = []

    def train(x, s):
        trained.append(s)
        return (float(np.sum(x)), s)

    fit = seeded_fit(train, ("test", FRESH))
    x = np.arange(5.0)
    a = fit(x, np.random.default_rng(FRESH))
    b = fit(x, np.random.default_rng(FRESH))
    c = fit(x + 1, np.random.default_rng(FRESH))
    assert a == b and c != a and len(trained) == 2


# ----------------------------------------------------------------------------- the mixture
def test_mixture_logpdf_matches_scipy_and_the_reference_constants_match_monte_carlo():
    m = mixture.REAL_MIXTURE
    x = mixture.real_sample(50, 2, np.random.default_rng(FRESH))
    ref = np.log(
        sum(w * stats.multivariate_normal(mu, S).pdf(x) for w, mu, S in zip(m.weights[0], m.means[0], m.covs[0]))
    )
    assert np.allclose(m.logpdf(x), ref)
    # the real mixture measured on its own samples sits at 1 on every region
    meas = mixture.tail_measures(mixture.real_sample(200_000, 1, np.random.default_rng(FRESH)), q=0.05)
    for k, v in meas.items():
        assert v[0] == pytest.approx(1.0, abs=0.05), k
    _, region_mass = mixture.reference_constants(0.05)
    assert region_mass == pytest.approx(m.weights[0], abs=2e-3)  # well-separated components


def test_batched_em_reaches_scikit_learns_likelihood():
    from sklearn.mixture import GaussianMixture

    x = mixture.real_sample(250, 12, np.random.default_rng(FRESH))
    ours = mixture.fit_mixtures(x, 3, seed=FRESH).logpdf(x).mean(1)
    fits = [GaussianMixture(3, covariance_type="full", reg_covar=1e-6, random_state=c).fit(x[c]) for c in range(12)]
    theirs = np.array([gm.score(x[c]) for c, gm in enumerate(fits)])
    assert np.median(ours - theirs) == pytest.approx(0.0, abs=1e-3)  # the same optimum in the typical chain
    assert np.all(ours - theirs > -0.1)  # and never a much worse one


def test_batched_em_chains_are_independent_and_weights_are_a_distribution():
    x = mixture.real_sample(200, 4, np.random.default_rng(FRESH))
    both = mixture.fit_mixtures(x, 3, seed=FRESH)
    assert np.allclose(both.weights.sum(1), 1.0)
    assert np.all(np.linalg.eigvalsh(both.covs) > 0)
    other = x.copy()
    other[1:] = mixture.real_sample(200, 3, np.random.default_rng(FRESH + 1))
    again = mixture.fit_mixtures(other, 3, seed=FRESH)
    assert np.allclose(both.means[0], again.means[0]) and np.allclose(both.covs[0], again.covs[0])


def test_mixture_engine_is_deterministic():
    kw = dict(regime="mix", real_fraction=0.2, q=0.05, n_measure=200, pr_points=50, pr_generations=(0, 2))
    a, _ = mixture.mixture_chains(60, 3, 3, seed=FRESH, **kw)
    b, _ = mixture.mixture_chains(60, 3, 3, seed=FRESH, **kw)
    c, _ = mixture.mixture_chains(60, 3, 3, seed=FRESH + 1, **kw)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_mixture_arms_with_one_seed_share_generation_zero():
    kw = dict(q=0.05, n_measure=200, seed=FRESH, pr_points=50, pr_generations=(0, 2))
    rep, _ = mixture.mixture_chains(60, 2, 3, regime="mix", real_fraction=0.0, **kw)
    acc, _ = mixture.mixture_chains(60, 2, 3, regime="accumulate", real_fraction=0.0, **kw)
    pd.testing.assert_frame_equal(rep[rep.generation == 0], acc[acc.generation == 0])


# ----------------------------------------------------------------------------- the common trajectory
def _mixture_trajectory(**over):
    kw = dict(n=200, generations=4, n_seeds=4, q=0.05, real_fractions=[0.2, 1.0], seed=FRESH)
    kw.update(over)
    return mixture.trajectory(**kw)


def test_mixture_grid_measures_of_the_real_law_are_the_oracle():
    real = mixture.REAL_MIXTURE
    m = mixture.grid_measures(real, real, q=0.05, n=250)
    assert np.allclose(m["support"], 1) and np.allclose(m["q_tail_mass"], 1) and np.allclose(m["quality"], 0)
    assert np.allclose(m["kl_from_start"], 0)
    assert 0 < m["error_mass"][0] <= 1 - mixture.ERROR_LEVEL  # each component leaves 1 - level outside its ellipse
    g = mixture._grid(0.05)
    assert g["mass0"][g["tail"]].sum() == pytest.approx(0.05 - g["mass0"][g["error"]].sum(), abs=2e-3)


def test_mixture_trajectory_has_the_common_columns_with_sane_ranges():
    from vanishing_tails.core import tails

    traj = _mixture_trajectory()
    assert list(traj.columns) == ["experiment", "arm", "replicate", "step", "mechanism", *tails.COLUMNS]
    assert set(traj.arm) == {"replace", "accumulate", "accumulate-subsample", "mix 0.2", "mix 1"}
    assert set(traj.experiment) == {"families"} and set(traj.mechanism) == {"error"}
    assert set(traj.replicate) == set(range(4)) and set(traj.step) == set(range(5))
    assert traj[list(tails.COLUMNS)].notna().all().all() and len(traj) == 5 * 4 * 5
    assert (traj.support > 0).all() and (traj.q_tail_mass >= 0).all() and (traj.kl_from_start >= 0).all()
    assert traj.error_mass.between(0, 1).all() and traj.mode_share.between(0, 1).all()
    assert (traj.quality <= 1e-9).all()  # -KL(p0 || model)
    first = traj[traj.step == 0]
    assert np.allclose(first.kl_from_start, 0)
    assert first.groupby("replicate").q_tail_mass.nunique().eq(1).all()  # every arm shares generation 0


def test_mixture_trajectory_is_reproducible():
    pd.testing.assert_frame_equal(_mixture_trajectory(), _mixture_trajectory())


def test_mixture_trajectory_does_not_move_under_the_null():
    null = _mixture_trajectory(generations=0)
    assert null.step.unique().tolist() == [0] and np.allclose(null.kl_from_start, 0)
    traj = _mixture_trajectory(generations=6, n_seeds=6, n=400)
    last = traj[traj.step == 6].groupby("arm")[["kl_from_start", "quality", "q_tail_mass"]].median()
    # fresh real data each generation: each fit is a new fit of the real law, nothing compounds
    assert last.loc["mix 1", "kl_from_start"] < last.loc["replace", "kl_from_start"]
    assert last.loc["mix 1", "quality"] > last.loc["replace", "quality"]
    assert 0.7 < last.loc["mix 1", "q_tail_mass"] < 1.4


# ----------------------------------------------------------------------------- the VAE
def test_vae_engine_is_deterministic():
    kw = dict(steps=5, n_measure=20, hidden=16, latent=2, regime="mix", real_fraction=0.0, class_decay=0.7)
    kw["device"] = "cpu"
    a, shots = vae.vae_chains(60, 1, 2, seed=FRESH, snapshot_generations=(0, 1), **kw)
    b, _ = vae.vae_chains(60, 1, 2, seed=FRESH, **kw)
    c, _ = vae.vae_chains(60, 1, 2, seed=FRESH + 1, **kw)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    assert shots[1].shape == (16, 8, 8)
    assert {"rare_share", "common_share", "vendi", "atypical"} <= set(a.quantity)


def test_batched_vae_chains_are_independent():
    """Chain 0 trained alone equals chain 0 trained next to another chain's data."""
    x = torch.rand(2, 40, 64)
    kw = dict(hidden=8, latent=2, steps=5, batch_size=8, lr=1e-2, seed=FRESH, device="cpu")
    both = vae.train_vae(x, **kw)
    again = vae.train_vae(torch.stack([x[0], torch.rand(40, 64)]), **kw)
    z = torch.randn(2, 5, 2)
    with torch.no_grad():
        assert torch.allclose(both.decode_logits(z)[0], again.decode_logits(z)[0], atol=1e-6)


# ----------------------------------------------------------------------------- the language model
def test_gru_chains_compute_the_char_gru():
    """GRUChains holding copies of CharGRU weights gives CharGRU's logits, chain by chain."""
    models = [lm.build_model("gru", 11, seed=FRESH + s, d_embed=6, d_hidden=10) for s in range(3)]
    chains = charlm.GRUChains.from_char_grus(models)
    tokens = torch.randint(0, 11, (3, 4, 9), generator=torch.Generator().manual_seed(FRESH))
    with torch.no_grad():
        full = chains(tokens)
        ref = torch.stack([m(tokens[c]) for c, m in enumerate(models)])
        torch.testing.assert_close(full, ref, atol=1e-5, rtol=1e-5)
        logits, h = chains.step(tokens[..., 0], None)  # incremental decoding = the full pass
        steps = [logits]
        for t in range(1, 9):
            logits, h = chains.step(tokens[..., t], h)
            steps.append(logits)
        torch.testing.assert_close(torch.stack(steps, 2), full, atol=1e-5, rtol=1e-5)


def test_batched_lm_chains_are_independent():
    """Chain 0 trained next to one set of data equals chain 0 trained next to another."""
    c = charlm.corpus()
    x = c.train_ids[:64].expand(2, -1, -1).clone()
    y = x.clone()
    y[1] = c.train_ids[64:128]
    kw = dict(steps=3, batch_size=8, lr=1e-2, seed=FRESH)

    def model():
        return charlm.GRUChains(2, len(c.vocab), 4, 8, generator=torch.Generator().manual_seed(FRESH))

    a, b = charlm.train_chains(model(), x, **kw), charlm.train_chains(model(), y, **kw)
    with torch.no_grad():
        torch.testing.assert_close(a(x[:, :5])[0], b(x[:, :5])[0], atol=1e-6, rtol=1e-6)
        assert not torch.allclose(a(x[:, :5])[1], b(x[:, :5])[1])


def test_lines_round_trip_through_the_fast_encoder_and_decoder():
    c = charlm.corpus()
    lines = list(c.train[:200]) + ["", "a"]
    ids = charlm.encode_lines(tuple(lines), c.vocab, c.width)
    assert torch.equal(ids.long(), c.vocab.encode_batch(lines, max_len=c.width))
    assert charlm.decode_lines(ids, c.vocab) == lines
    with pytest.raises(ValueError, match="not in the vocabulary"):
        charlm.encode_lines(("1 2 3",), c.vocab, c.width)


def test_sampling_is_deterministic_pads_after_eos_and_follows_the_model():
    c = charlm.corpus()
    model = charlm.GRUChains(2, len(c.vocab), 4, 8, generator=torch.Generator().manual_seed(FRESH))
    a = charlm.sample_chains(model, 300, 20, generator=torch.Generator().manual_seed(FRESH), temperature=1.0)
    b = charlm.sample_chains(model, 300, 20, generator=torch.Generator().manual_seed(FRESH), temperature=1.0)
    assert torch.equal(a, b) and a.shape == (2, 300, 21) and (a[..., 0] == c.vocab.bos_id).all()
    for row in a.reshape(-1, 21):
        eos = (row == c.vocab.eos_id).nonzero()
        if len(eos):
            assert (row[eos[0, 0] + 1 :] == 0).all()
    # the first character's frequencies follow the model's first next-token distribution
    with torch.no_grad():
        probs = torch.softmax(model.step(torch.full((2, 1), c.vocab.bos_id), None)[0][:, 0], -1)
    first = torch.stack([torch.bincount(a[k, :, 1], minlength=len(c.vocab)) for k in range(2)]).float() / 300
    assert (first - probs).abs().max() < 0.1


def test_charlm_engine_is_deterministic_and_arms_share_generation_zero():
    kw = dict(steps=2, d_hidden=8, d_embed=4, n_heldout=20, n_measure=20, n_bleu=4, batch_size=8, device="cpu")
    a, ex = charlm.charlm_chains(64, 1, 2, regime="mix", real_fraction=0.5, temperature=1.0, seed=FRESH, **kw)
    b, _ = charlm.charlm_chains(64, 1, 2, regime="mix", real_fraction=0.5, temperature=1.0, seed=FRESH, **kw)
    pd.testing.assert_frame_equal(a, b)
    assert set(ex["gen_ppl"]) == {0, 1} and ex["gen_ppl"][1].shape == (2, 20)
    assert (a[a.quantity == "heldout_ppl"]["value"] > 1).all()
    other, _ = charlm.charlm_chains(64, 1, 2, regime="mix", real_fraction=0.0, temperature=0.7, seed=FRESH, **kw)
    held = [f[(f.generation == 0) & (f.quantity == "heldout_ppl")] for f in (a, other)]
    pd.testing.assert_frame_equal(held[0], held[1])  # the same generation-0 models


def test_families_in_background_threads_give_the_serial_numbers():
    """Families trained at the same time, in threads of one interpreter, give a serial run's
    numbers bit for bit: every stream is an explicit generator (and memoised fits are locked)."""
    from concurrent.futures import ThreadPoolExecutor

    lm_kw = dict(steps=3, d_hidden=8, d_embed=4, n_heldout=20, n_measure=20, n_bleu=4, batch_size=8, device="cpu")
    vae_kw = dict(steps=5, n_measure=20, hidden=16, latent=2, regime="mix", real_fraction=0.0, class_decay=0.7)
    jobs = {
        "lm": lambda: charlm.charlm_chains(
            64, 2, 2, regime="mix", real_fraction=0.5, temperature=0.7, seed=FRESH, **lm_kw
        )[0],  # fmt: skip
        "vae": lambda: vae.vae_chains(60, 2, 2, seed=FRESH, device="cpu", **vae_kw)[0],
        "gmm": lambda: mixture.mixture_chains(200, 3, 4, **GMM)[0],
    }
    serial = {name: job() for name, job in jobs.items()}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items() if name != "gmm"}
        gmm = jobs["gmm"]()
        threaded = {name: f.result() for name, f in futures.items()} | {"gmm": gmm}
    for name in jobs:
        pd.testing.assert_frame_equal(threaded[name], serial[name], check_exact=True)


def test_the_language_model_in_a_worker_process_gives_the_serial_numbers():
    """The chapter's `parallel`: charlm_arms in a spawned worker with one torch thread, as
    chapter 2 runs it, returns the in-process frames bit for bit."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    arms = [("T = 1", 0.5, 1.0), ("T = 0.7", 0.5, 0.7)]
    kw = dict(steps=3, d_hidden=8, d_embed=4, n_heldout=20, n_measure=20, n_bleu=4, batch_size=8, device="cpu")
    here = charlm.charlm_arms(64, 2, 2, arms, seed=FRESH, **kw)
    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=torch.set_num_threads, initargs=(1,)) as w:
        there = w.submit(charlm.charlm_arms, 64, 2, 2, arms, seed=FRESH, **kw).result()
    assert list(there) == [a for a, _, _ in arms]
    for arm in here:
        pd.testing.assert_frame_equal(there[arm][0], here[arm][0], check_exact=True)
        for t, ppl in here[arm][1]["gen_ppl"].items():
            np.testing.assert_array_equal(there[arm][1]["gen_ppl"][t], ppl)


def test_word_shares_of_real_text_are_one():
    c = charlm.corpus()
    rare, common, _ = charlm.word_shares(list(c.train), c)
    assert rare == pytest.approx(1.0) and common == pytest.approx(1.0)


# ----------------------------------------------------------------------------- loaders
def test_shakespeare_split_by_play_is_deterministic():
    a, b = data.shakespeare(), data.shakespeare()
    pd.testing.assert_frame_equal(a, b)
    assert a["play"].nunique() == 38
    per_play = a.groupby("play")["split"].nunique()
    assert (per_play == 1).all()  # no play on both sides
    assert set(a.loc[a.split == "heldout", "play"]) == set(data.HELDOUT_PLAYS)
    assert a["text"].str.len().sum() > 3_000_000
    assert not a["text"].str.contains(r"[\*_\[\]#\\]").any()


def test_digits_loader():
    X, y = data.digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32 and 0 <= X.min() and X.max() == 1
    assert set(y) == set(range(10))


# ----------------------------------------------------------------------------- bad input
LM = dict(regime="mix", real_fraction=0.0, d_hidden=8, steps=1, batch_size=8, n_measure=10, device="cpu", seed=0)
VAE = dict(regime="mix", real_fraction=0.0, class_decay=0.7, steps=1, device="cpu", seed=0)
GMM = dict(regime="mix", real_fraction=0.0, q=0.05, seed=0, pr_points=0, pr_generations=())


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: check_family("rnn"), "family must be one of"),
        (lambda: charlm.charlm_chains(64, 1, 2, **{**LM, "temperature": 0.0}), "temperature must be > 0"),
        (lambda: charlm.charlm_chains(10, 1, 2, temperature=1.0, **LM), "n must be an integer >= 32"),
        (lambda: charlm.charlm_chains(64, 1, 2, temperature=1.0, **{**LM, "real_fraction": 1.5}), "real_fraction"),
        (lambda: charlm.corpus(4), "max_chars must be"),
        (lambda: vae.vae_chains(400, 1, 2, **{**VAE, "real_fraction": -0.1}), "real_fraction must lie in"),
        (lambda: vae.vae_chains(10, 1, 2, **VAE), "n must be an integer >= 20"),
        (lambda: vae.vae_chains(400, 1, 2, **{**VAE, "class_decay": 0.0}), "class_decay must lie in"),
        (lambda: mixture.mixture_chains(5, 1, 2, **GMM), "n must be an integer >= 10"),
        (lambda: mixture.mixture_chains(100, 1, 2, **{**GMM, "regime": "recycle"}), "regime must be one of"),
        (lambda: mixture.mixture_chains(100, 1, 2, **{**GMM, "q": 0.7}), "q must lie in"),
        (lambda: mixture.mixture_chains(100, 1, 2, **{**GMM, "pr_points": 2}), "pr_points must be"),
        (lambda: mixture.fit_mixtures(np.zeros((2, 2, 2)), 3, seed=0), "at least k = 3 points"),
        (lambda: tot.cut_tail(tot.zipf(10, 2.0), 11), "k must be an integer in"),
        (lambda: tot.zipf(10, 1.0), "beta must be > 1"),
        (lambda: tot.mix_clean(np.ones(2) / 2, np.ones(2) / 2, 1.2), "pi must lie in"),
        (lambda: tot.simulate_error(np.ones(2) / 2, np.ones(2) / 2, [10, 5], 2, seed=0), "T_grid must be"),
        (lambda: data.shakespeare(heldout=("hamlet", "no-such-play")), "heldout must name"),
    ],
)
def test_bad_input_raises_naming_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    "overrides,name",
    [
        (dict(temperature=0.0), "temperature"),
        (dict(real_fractions=[0.1, 1.5]), "real_fractions"),
        (dict(real_fraction=1.5), "real_fraction"),
        (dict(vae_real_fraction=-0.2), "vae_real_fraction"),
        (dict(lm_n=10), "lm_n"),
        (dict(lm_n=100, lm_batch=128), "lm_n"),
        (dict(lm_chains=1), "lm_chains"),
        (dict(vae_n=5), "vae_n"),
        (dict(tale_k=30000), "tale_k"),
        (dict(device="tpu"), "device"),
        (dict(families=["gmm"]), "families"),
        (dict(families=[]), "families"),
    ],
)
def test_spec_refuses_bad_parameters(overrides, name):
    with pytest.raises(ValueError, match=name):
        SPEC.resolve(scale="smoke", **overrides)


def test_families_listed():
    assert FAMILIES == ("mixture", "vae", "charlm", "tale_of_tails")
    for f in FAMILIES:
        assert check_family(f) == f


def test_families_parameter_uses_the_one_vocabulary():
    param = SPEC.param("families")
    assert param.choices == FAMILIES
    assert SPEC.resolve(scale="smoke")["families"] == list(FAMILIES)  # default: all four


def test_unknown_family_refused_by_the_runner_before_a_kernel_starts():
    out = subprocess.run(
        [sys.executable, "-m", "vanishing_tails", "run", "families", "-p", "families", "[gmm]"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    err = out.stderr.strip()
    assert "parameter 'families'" in err and "gmm" in err and err.count("\n") == 0, err


@pytest.mark.chapter
def test_chapter_runs_one_family_with_only_its_claims(tmp_path):
    """The chapter with families = [tale_of_tails]: only the memoriser's figures, values and claims."""
    params = SPEC.resolve(scale="smoke", seed=FRESH, families=["tale_of_tails"])
    results = run_chapter(SPEC, params, tmp_path, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["parameters"]["families"] == ["tale_of_tails"]
    assert [c["id"] for c in saved["claims"]] == [c.id for c in spec_for(["tale_of_tails"]).claims]
    assert not contradictions(results["claims"]), results["claims"]
    assert saved["figures"] == ["fig-real-worth", "fig-tale"]
    assert not [k for k in saved["values"] if k.startswith(("gmm-", "vae-", "lm-"))]


def test_adam_matches_torch_adam_exactly():
    """fitting.Adam reproduces torch.optim.Adam's trajectory bit for bit (the chapter's numbers do not move)."""
    from vanishing_tails.experiments.families.fitting import Adam

    x = torch.rand(3, 100, 64, generator=torch.Generator().manual_seed(0))

    def run(make_opt):
        gen = torch.Generator().manual_seed(1)
        model = vae.BatchedVAE(3, 64, 32, 4, generator=gen)
        opt = make_opt(model.parameters())
        for _ in range(25):
            idx = torch.randint(100, (3, 16), generator=gen)
            loss = model.loss(x[torch.arange(3)[:, None], idx], torch.randn(3, 16, 4, generator=gen))
            opt.zero_grad()
            loss.backward()
            opt.step()
        return [p.detach().clone() for p in model.parameters()]

    ours, theirs = run(lambda p: Adam(p, lr=1e-2)), run(lambda p: torch.optim.Adam(p, lr=1e-2))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


# ----------------------------------------------------------------------------- VAE and LM trajectories
VAE_TINY = dict(n=200, generations=3, n_seeds=2, steps=100, hidden=32, latent=4, batch_size=64, n_measure=200,
                class_decay=0.7, real_fractions=[0.25, 0.5], real_fraction=0.0, q=0.1)  # fmt: skip
LM_TINY = dict(n=128, generations=2, n_seeds=2, steps=30, d_hidden=32, batch_size=32, n_measure=100, max_chars=24,
               temperature=0.7, real_fractions=[0.25, 0.5], real_fraction=0.0, q=0.1)  # fmt: skip


@pytest.fixture(scope="module")
def vae_traj():
    return vae.trajectory(**VAE_TINY, seed=FRESH)


@pytest.fixture(scope="module")
def lm_traj():
    return charlm.trajectory(**LM_TINY, seed=FRESH)


def _check_common_columns(traj, arms, n_seeds, steps):
    from vanishing_tails.core import tails

    assert list(traj.columns) == ["experiment", "arm", "replicate", "step", "mechanism", *tails.COLUMNS]
    assert set(traj.arm) == set(arms) and set(traj.experiment) == {"families"}
    assert set(traj.mechanism) <= set(tails.MECHANISMS)
    assert set(traj.replicate) == set(range(n_seeds)) and set(traj.step) == set(range(steps + 1))
    assert len(traj) == len(arms) * n_seeds * (steps + 1)
    assert traj[list(tails.COLUMNS)].notna().all().all() and np.isfinite(traj.quality).all()
    assert (traj.support >= 0).all() and (traj.q_tail_mass >= 0).all() and (traj.kl_from_start >= 0).all()
    assert traj.error_mass.between(0, 1).all() and traj.mode_share.between(0, 1).all()
    assert np.allclose(traj[traj.step == 0].kl_from_start, 0)


def test_vae_trajectory_has_the_common_columns_with_sane_ranges(vae_traj):
    _check_common_columns(vae_traj, {"replace", "accumulate", "mix 0.25", "mix 0.5"}, 2, 3)
    assert set(vae_traj.mechanism) == {"error"}
    first = vae_traj[vae_traj.step == 0]
    assert first.groupby("replicate")[["q_tail_mass", "error_mass", "quality"]].nunique().eq(1).all().all()


def test_vae_trajectory_is_reproducible(vae_traj):
    pd.testing.assert_frame_equal(vae.trajectory(**VAE_TINY, seed=FRESH), vae_traj)


def test_lm_trajectory_has_the_common_columns_with_sane_ranges(lm_traj):
    _check_common_columns(lm_traj, {"T = 1", "T = 0.7", "mix 0.25", "mix 0.5"}, 2, 2)
    mech = lm_traj.groupby("arm").mechanism.first()
    assert mech["T = 0.7"] == "tilt" and mech["T = 1"] == mech["mix 0.5"] == "error"
    first = lm_traj[lm_traj.step == 0]
    assert first.groupby("replicate").quality.nunique().eq(1).all()  # one generation-0 model per chain


def test_lm_trajectory_is_reproducible(lm_traj):
    pd.testing.assert_frame_equal(charlm.trajectory(**LM_TINY, seed=FRESH), lm_traj)


def _moves(traj, arm, col):
    """Mean over replicates of |last step − step 0| of one column in one arm."""
    wide = traj[traj.arm == arm].pivot_table(index="replicate", columns="step", values=col)
    return float((wide.iloc[:, -1] - wide.iloc[:, 0]).abs().mean())


def test_vae_trajectory_does_not_move_under_the_null(vae_traj):
    """Fresh real images every generation (real_fraction = 1): each generation is a new fit to the
    real law, so nothing compounds and the quality stays where it started, while under replace it
    falls; with no generation at all (generations = 0) nothing moves by construction."""
    null = vae.trajectory(**{**VAE_TINY, "real_fraction": 1.0}, seed=FRESH)
    assert _moves(null, "replace", "quality") < _moves(vae_traj, "replace", "quality")
    assert _moves(null, "replace", "quality") < 0.1 * abs(vae_traj[vae_traj.step == 0].quality.mean())
    none = vae.trajectory(**{**VAE_TINY, "generations": 0}, seed=FRESH)
    assert none.step.unique().tolist() == [0] and np.allclose(none.kl_from_start, 0)


def test_lm_trajectory_does_not_move_under_the_null(lm_traj):
    null = charlm.trajectory(**{**LM_TINY, "real_fraction": 1.0}, seed=FRESH)
    assert _moves(null, "T = 1", "quality") < _moves(lm_traj, "T = 1", "quality")
    assert _moves(null, "T = 1", "quality") < 0.05  # nats per character
    none = charlm.trajectory(**{**LM_TINY, "generations": 0}, seed=FRESH)
    assert none.step.unique().tolist() == [0] and np.allclose(none.kl_from_start, 0)


def test_members_refuse_bad_regimes_and_fractions():
    from vanishing_tails.experiments.families.members import recursive_members

    kw = dict(real_sample=None, groups=[0], n=10, generations=1, seed=0)
    with pytest.raises(ValueError, match="regime must be one of"):
        recursive_members(None, None, None, regimes=["swap"], real_fractions=[0.0], **kw)
    with pytest.raises(ValueError, match="real_fraction must lie"):
        recursive_members(None, None, None, regimes=["mix"], real_fractions=[1.5], **kw)
