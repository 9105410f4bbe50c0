"""Unit and oracle tests of chapter 5's engines: the toy domains, the judges, DPO and its optimum."""

from __future__ import annotations

import copy
import inspect
import math

import numpy as np
import pandas as pd
import pytest
import torch

from vanishing_tails.core import domains as D
from vanishing_tails.core import lm, metrics
from vanishing_tails.core.checks import check_beta
from vanishing_tails.core.rl import kl_regularised_optimum
from vanishing_tails.experiments.preference import stacked as pfs
from vanishing_tails.experiments.preference import tuning as pf
from vanishing_tails.experiments.preference.spec import ARCHS, JUDGES, SPEC

# ------------------------------------------------------------------ the interpreter


@pytest.mark.parametrize(
    "program, x, value",
    [
        ("x", 3, 3),
        ("2", 0, 2),
        ("x + 1", 2, 3),
        ("x * 2 + 1", 2, 5),
        ("1 + 2 * x", 3, 7),
        ("x * x * x", 3, 27),
        ("3 - x - 1", 1, 1),
        ("2 - 3", 0, -1),
        ("x - 2 * x", 4, -4),
        ("3 * x - x * 2", 2, 2),
        ("1 + 1 + 1", 9, 3),
    ],
)
def test_interpreter_on_known_programs(program, x, value):
    assert D.run_program(program, x) == value


@pytest.mark.parametrize("program", ["", "x +", "+ x", "x x", "x + + 1", "x / 2", "y", "x + a", "( x )"])
def test_interpreter_refuses_malformed_programs(program):
    assert D.run_program(program, 1) is None


def test_interpreter_agrees_with_python_on_every_program():
    for prog in D.enumerate_programs():
        for x in D.PROBES:
            assert D.run_program(prog, x) == eval(prog, {"x": x})  # noqa: S307 - our own grammar


def test_code_domain_structure():
    d = D.code_domain(6, 0.5)
    assert d.n_outputs == 4 + 48 + 576 == len(set(d.outputs))
    assert d.valid.shape == d.prior.shape == (6, d.n_outputs)
    np.testing.assert_allclose(d.prior.sum(-1), 1)
    np.testing.assert_allclose((d.prior * d.valid).sum(-1), 0.5)  # valid_share
    for p, prompt in enumerate(d.prompts):
        a, t = (int(tok.split(":")[1]) for tok in prompt.split()[1:])
        ok = np.array([D.run_program(o, a) == t for o in d.outputs])
        assert (ok == d.valid[p]).all()
        assert len(np.unique(d.semantic[ok])) >= 2  # several ways of being right
    sem = dict(zip(d.outputs, d.semantic))
    assert sem["x + x"] == sem["2 * x"] == sem["x * 2"] != sem["x * x"]
    assert D.program_shape("x * 2 + 1") == "x * N + N"
    assert d.lookup(["x + x", "x +", " x  + x "]).tolist() == [d.index["x + x"], -1, d.index["x + x"]]


def test_creative_domain_structure():
    d = D.creative_domain(6, 0.3)
    assert d.n_outputs == 5 * 6 * 4 * 13 == len(set(d.outputs))
    np.testing.assert_allclose((d.prior * d.valid).sum(-1), 0.3)
    assert D.parse_line("grey sea sings under moon")["noun2"] == "moon"
    assert D.parse_line("sea grey sings") is None
    assert D.line_shape("grey sea sings") == "ADJ N V"
    assert D.line_cluster("sea burns beyond city") == "water/lively/built"
    sea = d.prompts.index("poem sea")
    assert d.valid[sea, d.index["moon sleeps under sea"]] and not d.valid[sea, d.index["moon sleeps"]]


# ----------------------------------------------------------------------- the judges


def test_rewards_are_standardised_under_the_reference():
    for name in D.DOMAINS:
        d = D.make_domain(name, 3, 0.5)
        for judge in pf.JUDGES:
            r = pf.judge_rewards(d, judge, d.prior, brevity=0.05)
            np.testing.assert_allclose((d.prior * r).sum(-1), 0, atol=1e-10)
            np.testing.assert_allclose((d.prior * r**2).sum(-1), 1, atol=1e-10)


def test_convergent_judge_prefers_valid_then_short():
    d = D.code_domain(6, 0.5)
    s = pf.judge_scores(d, "correct", d.prior, brevity=0.05)
    p = d.prompts.index("code in:2 out:4")
    i = d.index
    assert d.valid[p, i["x * 3 - 2"]] and not d.valid[p, i["x + 1"]]
    assert s[p, i["x + x"]] > s[p, i["x * 3 - 2"]] > s[p, i["x + 1"]] > s[p, i["x + 1 + 3"]]


