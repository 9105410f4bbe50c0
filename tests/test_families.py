"""Chapter 2's engines: oracles, determinism, the one loop, the loaders and bad input.

Seeds here are fresh (never used while the chapter was written).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from vanishing_tails.core import collapse, data
from vanishing_tails.experiments.families import charlm, mixture, vae
from vanishing_tails.experiments.families import tale_of_tails as tot
from vanishing_tails.experiments.families.fitting import seeded_fit
from vanishing_tails.experiments.families.spec import FAMILIES, check_family
from vanishing_tails.book.runner import run_chapter
from vanishing_tails.experiments.families.spec import SPEC

FRESH = 9173


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


def test_cut_tail_plateau_and_mixing_restores_scaling():
    p = tot.zipf(10000, 2.0)
    q = tot.cut_tail(p, 100)
    plateau = tot.tail_mass_beyond(p, 100)
    big = np.array([1e6, 1e7])
    assert np.allclose(tot.expected_error(p, q, big), plateau, rtol=1e-6)
    mixed = tot.expected_error(p, tot.mix_clean(q, p, 0.2), big)
    assert mixed[1] < mixed[0] < plateau
    assert tot.expected_error(p, p, 1e7) < 0.1 * plateau


def test_hutter_recursion_is_irreversible_and_accumulate_never_forgets():
    p = tot.zipf(3000, 2.0)
    rep = tot.hutter_chains(p, 2000, 8, 6, k=50, regime="replace", seed=FRESH)
    support = rep[rep.quantity == "support"].pivot(index="chain", columns="generation", values="value")
    assert (support.diff(axis=1).iloc[:, 1:] <= 0).all().all()  # an item once lost never returns
    assert (support.iloc[:, 1:] <= 50).all().all()  # a top-k generator passes on at most k items
    acc = tot.hutter_chains(p, 2000, 8, 6, k=50, regime="accumulate", seed=FRESH)
    err = acc[acc.quantity == "error"].pivot(index="chain", columns="generation", values="value")
    assert np.allclose(err.to_numpy(), err[[0]].to_numpy())


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
    out = collapse.recursive_fit(fit, sample, lambda m, t, rng: {"sd": m[1]}, real_sample=real_sample,
                                 n=20, generations=4, regime="accumulate",
                                 concat=lambda ps: np.concatenate(ps, axis=1), seed=FRESH)
    assert list(out.columns) == ["generation", "quantity", "chain", "value"]
    assert len(out) == 5 * 5 and set(out.chain) == set(range(5))


def test_measurement_never_changes_the_training_trajectory():
    real_sample, fit, sample = _gauss(False)
    plain = collapse.recursive_fit(fit, sample, lambda m, t: {"sd": m[1]}, real_sample=real_sample,
                                   n=10, generations=6, regime="replace", seed=FRESH)

    def greedy_measure(m, t, rng):
        rng.standard_normal(1000)  # a measurement that draws a lot of randomness
        return {"sd": m[1]}

    greedy = collapse.recursive_fit(fit, sample, greedy_measure, real_sample=real_sample,
                                    n=10, generations=6, regime="replace", seed=FRESH)
    pd.testing.assert_frame_equal(plain, greedy)


def test_real_fraction_one_trains_on_fresh_real_data_only():
    calls = []

    def sample(m, n, rng):
        calls.append(n)
        return rng.standard_normal(n)

    collapse.recursive_fit(lambda x, rng: x.std(), sample, lambda m, t: {"sd": m},
                           real_sample=lambda n, rng: rng.standard_normal(n), n=10, generations=3,
                           regime="mix", real_fraction=1.0, concat=np.concatenate, seed=FRESH)
    assert calls == []


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


# ----------------------------------------------------------------------------- engines: determinism and sense
def test_mixture_logpdf_matches_scipy():
    m = mixture.REAL_MIXTURE
    x = m.sample(50, np.random.default_rng(FRESH))
    ref = np.log(sum(w * stats.multivariate_normal(mu, S).pdf(x) for w, mu, S in zip(m.weights, m.means, m.covs)))
    assert np.allclose(m.logpdf(x), ref)
    # the real mixture measured on its own samples sits at 1 on every region
    meas = mixture.tail_measures(m.sample(200_000, np.random.default_rng(FRESH))[None], q=0.05)
    for k, v in meas.items():
        assert v[0] == pytest.approx(1.0, abs=0.08), k


def test_mixture_engine_is_deterministic():
    kw = dict(regime="mix", real_fraction=0.2, n_measure=200)
    a, _ = mixture.mixture_chains(60, 3, 3, seed=FRESH, **kw)
    b, _ = mixture.mixture_chains(60, 3, 3, seed=FRESH, **kw)
    c, _ = mixture.mixture_chains(60, 3, 3, seed=FRESH + 1, **kw)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_vae_engine_is_deterministic():
    kw = dict(chains=2, steps=5, n_measure=20, hidden=16, latent=2, regime="replace")
    a, shots = vae.vae_chains(60, 1, seed=FRESH, snapshot_generations=(0, 1), **kw)
    b, _ = vae.vae_chains(60, 1, seed=FRESH, **kw)
    c, _ = vae.vae_chains(60, 1, seed=FRESH + 1, **kw)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    assert shots[1].shape == (16, 8, 8)
    assert {"rare_share", "common_share", "vendi", "atypical"} <= set(a.quantity)


def test_batched_vae_chains_are_independent():
    """Chain 0 trained alone equals chain 0 trained next to another chain's data."""
    x = torch.rand(2, 40, 64)
    kw = dict(hidden=8, latent=2, steps=5, batch_size=8, lr=1e-2, seed=FRESH)
    both = vae.train_vae(x, **kw)
    again = vae.train_vae(torch.stack([x[0], torch.rand(40, 64)]), **kw)
    z = torch.randn(2, 5, 2)
    with torch.no_grad():
        assert torch.allclose(both.decode_logits(z)[0], again.decode_logits(z)[0], atol=1e-6)


