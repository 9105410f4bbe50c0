"""Chapter 10, "One phenomenon?": parameters, the experiments it reads, claims (with δ) and the null.

Plain data (no numpy, no engine). The chapter reads every experiment of the book through
its common interface, ``trajectory(**sizes, seed=...)`` (:data:`vanishing_tails.core.tails.COLUMNS`
per arm, replicate and step), at the sizes listed here in :data:`ENTRIES`: this table is
the one place where those sizes live. An entry is

* ``module`` — the import path of the experiment's ``trajectory`` (the only function of
  another experiment this package may call; ``tests/test_structure.py`` names them);
* ``replicates`` — its arguments that count independent replicates, each with a factor: the
  argument is set to ``max(2, round(n_seeds × factor))`` (a cheap entry, or one whose effect
  is a martingale's wide spread, runs more; pretrained models run fewer);
* ``q`` (optional) — the entry's own tail quantile where the chapter's would leave its q-tail
  empty; otherwise the chapter's ``q`` is passed where the interface takes one;
* ``split`` (optional) — arm-name prefix -> experiment name, where one call runs two models
  that are independent experiments; ``parametric`` (optional) — those of its experiments that
  refit a parametric family (whose tail mass is not a sum of martingale shares);
* ``kwargs`` — every other size that is the same at every scale, and ``scales`` — per scale
  (``smoke``, ``book``; ``full`` reuses ``book``) the sizes that differ, which override ``kwargs``;
* ``null`` — the overrides under which nothing moves (a learning rate of 0, real data every
  generation, no refitting): this chapter's null configuration runs every entry with them;
* ``baselines`` — the arms that apply the experiment's pressure with no intervention;
* ``interventions`` — ``(arm, its baseline arm, label)``: what the book found pays to keep tails;
* ``real_data`` — for recursion experiments with arms that differ in their real fraction:
  ``arms`` (arm -> the argument holding its real fraction, or the fraction itself),
  optionally ``fraction_list`` (pairs of the argument holding a list of fractions and the
  format of their arms' names), ``floor`` (an argument that is a floor on every arm's fraction)
  and ``samples`` (the argument holding the samples per generation, or experiment -> argument),
  else ``None``.

Each entry runs on its own seed stream (``streams(seed)["synthesis", name]``), so entries
are independent. The unit of every claim is the *experiment*: intervals are percentile
bootstraps that resample experiments and, inside each, its replicates (seeds, chains,
pretrained models), :func:`vanishing_tails.experiments.synthesis.analysis.hierarchical_interval`.

The smallest effects of interest were declared with the claims, before any run of the
chapter, by the book's rules:

* a mass on the reference's q-tail (relative to its real value, 1 = all kept): 0.1, a tenth
  of the tail's real mass (chapter 2's rule for a region's mass);
* support relative to the reference and error mass (probabilities): 0.05, five percentage
  points (the book's rule for probabilities, chapter 3);
* a rank correlation said to be "together": 0.5, a large correlation by Cohen's convention.
"""

from ...book.params import ChapterSpec, ClaimSpec, Param, common_params

_TAIL = "stated minimal effect: a tenth of the q-tail's real mass (chapter 2's rule for a region's mass)"
_PROB = "stated minimal effect: 5 percentage points of a probability or share (the book's rule, chapter 3)"
_UNIT = "experiments (bootstrap over experiments and their replicates)"