def test_distinctiveness_judge_prefers_rare_ngrams():
    d = D.creative_domain(6, 0.5)
    s = pf.judge_scores(d, "distinct", d.prior, brevity=0.05)
    p = d.prompts.index("poem sea")
    # the cliché of the corpus scores below a line made of rare pairings
    assert s[p, d.index["grey sea sings"]] < s[p, d.index["broken stone waits beyond city"]]
    # by hand: mean surprisal of the 1- and 2-grams under the pooled reference n-grams
    table = pf.gram_table(d)
    q = table.expected_distribution(d.prior[p])
    gid = {g: k for k, g in enumerate(table.grams)}
    grams = [("sea",), ("sings",), ("sea", "sings")]
    want = np.mean([-np.log(q[gid[g]]) for g in grams])
    assert math.isclose(s[p, d.index["sea sings"]], want, rel_tol=1e-12)


def test_unknown_judge_and_bad_beta_are_refused():
    d = D.code_domain(2, 0.5)
    with pytest.raises(ValueError, match="judge"):
        pf.judge_scores(d, "nice", d.prior, brevity=0.05)
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="beta"):
            pf.dpo_loss(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), bad)
        with pytest.raises(ValueError, match="beta"):
            check_beta(bad)
    with pytest.raises(ValueError, match="betas"):
        pf.optimum_curve(d, d.prior, pf.judge_rewards(d, "correct", d.prior, brevity=0.05), [1.0, 0.0])
    with pytest.raises(ValueError, match="judge"):
        pf.run_experiment(seed=0, **{**TINY, "arms": [("code", "nice")]})
    with pytest.raises(ValueError, match="domain"):
        pf.run_experiment(seed=0, **{**TINY, "arms": [("prose", "correct")]})
    with pytest.raises(ValueError, match="judge_scale"):
        pf.run_experiment(seed=0, **{**TINY, "judge_scale": -1.0})
    with pytest.raises(ValueError, match="beta"):
        pf.run_experiment(seed=0, **{**TINY, "beta": float("inf")})


@pytest.mark.parametrize("maker", [D.code_domain, D.creative_domain])
def test_empty_domain_is_refused(maker):
    with pytest.raises(ValueError, match="n_prompts"):
        maker(0, 0.5)
    with pytest.raises(ValueError, match="valid_share"):
        maker(2, valid_share=1.0)
    with pytest.raises(ValueError, match="arms"):
        pf.check_arms([])


# ------------------------------------------------------------------------- DPO loss


def test_dpo_loss_matches_a_hand_computation():
    # margin = beta * ((pc - rc) - (pr - rr)) = 0.5 * ((-1 + 1.5) - (-2 + 1)) = 0.75
    loss = pf.dpo_loss(torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.5]), torch.tensor([-1.0]), 0.5)
    assert math.isclose(float(loss), math.log1p(math.exp(-0.75)), rel_tol=1e-6)
    # at the reference the loss is log 2 and its gradient pushes chosen up, rejected down
    pc = torch.tensor([-3.0], requires_grad=True)
    pr = torch.tensor([-2.0], requires_grad=True)
    loss = pf.dpo_loss(pc, pr, torch.tensor([-3.0]), torch.tensor([-2.0]), 2.0).sum()
    assert math.isclose(float(loss.detach()), math.log(2), rel_tol=1e-6)
    loss.backward()
    assert math.isclose(float(pc.grad), -1.0, rel_tol=1e-6)  # -beta * sigma(0)
    assert math.isclose(float(pr.grad), 1.0, rel_tol=1e-6)