def test_charlm_engine_is_deterministic():
    kw = dict(regime="mix", real_fraction=0.5, steps=2, d_hidden=8, d_embed=4, n_heldout=20, n_measure=20,
              n_bleu=4, batch_size=8)
    a, ex = charlm.charlm_chain(64, 1, seed=FRESH, **kw)
    b, _ = charlm.charlm_chain(64, 1, seed=FRESH, **kw)
    pd.testing.assert_frame_equal(a, b)
    assert set(ex["gen_ppl"]) == {0, 1} and len(ex["gen_ppl"][1]) == 20
    assert (a[a.quantity == "heldout_ppl"]["value"] > 1).all()


def test_word_shares_of_real_text_are_one():
    c = charlm.corpus(48)
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
@pytest.mark.parametrize("call,match", [
    (lambda: check_family("rnn"), "family must be one of"),
    (lambda: charlm.charlm_chain(64, 1, temperature=0.0), "temperature must be > 0"),
    (lambda: charlm.charlm_chain(10, 1), "n must be an integer >= 32"),
    (lambda: charlm.charlm_chain(64, 1, regime="mix", real_fraction=1.5), "real_fraction must lie in"),
    (lambda: vae.vae_chains(400, 1, 2, regime="mix", real_fraction=-0.1), "real_fraction must lie in"),
    (lambda: vae.vae_chains(10, 1, 2), "n must be an integer >= 20"),
    (lambda: vae.vae_chains(400, 1, 2, class_decay=0.0), "class_decay must lie in"),
    (lambda: mixture.mixture_chains(5, 1, 2), "n must be an integer >= 10"),
    (lambda: mixture.mixture_chains(100, 1, 2, regime="recycle"), "regime must be one of"),
    (lambda: tot.cut_tail(tot.zipf(10, 2.0), 11), "k must be an integer in"),
    (lambda: tot.zipf(10, 1.0), "beta must be > 1"),
    (lambda: tot.mix_clean(np.ones(2) / 2, np.ones(2) / 2, 1.2), "pi must lie in"),
    (lambda: tot.simulate_error(np.ones(2) / 2, np.ones(2) / 2, [10, 5], 2), "T_grid must be"),
    (lambda: data.shakespeare(heldout=("hamlet", "no-such-play")), "heldout must name"),
])
def test_bad_input_raises_naming_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("overrides,name", [
    (dict(temperature=0.0), "temperature"),
    (dict(real_fractions=[0.1, 1.5]), "real_fractions"),
    (dict(vae_real_fraction=-0.2), "vae_real_fraction"),
    (dict(lm_n=10), "lm_n"),
    (dict(lm_n=100, lm_batch=128), "lm_n"),
    (dict(vae_n=5), "vae_n"),
    (dict(tale_k=30000), "tale_k"),
    (dict(device="tpu"), "device"),
    (dict(families=["gmm"]), "families"),
    (dict(families=[]), "families"),
])
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
    out = subprocess.run([sys.executable, "-m", "vanishing_tails", "run", "families", "-p", "families", "[gmm]"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    err = out.stderr.strip()
    assert "parameter 'families'" in err and "gmm" in err and err.count("\n") == 0, err


@pytest.mark.chapter
def test_chapter_runs_one_family_with_only_its_claims(tmp_path):
    """The chapter with families = [tale_of_tails]: only the memoriser's figures, values and claims."""
    params = SPEC.resolve(scale="smoke", seed=FRESH, families=["tale_of_tails"])
    run_chapter(SPEC, params, tmp_path, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["parameters"]["families"] == ["tale_of_tails"]
    ids = [c["id"] for c in saved["claims"]]
    assert len(ids) == 6 and all(i.startswith("tale-") for i in ids), ids
    assert all(c["holds"] for c in saved["claims"]), saved["claims"]
    assert saved["figures"] == ["fig-real-worth", "fig-tale"]
    assert not [k for k in saved["values"] if k.startswith(("gmm-", "vae-", "lm-"))]