# fmt: off
ENTRIES: dict[str, dict] = {
    "tails": {
        "chapter": "01_tails_vanish_first",
        "module": "vanishing_tails.experiments.tails.trajectory",
        "replicates": {"word_chains": 3, "n_seeds": 10},  # word chains cost seconds, Gaussian chains nothing
        "kwargs": dict(n=100, temperature=0.9, real_fraction=0.0, real_fractions=[0.0, 0.02, 0.1, 0.5], n_support=100),
        "scales": {
            "smoke": dict(top_n=5000, m=20000, word_generations=20, generations=60),
            "book": dict(top_n=10000, m=50000, word_generations=40, generations=150),
        },
        "null": {"real_fraction": 1.0},
        "split": {"words-": "tails-words", "gauss-": "tails-gauss"},  # two models: two experiments
        # a parametric refit: its tail is a function of a fitted variance, not a sum of martingale shares
        "parametric": ["tails-gauss"],
        "baselines": ("words-replace", "words-tempered", "gauss-replace", "gauss-tempered"),
        "interventions": (
            ("words-accumulate", "words-replace", "accumulate (words)"),
            ("words-mix-0.1", "words-replace", "fresh real data 0.1 (words)"),
            ("gauss-accumulate", "gauss-replace", "accumulate (Gaussian)"),
            ("gauss-accumulate-subsample", "gauss-replace", "accumulate-subsample (Gaussian)"),
            ("gauss-mix-0.1", "gauss-replace", "fresh real data 0.1 (Gaussian)"),
        ),
        "real_data": {
            "arms": {"words-replace": 0.0, "gauss-replace": 0.0},
            "fraction_list": [["real_fractions", "words-mix-{:g}"], ["real_fractions", "gauss-mix-{:g}"]],
            "floor": "real_fraction",
            "samples": {"tails-words": "m", "tails-gauss": "n"},
        },
    },
    "families": {
        "chapter": "02_model_families",
        "module": "vanishing_tails.experiments.families.mixture",
        "replicates": {"n_seeds": 2},
        "kwargs": dict(n=250, real_fractions=[0.1, 0.5]),
        "scales": {
            "smoke": dict(generations=10),
            "book": dict(generations=20),
        },
        "null": {"generations": 0},
        "baselines": ("replace",),
        "interventions": (
            ("accumulate", "replace", "accumulate"),
            ("accumulate-subsample", "replace", "accumulate-subsample"),
            ("mix 0.1", "replace", "fresh real data 0.1"),
            ("mix 0.5", "replace", "fresh real data 0.5"),
        ),
        "real_data": {"arms": {"replace": 0.0}, "fraction_list": [["real_fractions", "mix {:g}"]], "samples": "n"},
    },
    # chapter 2's digit VAE retrained on its own samples: outcomes = a fixed classifier's classes + "atypical"
    "families-vae": {
        "chapter": "02_model_families",
        "module": "vanishing_tails.experiments.families.vae",
        "replicates": {"n_seeds": 0.5},  # a chain is a VAE trained every generation (seconds each)
        "kwargs": dict(class_decay=0.7, real_fractions=[0.25, 0.5], real_fraction=0.0),
        "scales": {
            "smoke": dict(n=200, generations=3, steps=100, hidden=32, latent=4, batch_size=64, n_measure=200),
            "book": dict(n=400, generations=5, steps=200, hidden=64, latent=8, batch_size=128, n_measure=300),
        },
        # no refitting: with real data every generation (real_fraction 1) a tiny VAE's refits still
        # differ by more than the null's tolerance (support, error mass) at smoke
        "null": {"generations": 0},
        "baselines": ("replace",),
        "interventions": (
            ("accumulate", "replace", "accumulate (VAE)"),
            ("mix 0.25", "replace", "fresh real data 0.25 (VAE)"),
            ("mix 0.5", "replace", "fresh real data 0.5 (VAE)"),
        ),
        "real_data": {
            "arms": {"replace": 0.0},
            "fraction_list": [["real_fractions", "mix {:g}"]],
            "floor": "real_fraction",
            "samples": "n",
        },
    },
    # chapter 2's character LM retrained on its own text: outcomes = the corpus's word types + "non-word"
    "families-lm": {
        "chapter": "02_model_families",
        "module": "vanishing_tails.experiments.families.charlm",
        "replicates": {"n_seeds": 0.375},  # a chain is a GRU trained every generation (seconds each)
        "kwargs": dict(temperature=0.7, batch_size=32, real_fractions=[0.25, 0.5], real_fraction=0.0),
        "scales": {
            "smoke": dict(n=128, generations=2, steps=30, d_hidden=32, n_measure=100, max_chars=24),
            "book": dict(n=300, generations=3, steps=50, d_hidden=48, n_measure=200, max_chars=32),
        },
        "null": {"generations": 0},  # no refitting (as the VAE: refits on real data differ at these sizes)
        "baselines": ("T = 1", "T = 0.7"),  # sampled at temperature 1 (error) and below it (tilt)
        "interventions": (
            ("mix 0.25", "T = 1", "fresh real data 0.25 (LM)"),
            ("mix 0.5", "T = 1", "fresh real data 0.5 (LM)"),
        ),
        "real_data": {
            "arms": {"T = 1": 0.0},
            "fraction_list": [["real_fractions", "mix {:g}"]],
            "floor": "real_fraction",
            "samples": "n",
        },
    },
    "sharpening": {
        "chapter": "03_sharpening_spreads",
        "module": "vanishing_tails.experiments.sharpening.policies",
        "replicates": {"n_seeds": 1},
        "kwargs": dict(
            base_scale=2.0, p_unsolved=0.001, group_size=8, lr=0.05, normalize=True, ucb_c=1.0, batch_c=1.0,
            entropy_beta=0.1, eval_every=10, n_distinct=16,
        ),
        "scales": {
            "smoke": dict(n_solved=32, n_unsolved=32, n_held_out=32, n_answers=16, n_features=8, n_hidden=8, steps=100),
            "book": dict(
                n_solved=128, n_unsolved=128, n_held_out=128, n_answers=32, n_features=16, n_hidden=16, steps=200,
            ),
        },
        "null": {"lr": 0.0},
        "baselines": ("outcome only",),
        "interventions": (
            ("historical (UCB)", "outcome only", "UCB count bonus"),
            ("batch", "outcome only", "batch repetition penalty"),
            ("entropy bonus", "outcome only", "entropy bonus (answers)"),
        ),
        "real_data": None,
    },
    "formats": {
        "chapter": "04_one_format_wins",
        "module": "vanishing_tails.experiments.formats.trajectory",
        "replicates": {"n_pretrain": 0.67},  # pretrained models are the expensive replicate
        "q": 0.2,  # three formats at 0.4 / 0.4 / 0.2: a smaller q-tail would be empty
        "kwargs": dict(
            betas=[0.02, 0.3], proportions=[0.4, 0.4, 0.2], n_ops=2, slip=0.05, code_misreads=['eats'], n_layers=1,
            group_size=8,
        ),
        "scales": {
            "smoke": dict(
                max_value=9, max_operand=4, d_model=16, n_heads=2, pretrain_steps=150, pretrain_batch=32, n_corpus=2000,
                n_rl=40, rl_steps=10, batch_problems=4, rl_lr=0.003, n_probe=32,
            ),
            "book": dict(
                max_value=14, max_operand=7, d_model=32, n_heads=4, pretrain_steps=400, pretrain_batch=64,
                n_corpus=20000, n_rl=480, rl_steps=40, batch_problems=12, rl_lr=0.001, n_probe=64,
            ),
        },
        "null": {"rl_lr": 0.0},
        "baselines": ("beta=0.02",),
        "interventions": (("beta=0.3", "beta=0.02", "KL strength"),),
        "real_data": None,
    },
    "preference": {
        "chapter": "05_what_the_reward_pays_for",
        "module": "vanishing_tails.experiments.preference.tuning",
        "replicates": {"n_seeds": 0.4},  # independently pretrained reference models: the expensive replicate
        "kwargs": dict(
            valid_share=0.5, dpo_lr=0.003, betas=[1.0], brevity=0.0, judge_scale=1.0, n_support=100, arch='gru',
            device='cpu',
        ),
        "scales": {
            "smoke": dict(n_prompts=2, corpus_size=1000, pretrain_steps=40, n_pairs=32, dpo_steps=10, eval_every=5),
            "book": dict(n_prompts=3, corpus_size=4000, pretrain_steps=150, n_pairs=128, dpo_steps=40, eval_every=20),
        },
        "null": {"dpo_lr": 0.0},
        "baselines": ("code: convergent judge, β=1", "creative: convergent judge, β=1"),
        "interventions": (
            ("code: distinctive judge, β=1", "code: convergent judge, β=1", "distinctive judge (code)"),
            ("creative: distinctive judge, β=1", "creative: convergent judge, β=1", "distinctive judge (creative)"),
        ),
        "real_data": None,
    },
    "search": {
        "chapter": "06_search_breadth",
        "module": "vanishing_tails.experiments.search.training",
        "replicates": {"n_seeds": 1},
        "kwargs": dict(
            narrow_share=0.8, d_model=16, n_layers=1, n_heads=2, sft_lr=0.003, rl_lr=0.003, group_size=8,
            questions_per_step=8, entropy_beta=0.3, kl_beta=0.0, n_distinct=16,
        ),
        "scales": {
            "smoke": dict(
                n_entities=16, n_held_out=4, n_values=8, n_demos=128, sft_steps=60, batch_size=32, rl_steps=24,
                eval_every=8, n_eval=12, k=8,
            ),
            "book": dict(
                n_entities=24, n_held_out=8, n_values=10, n_demos=256, sft_steps=100, batch_size=64, rl_steps=60,
                eval_every=15, n_eval=16, k=16,
            ),
        },
        "null": {"rl_lr": 0.0},
        "baselines": ("narrow → RL",),
        "interventions": (
            ("narrow → RL + entropy bonus", "narrow → RL", "entropy bonus"),
            ("diverse → RL", "narrow → RL", "diverse SFT"),
        ),
        "real_data": None,
    },
    "quality": {
        "chapter": "07_quality_hides_diversity",
        "module": "vanishing_tails.experiments.quality.loop",
        "replicates": {"n_seeds": 4},  # a second each: its noisy tail mass gets more replicates
        "kwargs": dict(
            budget=256, n_segments=10, n_core=4, keep=0.5, jitter=0.05, real_sd=0.4, real_fraction=0.0, real_mix=0.5,
            amplitude=0.8, period=1.0, ridge=1.0, n_distinct=100,
        ),
        "scales": {
            "smoke": dict(generations=5, newton_steps=10, n_test=300),
            "book": dict(generations=10, newton_steps=15, n_test=1000),
        },
        "null": {"real_fraction": 1.0, "real_mix": 1.0},
        "baselines": ("self-trained",),
        "interventions": (("real-mixed", "self-trained", "fresh real data"),),
        "real_data": {
            "arms": {"self-trained": "real_fraction", "real-mixed": "real_mix"},
            "floor": "real_fraction",
            "samples": "budget",
        },
    },
    "darling": {
        "chapter": "08_paying_for_the_tails",
        "module": "vanishing_tails.experiments.darling.training",
        "replicates": {"n_seeds": 1},
        "kwargs": dict(
            valid_share=0.5, group_size=8, lr=1.0, beta=0.0, additive_weight=1.0, lexical_threshold=0.5, ridge=1.0,
            n_distinct=16, eval_every=50, null_partition=False,
        ),
        "scales": {
            "smoke": dict(n_prompts=4, steps=150, n_pairs=200),
            "book": dict(n_prompts=6, steps=400, n_pairs=300),
        },
        "null": {"lr": 0.0},
        "baselines": ("code: quality only", "creative: quality only"),
        "interventions": (
            ("code: DARLING (learned)", "code: quality only", "diversity reward (code)"),
            ("creative: DARLING (learned)", "creative: quality only", "diversity reward (creative)"),
        ),
        "real_data": None,
    },
    "coverage": {
        "chapter": "09_coverage_by_construction",
        "module": "vanishing_tails.experiments.coverage.generator",
        "replicates": {"n_seeds": 4},  # milliseconds
        "kwargs": dict(zipf_a=1.0, refit_m=2000, gen_temperature=0.9),
        "scales": {
            "smoke": dict(branching=[4, 4, 4], refit_generations=5, budget=1024),
            "book": dict(branching=[4, 5, 5], refit_generations=8, budget=1600),
        },
        "null": {"refit_generations": 0},
        "baselines": ("generator",),
        "interventions": (("taxonomy", "generator", "taxonomy sampling"),),
        "real_data": None,
    },
    # the same generator refit at temperature 1: finite resampling alone (chapter 1's engine on leaves)
    "coverage-T1": {
        "chapter": "09_coverage_by_construction",
        "module": "vanishing_tails.experiments.coverage.generator",
        "replicates": {"n_seeds": 8},  # a martingale's spread is wide, and this entry costs milliseconds
        "kwargs": dict(zipf_a=1.0, gen_temperature=1.0),
        "scales": {
            "smoke": dict(branching=[4, 4, 4], refit_m=2000, refit_generations=10, budget=1024),
            "book": dict(branching=[4, 5, 5], refit_m=3000, refit_generations=12, budget=1600),
        },
        "null": {"refit_generations": 0},
        "baselines": ("generator",),
        "interventions": (),
        "real_data": None,
    },
}
# fmt: on