def test_population_dpo_minimiser_is_the_kl_regularised_optimum():
    """Oracle: a tabular policy minimising the exact population DPO loss reaches p_ref e^{r/beta}/Z."""
    rng = np.random.default_rng(7)
    K, beta = 6, 0.7
    p_ref = rng.dirichlet(np.ones(K))
    r = rng.normal(size=K)
    log_ref = torch.tensor(np.log(p_ref))
    w = torch.tensor(np.outer(p_ref, p_ref) / (1 + np.exp(-(r[:, None] - r[None, :]))))  # P(i wins j)
    logits = torch.zeros(K, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [logits], lr=1, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        lp = torch.log_softmax(logits, 0)
        li = lp[:, None].expand(K, K)
        lj = lp[None, :].expand(K, K)
        loss = (w * pf.dpo_loss(li, lj, log_ref[:, None].expand(K, K), log_ref[None, :].expand(K, K), beta)).sum()
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    got = torch.softmax(logits, 0).detach().numpy()
    np.testing.assert_allclose(got, kl_regularised_optimum(p_ref, r, beta), atol=1e-6)


def test_preference_labels_follow_bradley_terry():
    p_ref = np.array([[0.5, 0.5]])
    r = np.array([[0.8, -0.4]])
    pairs = pf.preference_pairs(p_ref, r, 40000, rng=np.random.default_rng(3))
    assert (pairs.chosen != pairs.rejected).all()
    n = len(pairs)
    p = 1 / (1 + math.exp(-1.2))
    z = ((pairs.chosen == 0).mean() - p) / math.sqrt(p * (1 - p) / n)
    assert abs(z) < 4


# ------------------------------------------------------------------ the exact optimum


def test_optimum_entropy_limits():
    """beta -> inf: H(p_ref); beta -> 0: H(p_ref | argmax r) (= log|A| when p_ref is flat on A)."""
    d = D.code_domain(4, 0.5)
    rng = np.random.default_rng(11)
    p_ref = rng.dirichlet(np.ones(d.n_outputs), size=d.n_prompts)
    for judge in pf.JUDGES:
        r = pf.judge_rewards(d, judge, p_ref, brevity=0.05)
        lim = pf.optimum_limits(p_ref, r)
        curve = pf.optimum_curve(d, p_ref, r, [1e-4, 1e4])
        hi = curve[curve.beta == 1e4].set_index("prompt")["entropy"]
        lo = curve[curve.beta == 1e-4].set_index("prompt")["entropy"]
        np.testing.assert_allclose(hi, metrics.entropy(p_ref), atol=1e-3)
        np.testing.assert_allclose(hi, lim["entropy_beta_inf"], atol=1e-3)
        np.testing.assert_allclose(lo, lim["entropy_beta_0"], atol=1e-3)
    # flat on the argmax set: log |A|
    flat = np.full((1, 5), 0.2)
    rr = np.array([[1.0, 1.0, 0.0, 1.0, -2.0]])
    lim = pf.optimum_limits(flat, rr)
    assert int(lim["argmax_size"].iloc[0]) == 3
    assert math.isclose(float(lim["entropy_beta_0"].iloc[0]), math.log(3), rel_tol=1e-12)
    star = kl_regularised_optimum(flat, rr, 1e-3)
    assert math.isclose(float(metrics.entropy(star)[0]), math.log(3), rel_tol=1e-9)


def test_convergent_optimum_entropy_falls_monotonically():
    d = D.code_domain(6, 0.5)
    r = pf.judge_rewards(d, "correct", d.prior, brevity=0.05)
    curve = pf.optimum_curve(d, d.prior, r, np.geomspace(0.05, 20, 15))
    h = curve.groupby("beta")["entropy"].mean().to_numpy()
    assert (np.diff(h) > 0).all()  # larger beta, closer to the reference, higher entropy
    assert h[-1] < metrics.entropy(d.prior).mean()


def test_exact_metrics_of_the_reference():
    d = D.creative_domain(3, 0.5)
    r = pf.judge_rewards(d, "distinct", d.prior, brevity=0.05)
    ex = pf.exact_metrics(d, d.prior, d.prior, r, optimum=d.prior)
    np.testing.assert_allclose(ex["win rate"], 0.5, atol=1e-12)  # a model against itself
    np.testing.assert_allclose(ex["KL to optimum"], 0, atol=1e-12)
    np.testing.assert_allclose(ex["pass rate (exact)"], 0.5)
    np.testing.assert_allclose(ex["entropy"], metrics.entropy(d.prior))


def test_sample_metrics_estimate_the_exact_pair_probabilities():
    """Oracle: pair shares over samples are unbiased for the exact two-draw probabilities."""
    d = D.code_domain(1, 0.5)
    p = d.prior
    ex = pf.exact_metrics(d, p, p, pf.judge_rewards(d, "correct", p, brevity=0.05)).iloc[0]
    rng = np.random.default_rng(5)
    reps = [
        pf.sample_metrics(d, 0, [d.outputs[i] for i in rng.choice(d.n_outputs, 40, p=p[0])], seed=0) for _ in range(300)
    ]
    reps = pd.DataFrame(reps)
    for sample_name, exact_name in [
        ("effective semantic", "effective semantic (exact)"),
        ("semantic", "semantic (exact)"),
        ("syntactic", "syntactic (exact)"),
        ("pass rate", "pass rate (exact)"),
    ]:
        z = (reps[sample_name].mean() - ex[exact_name]) / (reps[sample_name].std() / math.sqrt(len(reps)))
        assert abs(z) < 4, (sample_name, z)


def test_self_bleu_on_tuned_samples_equals_scoring_every_text():
    import sacrebleu

    rng = np.random.default_rng(2)
    d = D.creative_domain(1, 0.5)
    texts = [d.outputs[i] for i in rng.choice(d.n_outputs, 30, p=d.prior[0])]
    for sample in (texts, ["a b c", "a b c", "d e"]):
        brute = np.mean([sacrebleu.sentence_bleu(t, sample[:i] + sample[i + 1 :]).score for i, t in enumerate(sample)])
        assert math.isclose(metrics.self_bleu(sample), brute, rel_tol=1e-12)


# ------------------------------------------------------------- models and determinism


NATURAL = [("code", "correct"), ("creative", "distinct")]
TINY = dict(
    arms=pf.ARMS,
    beta=1.0,
    sweep_betas=[0.5],
    sweep_arms=NATURAL,
    n_references=1,
    n_prompts=2,
    valid_share=0.5,
    corpus_size=400,
    pretrain_steps=5,
    n_pairs=16,
    dpo_steps=3,
    lr=3e-3,
    n_samples=6,
    judge_scale=1.0,
    brevity=0.0,
    mix_lambdas=[],
    arch="gru",
    device="cpu",
    theory_betas=[0.5, 2.0],
    batch_size=8,
)


def test_run_experiment_is_deterministic_and_tidy():
    a = pf.run_experiment(seed=3, **TINY)
    b = pf.run_experiment(seed=3, **TINY)
    for key in ("samples", "exact", "theory", "limits", "training", "top", "reference"):
        pd.testing.assert_frame_equal(
            a[key].drop(columns="cpu_seconds", errors="ignore"), b[key].drop(columns="cpu_seconds", errors="ignore")
        )
    c = pf.run_experiment(seed=4, **TINY)
    assert not a["exact"]["value"].equals(c["exact"]["value"])
    assert set(a["samples"]["stage"]) == {"before", "after"}
    assert set(a["exact"]["stage"]) == {"before", "after", "optimum"}
    assert set(a["samples"]["metric"]) == set(pf.SAMPLE_METRICS)
    assert set(zip(a["exact"]["domain"], a["exact"]["judge"])) == set(pf.ARMS)
    # the sweep trains the natural arms at the extra beta, exactly measured only
    assert set(a["exact"][a["exact"].domain.eq("code") & a["exact"].judge.eq("correct")]["beta"]) == {0.5, 1.0}
    assert set(a["exact"][a["exact"].domain.eq("code") & a["exact"].judge.eq("distinct")]["beta"]) == {1.0}
    assert set(a["samples"]["beta"]) == {1.0}


def test_reference_models_are_independent_replicates_named_by_their_index():
    """Adding a reference model leaves the first one's numbers untouched (named seed streams)."""
    one = pf.run_experiment(seed=5, **TINY)
    two = pf.run_experiment(seed=5, **{**TINY, "n_references": 2})
    assert sorted(two["reference"]["replicate"]) == [0, 1]
    first = two["exact"][two["exact"].replicate == 0].reset_index(drop=True)
    pd.testing.assert_frame_equal(first, one["exact"])
    second = two["exact"][two["exact"].replicate == 1].reset_index(drop=True)
    assert not np.allclose(first["value"], second["value"])
    ch = pf.changes(pd.concat([two["samples"], two["exact"]]))
    assert set(ch["replicate"]) == {0, 1}
    assert {"before", "after", "delta"} <= set(ch.columns)


def test_a_judge_that_prefers_nothing_flips_coins_and_keeps_the_reference_optimal():
    """The null configuration: judge_scale = 0 gives r = 0, coin-flip labels and p* = p_ref."""
    d = D.code_domain(2, 0.5)
    r = 0.0 * pf.judge_rewards(d, "correct", d.prior, brevity=0.05)
    np.testing.assert_array_equal(r, 0)
    np.testing.assert_allclose(kl_regularised_optimum(d.prior, r, 0.05), d.prior, atol=1e-12)
    p_ref = np.array([[0.5, 0.5]])
    pairs = pf.preference_pairs(p_ref, np.zeros((1, 2)), 40000, rng=np.random.default_rng(4))
    share = (pairs.chosen == 0).mean()
    assert abs(share - 0.5) < 4 * math.sqrt(0.25 / len(pairs))
    lim = pf.optimum_limits(d.prior, r)
    np.testing.assert_allclose(lim["entropy_beta_0"], lim["entropy_beta_inf"])  # every output ties
    assert pf.check_judge_scale(0) == 0.0
    for bad in (-0.5, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match="judge_scale"):
            pf.check_judge_scale(bad)


def test_output_logprobs_are_a_subprobability_and_sampling_agrees():
    doms = [D.make_domain(n, 1, 0.5) for n in D.DOMAINS]
    model, vocab, _ = pf.pretrain_reference(doms, corpus_size=2000, steps=60, seed=0, arch="gru", device="cpu")
    d = doms[0]
    probs, leak = pf.restrict(pf.output_logprobs(model, vocab, d))
    assert 0 <= leak[0] < 0.5
    np.testing.assert_allclose(probs.sum(-1), 1)
    texts = pf.sample_texts(model, vocab, d, 4000, generator=torch.Generator().manual_seed(0))[0]
    idx = d.lookup(texts)
    assert abs((idx < 0).mean() - leak[0]) < 4 * math.sqrt(leak[0] * (1 - leak[0]) / 4000) + 1e-3
    top = int(np.argmax(probs[0]))
    share = (idx == top).mean()
    want = probs[0, top] * (1 - leak[0])
    assert abs(share - want) < 4 * math.sqrt(want * (1 - want) / 4000)


def test_dpo_moves_toward_the_judge():
    doms = [D.make_domain(n, 2, 0.5) for n in D.DOMAINS]
    model, vocab, _ = pf.pretrain_reference(doms, corpus_size=4000, steps=150, seed=1, arch="gru", device="cpu")
    d = doms[0]
    p_ref, _ = pf.restrict(pf.output_logprobs(model, vocab, d))
    r = pf.judge_rewards(d, "correct", p_ref, brevity=0.05)
    pairs = pf.preference_pairs(p_ref, r, 256, rng=np.random.default_rng(0))
    policy, log = pf.train_dpo(model, vocab, d, pairs, beta=1.0, steps=60, lr=1e-3, seed=0)
    probs, _ = pf.restrict(pf.output_logprobs(policy, vocab, d))
    assert (probs * d.valid).sum() > (p_ref * d.valid).sum()
    assert list(log.columns) == ["step", "loss", "reward_margin", "accuracy"]
    # the reference is untouched
    p_again, _ = pf.restrict(pf.output_logprobs(model, vocab, d))
    np.testing.assert_array_equal(p_again, p_ref)


# ---------------------------------------------------------------------- chapter spec


def test_spec_refuses_bad_input_naming_the_parameter():
    for name, value in [
        ("beta", 0),
        ("beta", -1.0),
        ("sweep_betas", [1.0, 0.0]),
        ("n_prompts", 0),
        ("code_judge", "nice"),
        ("creative_judge", "pretty"),
        ("n_samples", 1),
    ]:
        with pytest.raises(ValueError, match=name):
            SPEC.resolve(scale="smoke", **{name: value})
    with pytest.raises(ValueError, match="creative_judge"):
        SPEC.resolve(scale="smoke", code_judge="distinct", creative_judge="distinct")
    P = SPEC.resolve(scale="smoke", code_judge="distinct", creative_judge="correct")
    assert P["code_judge"] == "distinct"


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["-p", "beta", "0"], "parameter 'beta'"),
        (["-p", "beta", "-0.5"], "parameter 'beta'"),
        (["-p", "n_prompts", "0"], "parameter 'n_prompts'"),
        (["-p", "code_judge", "nice"], "parameter 'code_judge'"),
        (["-p", "code_judge", "distinct"], "parameter 'creative_judge' must differ"),
    ],
)
def test_runner_refuses_bad_input_before_a_kernel(argv, needle, monkeypatch, capsys):
    from vanishing_tails.book import runner

    def boom(*a, **k):
        raise AssertionError("a kernel was started for bad input")

    monkeypatch.setattr(runner, "run_chapter", boom)
    assert runner.main(["run", "preference", *argv]) == runner.EXIT_BAD_INPUT
    assert needle in capsys.readouterr().err


def test_spec_archs_match_the_models_the_library_builds():
    assert ARCHS == lm.ARCHS
    assert JUDGES == pf.JUDGES


# parameters of the engine whose meaning is a spec parameter under another name
ALIASES = {"n_references": "n_seeds", "lr": "dpo_lr"}


def test_no_engine_default_competes_with_the_spec():
    """One source for every default: no public function of the package defaults a spec parameter."""
    names = set(SPEC.names) | set(ALIASES)
    offenders = []
    for module in (D, pf):
        for fname, fn in inspect.getmembers(module, inspect.isfunction):
            if fname.startswith("_") or fn.__module__ != module.__name__:
                continue
            for p in inspect.signature(fn).parameters.values():
                if p.name in names and p.default is not inspect.Parameter.empty:
                    offenders.append(f"{module.__name__}.{fname}({p.name}={p.default!r})")
    assert not offenders, offenders


def test_every_public_object_links_back_to_the_chapter():
    for module in (D, pf):
        for name, obj in inspect.getmembers(module, lambda o: inspect.isfunction(o) or inspect.isclass(o)):
            if name.startswith("_") or obj.__module__ != module.__name__:
                continue
            doc = inspect.getdoc(obj) or ""
            assert doc.rstrip().splitlines()[-1].startswith("Explained in :ref:`sec-preference-"), name