def _check(P: dict) -> None:
    if len(set(P["experiments"])) != len(P["experiments"]):
        raise ValueError(f"parameter 'experiments' lists an experiment twice: {P['experiments']}")


SPEC = ChapterSpec(
    stem="10_one_phenomenon",
    short="synthesis",
    book_seconds=170,
    title="One phenomenon?",
    description="Every experiment of the book on common axes, sorted by mechanism: mass leaves the tail only "
    "under a mode-seeking tilt; finite sampling removes outcomes, not mass; model error adds mass where there "
    "was none.",
    params=(
        *common_params({"smoke": 3, "book": 8, "full": 16}),
        Param(
            "experiments",
            "str_list",
            list(ENTRIES),
            "the experiments read through their trajectory() (an entry of ENTRIES in the spec)",
            choices=tuple(ENTRIES),
        ),
        Param(
            "q",
            "float",
            0.1,
            "tail quantile of every reference's q-tail (if the interface takes q)",
            low=0.001,
            high=0.5,
        ),
        Param("null_experiments", "bool", False, "run every experiment at its own null overrides (nothing moves)"),
        Param(
            "n_boot",
            "int",
            {"smoke": 400, "book": 2000, "full": 4000},
            "bootstrap resamples of every interval",
            low=100,
            high=100000,
        ),
    ),
    checks=(_check,),
    claims=(
        ClaimSpec(
            "one-phenomenon",
            "Diversity loss and tail disappearance are one phenomenon: across the book's trajectories, the change "
            "in support and the change in q-tail mass move together (Spearman rank correlation above 0.5)",
            "Spearman correlation, over every trajectory that moved (KL from start grew), between its change in "
            "support and its change in q-tail mass (first to last step, means over replicates)",
            "direction",
            0.5,
            "stated minimal effect: a large correlation (Cohen's convention, r = 0.5)",
            _UNIT,
            source="notes",
            expected="inconclusive",  # eleven experiments: the interval's lower end sits at δ at any replicate count
        ),
        ClaimSpec(
            "tilt-removes-mass",
            "Under a mode-seeking tilt, mass leaves the q-tail: the baseline arm of every tilt experiment loses "
            "more than a tenth of its q-tail mass",
            "per experiment: q-tail mass at the first minus at the last step of its baseline arms (mean over "
            "replicates); mean over the tilt experiments",
            "direction",
            0.1,
            _TAIL,
            _UNIT,
            expected="inconclusive",  # chapter 4's tilt fills the q-tail (its rewarded format is the rarest)
        ),
        ClaimSpec(
            "tilt-moves-mass",
            "Instead: a tilt moves the q-tail's mass toward what the objective pays for — out of the tail where it "
            "pays for the reference's common outcomes, into it where it pays for a rare one — by more than a tenth",
            "per experiment: absolute value of the mean (over replicates) change in q-tail mass of its baseline "
            "arms; mean over the tilt experiments",
            "direction",
            0.1,
            _TAIL,
            _UNIT,
            source="finding",
        ),
        ClaimSpec(
            "resampling-keeps-mass",
            "Finite resampling alone removes outcomes, not mass: at temperature 1 the q-tail's mass stays within "
            "a tenth of where it started (a martingale)",
            "per experiment: q-tail mass at the last minus at the first step of its baseline arms; mean over the "
            "resampling experiments (the claim that would refute the restated thesis)",
            "equivalence",
            0.1,
            _TAIL,
            _UNIT,
            source="theory",
            expected="inconclusive",  # the Gaussian refit's mass loss puts the mean at δ
        ),
        ClaimSpec(
            "categorical-resampling-keeps-mass",
            "Instead: resampling a categorical law at temperature 1 keeps the q-tail's mass within a tenth of where "
            "it started; the parametric refit (a Gaussian's maximum likelihood) is where mass leaves",
            "per experiment: q-tail mass at the last minus at the first step of its baseline arms; mean over the "
            "resampling experiments that refit counts (not a parametric family)",
            "equivalence",
            0.1,
            _TAIL,
            _UNIT,
            source="finding",
        ),
        ClaimSpec(
            "resampling-removes-outcomes",
            "…while the support falls: at temperature 1 the distinct outcomes in n draws fall by more than 5 "
            "points of the reference's",
            "per experiment: support at the first minus at the last step of its baseline arms; mean over the "
            "resampling experiments",
            "direction",
            0.05,
            _PROB,
            _UNIT,
            source="theory",
            expected="inconclusive",  # chapter 1's words support (100 draws) sees the head only
        ),
        ClaimSpec(
            "error-adds-mass",
            "Model error adds mass where there was none: under approximation error the mass on outcomes the real "
            "distribution does not have grows by more than 5 points",
            "per experiment: error mass at the last minus at the first step of its baseline arms; mean over the "
            "error experiments",
            "direction",
            0.05,
            _PROB,
            _UNIT,
            source="theory",
            # Set to "fails" when the mixture was the only error experiment (0.017 [0.003, 0.036] at
            # book); with chapter 2's VAE (+0.39) and LM (+0.08) added, the three experiments disagree
            # in size and the interval over experiments straddles δ on both dev seeds at book.
            expected="inconclusive",
        ),
        ClaimSpec(
            "error-overfills-tail",
            "Instead: model error adds mass to the reference's low-density tail — under approximation error the "
            "q-tail mass rises by more than a tenth of its real value",
            "per experiment: q-tail mass at the last minus at the first step of its baseline arms; mean over the "
            "error experiments",
            "direction",
            0.1,
            _TAIL,
            _UNIT,
            source="finding",
            # Held with the mixture alone (0.59 [0.22, 0.98]); the VAE loses its rare digits instead
            # (−0.40), so over the three error experiments the sign is not decided at book.
            expected="inconclusive",
        ),
        ClaimSpec(
            "interventions-keep-tails",
            "Tails survive where the objective pays for them: the book's interventions prevent more than a tenth "
            "(of the tail's real mass) of the drift of the q-tail's mass that their baselines show",
            "per experiment: the baseline's change in q-tail mass minus the intervention's, signed by the "
            "direction of the baseline's drift, paired by replicate, mean over the experiment's interventions; "
            "mean over experiments",
            "direction",
            0.1,
            _TAIL,
            _UNIT,
        ),
        ClaimSpec(
            "real-data-pays",
            "Real data pays: at the last generation more real data keeps the q-tail's mass nearer its real "
            "value, by more than a tenth of it per unit of real fraction",
            "per recursion experiment: minus the least-squares slope of |q-tail mass − 1| against the arms' real "
            "fraction at the last generation, paired by replicate; mean over experiments",
            "direction",
            0.1,
            _TAIL,
            _UNIT,
        ),
        ClaimSpec(
            "real-value-grows",
            "A real sample is worth more the longer the recursion has run: its marginal value at the last "
            "generation exceeds its value at the first by more than a tenth of the tail's mass per unit fraction",
            "per recursion experiment: the value above at the last generation minus at generation 1; mean over "
            "experiments",
            "direction",
            0.1,
            _TAIL,
            _UNIT,
        ),
    ),
    null={"null_experiments": True},
    null_description="every experiment at its own null overrides (a learning rate of 0, real data every "
    "generation, no refitting): no trajectory moves, so no directional claim has anything to hold on",
)