def test_claims_are_declared_over_reference_models_with_a_null():
    assert SPEC.null == {"judge_scale": 0.0}
    SPEC.resolve(scale="smoke", **SPEC.null)
    for c in SPEC.claims:
        assert c.unit == "reference models"
        assert c.kind == "direction"  # every claim here can be killed by the null
    kinds = {f"{d}_{j}_arm": "natural" for d, j in pf.ARMS}
    for d, j in pf.ARMS:
        statement = SPEC.claim(f"{d}-{j}-bigram").statement.format(**kinds)
        assert "natural arm" in statement and "{" not in statement


def test_distinctiveness_optimum_collapses_onto_its_argmax_as_beta_goes_to_zero():
    """The beta -> 0 limit (a tautology of p* ∝ p_ref e^{r/beta}, formerly a claim): H -> H(p_ref | argmax r)."""
    d = D.creative_domain(3, 0.5)
    r = pf.judge_rewards(d, "distinct", d.prior, brevity=0.05)
    lim = pf.optimum_limits(d.prior, r)
    small = pf.optimum_curve(d, d.prior, r, [1e-3]).set_index("prompt")["entropy"]
    np.testing.assert_allclose(small, lim["entropy_beta_0"], atol=1e-6)
    assert (lim["entropy_beta_0"] < metrics.entropy(d.prior) - 1.0).all()  # far narrower than the reference


def test_the_beta_to_zero_limit_can_be_wider_than_the_reference():
    """H(p*_0) = H(p_ref | A) exceeds H(p_ref) when p_ref sits on a non-maximiser and A is large."""
    p_ref = np.array([[0.94, 0.02, 0.02, 0.02]])
    r = np.array([[0.0, 1.0, 1.0, 1.0]])
    lim = pf.optimum_limits(p_ref, r)
    assert math.isclose(float(lim["entropy_beta_0"].iloc[0]), math.log(3), rel_tol=1e-12)
    assert float(lim["entropy_beta_0"].iloc[0]) > float(metrics.entropy(p_ref)[0])


# ------------------------------------------------------------- the common trajectory

TRAJ = dict(
    n_seeds=2,
    n_prompts=1,
    valid_share=0.5,
    corpus_size=400,
    pretrain_steps=5,
    n_pairs=16,
    dpo_steps=4,
    dpo_lr=3e-3,
    betas=[1.0],
    brevity=0.0,
    judge_scale=1.0,
    eval_every=2,
    q=0.1,
    n_support=50,
    arch="gru",
    device="cpu",
)


def test_trajectory_has_the_common_columns_in_sane_ranges():
    from vanishing_tails.core import tails

    frame = pf.trajectory(seed=0, **TRAJ)
    assert list(frame.columns) == ["experiment", "arm", "replicate", "step", "mechanism", *tails.COLUMNS]
    assert set(frame.experiment) == {"preference"} and set(frame.mechanism) <= set(tails.MECHANISMS)
    assert set(frame.step) == {0, 2, 4} and set(frame.replicate) == {0, 1}
    assert len(frame.arm.unique()) == len(D.DOMAINS) * len(pf.JUDGES) * len(TRAJ["betas"])
    assert frame["support"].ge(0).all() and frame["q_tail_mass"].ge(0).all()
    assert frame["kl_from_start"].ge(0).all() and np.isfinite(frame["quality"]).all()
    for col in ("error_mass", "mode_share"):
        assert frame[col].between(0, 1).all(), col
    start = frame[frame.step == 0]
    np.testing.assert_allclose(start["kl_from_start"], 0, atol=1e-9)
    np.testing.assert_allclose(start["quality"], 0, atol=1e-9)  # rewards are centred under the reference
    assert frame[frame.step > 0]["kl_from_start"].gt(0).all()


def test_trajectory_is_reproducible_and_the_null_moves_nothing():
    a = pf.trajectory(seed=1, **TRAJ)
    pd.testing.assert_frame_equal(a, pf.trajectory(seed=1, **TRAJ))
    assert not a["kl_from_start"].equals(pf.trajectory(seed=2, **TRAJ)["kl_from_start"])
    null = pf.trajectory(seed=1, **{**TRAJ, "dpo_lr": 0.0})
    for _, g in null.groupby(["arm", "replicate"]):
        first = g[g.step == 0].iloc[0]
        for col in ("support", "q_tail_mass", "error_mass", "mode_share", "kl_from_start", "quality"):
            np.testing.assert_allclose(g[col], first[col], atol=1e-9, err_msg=col)
    with pytest.raises(ValueError, match="betas"):
        pf.trajectory(seed=0, **{**TRAJ, "betas": [0.0]})
    with pytest.raises(ValueError, match="brevity"):
        pf.trajectory(seed=0, **{**TRAJ, "brevity": -1.0})


def test_tail_measures_of_the_reference_and_of_pure_error():
    p_ref = np.array([[0.5, 0.3, 0.2]])
    r = np.array([[1.0, -1.0, -1.0]])
    probs = np.stack([p_ref, p_ref])
    m = pf.tail_measures(probs, np.array([[0.0], [1.0]]), p_ref, np.array([0.0]), r, q=0.2, n_support=10)
    np.testing.assert_allclose(m.loc[0, ["support", "q_tail_mass", "error_mass", "kl_from_start"]], [1, 1, 0, 0])
    assert m.loc[1, "error_mass"] == 1 and m.loc[1, "q_tail_mass"] == 0  # all mass malformed
    np.testing.assert_allclose(m["quality"], 0.5 - 0.3 - 0.2)


# ------------------------------------------------------------------ the mixed reward


def _judges(name, n_prompts=3):
    d = D.make_domain(name, n_prompts, 0.5)
    return (
        d,
        pf.judge_rewards(d, "correct", d.prior, brevity=0.0),
        pf.judge_rewards(d, "distinct", d.prior, brevity=0.0),
    )


def test_mixed_reward_endpoints_and_refusals():
    d, rc, rd = _judges("code", 2)
    np.testing.assert_array_equal(pf.mixed_reward(rc, rd, 0.0), rc)
    np.testing.assert_array_equal(pf.mixed_reward(rc, rd, 1.0), rd)
    assert pf.mixed_reward(rc, rd, [0.0, 0.5, 1.0]).shape == (3, *rc.shape)
    for bad in (1.5, -0.1, float("nan"), True):
        with pytest.raises(ValueError, match="mix_lambdas"):
            pf.check_lambdas([bad])
    ph = pf.phase_diagram(d, d.prior, rc, rd, [0.5, 2.0], [0.0, 1.0])
    assert list(ph.columns) == ["beta", "lam", "delta"] and len(ph) == 4
    want = pf.bigram_change(d, d.prior, rc, [0.5])[0]
    assert math.isclose(float(ph[(ph.beta == 0.5) & (ph.lam == 0.0)]["delta"].iloc[0]), want, rel_tol=1e-12)


@pytest.mark.parametrize("name", D.DOMAINS)
def test_bigram_entropy_slope_is_the_derivative_at_infinite_beta(name):
    """Oracle: the closed-form slope d H2(p_ref e^{εr}/Z)/dε at 0 against a central finite difference."""
    d, rc, rd = _judges(name)
    for r in (rc, rd):
        eps = 1e-5
        plus = pf.bigram_change(d, d.prior, r, [1 / eps])[0]
        minus = pf.bigram_change(d, d.prior, -r, [1 / eps])[0]
        assert math.isclose(pf.bigram_entropy_slope(d, d.prior, r), (plus - minus) / (2 * eps), rel_tol=1e-4)


@pytest.mark.parametrize("name", D.DOMAINS)
def test_critical_lambda_tends_to_the_linear_response_limit(name):
    """Oracle: as beta -> inf the change is linear in r, so lambda* -> a / (a - b) (a, b the judges' slopes)."""
    d, rc, rd = _judges(name)
    a, b = pf.bigram_entropy_slope(d, d.prior, rc), pf.bigram_entropy_slope(d, d.prior, rd)
    assert a < 0 < b
    got = pf.critical_lambda(d, d.prior, rc, rd, 1e5, grid=21)
    assert abs(got - a / (a - b)) < 1e-3
    lam = pf.critical_lambda(d, d.prior, rc, rd, 1.0, grid=21)  # and at the root the change vanishes
    assert abs(pf.bigram_change(d, d.prior, pf.mixed_reward(rc, rd, lam), [1.0])[0]) < 1e-9


def test_critical_lambda_is_one_half_for_opposite_judges():
    """Oracle: with r_conv = -r_dist the mixed reward is (2 lambda - 1) r_dist, zero at lambda = 1/2 for every beta."""
    d, _, rd = _judges("creative")
    for beta in (0.5, 1.0, 4.0):
        roots, up = pf.critical_lambdas(d, d.prior, -rd, rd, beta, grid=20)  # 1/2 is not a grid point
        assert up.any()
        assert abs(pf.critical_lambda(d, d.prior, -rd, rd, beta, grid=20) - 0.5) < 1e-9
    assert math.isnan(pf.critical_lambda(d, d.prior, rd * 0 - 1, rd * 0 - 1, 1.0, grid=5))  # a constant reward: Δ = 0


def test_run_experiment_tunes_the_mixed_reward_and_returns_the_references():
    res = pf.run_experiment(seed=0, **{**TINY, "mix_lambdas": [0.5], "sweep_betas": []})
    mixed = res["mixed"]
    assert set(mixed["stage"]) == {"before", "after", "optimum"} and set(mixed["lam"]) == {0.5}
    assert set(mixed["domain"]) == set(D.DOMAINS) and set(mixed["beta"]) == {TINY["beta"]}
    assert set(res["p_ref"]) == {(0, d) for d in D.DOMAINS}
    for (_, d), p in res["p_ref"].items():
        np.testing.assert_allclose(p.sum(-1), 1)
        assert p.shape == (TINY["n_prompts"], D.make_domain(d, TINY["n_prompts"], 0.5).n_outputs)
    with pytest.raises(ValueError, match="mix_lambdas"):
        pf.run_experiment(seed=0, **{**TINY, "mix_lambdas": [2.0]})


# ------------------------------------------------------------ stacked training (speed)


def _small_refs(n):
    doms = [D.make_domain(name, 2, 0.5) for name in D.DOMAINS]
    return doms, [pf.reference_start(doms, corpus_size=300, seed=s, arch="gru", device="cpu") for s in range(n)]


def test_stacked_gru_computes_what_each_model_computes():
    _, starts = _small_refs(3)
    models = [s[0] for s in starts]
    stack = pfs.StackedGRU.from_models(models)
    tokens = torch.stack([s[2][:7] for s in starts])
    mask = torch.ones_like(tokens, dtype=torch.bool)
    lp = pfs.stacked_sequence_logprob(stack, tokens, mask)
    for c, m in enumerate(models):
        np.testing.assert_allclose(lp[c].detach(), lm.sequence_logprob(m, tokens[c]).detach(), atol=1e-4)
        for a, b in zip(stack.model(c).parameters(), m.parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    sub = stack.select([2, 0, 2])
    torch.testing.assert_close(pfs.stacked_sequence_logprob(sub, tokens[[2, 0, 2]], mask), lp[[2, 0, 2]])


def test_stacked_pretraining_and_dpo_match_one_model_at_a_time():
    """The stack trains each model as lm.train_lm / train_dpo would alone (its own batches, clip, Adam)."""
    doms, starts = _small_refs(2)
    stack, last = pfs.pretrain_stacked(
        [copy.deepcopy(s[0]) for s in starts], [s[2] for s in starts], steps=8, batch_size=16, lr=1e-2,
        seeds=[s[3] for s in starts],
    )  # fmt: skip
    vocab = starts[0][1]
    alone = []
    for c, (model, _, tokens, seed) in enumerate(starts):
        log = lm.train_lm(model, tokens, steps=8, batch_size=16, lr=1e-2, seed=seed)
        assert last[c] == pytest.approx(log["loss"].iloc[-1], abs=1e-4)
        alone.append(model)
    d = doms[0]
    tok, mask = pf.space_tokens(vocab, d)
    lp = pfs.stacked_logprobs(stack, tok, mask, chunk=100).numpy()
    for c, model in enumerate(alone):
        np.testing.assert_allclose(lp[c].reshape(d.n_prompts, -1), pf.output_logprobs(model, vocab, d), atol=1e-4)
    # DPO: two runs of reference 1 at two betas, and one of reference 0
    p_ref, _ = pf.restrict(lp[1].reshape(d.n_prompts, -1))
    pairs = pf.preference_pairs(
        p_ref, pf.judge_rewards(d, "correct", p_ref, brevity=0.0), 32, rng=np.random.default_rng(0)
    )
    rows = {k: pairs["prompt"].to_numpy() * d.n_outputs + pairs[k].to_numpy() for k in ("chosen", "rejected")}
    runs = [(1, 1.0, 11), (1, 0.25, 12), (0, 1.0, 13)]
    policy = stack.select([r for r, _, _ in runs])
    logs = pfs.dpo_stacked(
        policy, tok, mask, torch.from_numpy(lp[[r for r, _, _ in runs]]), [rows["chosen"]] * 3, [rows["rejected"]] * 3,
        betas=[b for _, b, _ in runs], steps=6, lr=3e-3, seeds=[s for _, _, s in runs], batch_size=8, log_every=0,
    )  # fmt: skip
    after = pfs.stacked_logprobs(policy, tok, mask, chunk=100).numpy()
    for c, (r, b, s) in enumerate(runs):
        pol, log = pf.train_dpo(alone[r], vocab, d, pairs, beta=b, steps=6, lr=3e-3, seed=s, batch_size=8)
        np.testing.assert_allclose(after[c].reshape(d.n_prompts, -1), pf.output_logprobs(pol, vocab, d), atol=1e-3)
        assert logs[c]["loss"].iloc[-1] == pytest.approx(log["loss"].iloc[-1], abs=1e-4)


def test_run_experiment_stacked_equals_one_model_at_a_time():
    kw = {**TINY, "n_references": 2, "mix_lambdas": [0.5]}
    a = pf.run_experiment(seed=7, **kw)
    b = pf.run_experiment(seed=7, stack_models=False, **kw)
    for key in ("exact", "mixed", "samples"):
        assert a[key].drop(columns="value").equals(b[key].drop(columns="value"))
    np.testing.assert_allclose(a["exact"]["value"], b["exact"]["value"], atol=1e-3)
    np.testing.assert_allclose(a["mixed"]["value"], b["mixed"]["value"], atol=1e-3)


def test_win_weights_equal_the_pairwise_sum():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(50), size=3)
    r = rng.normal(size=(3, 50))
    r[1] = np.round(r[1])  # ties share a row
    want = np.stack([(1 / (1 + np.exp(-(x[:, None] - x[None, :])))) @ q for q, x in zip(p, r)])
    np.testing.assert_allclose(pf.win_weights(p, r), want, atol=1e-12)
