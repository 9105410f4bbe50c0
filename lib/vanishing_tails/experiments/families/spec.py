"""Chapter 2, "Every model family forgets its tails": parameters, presets, claims (with their δ)
and the null control. Plain data: no torch, no engine imports.

Explained in :ref:`chapter-model-families`.
"""

from dataclasses import replace

from ...book.params import ChapterSpec, ClaimSpec, Param, common_params

FAMILIES = ("mixture", "vae", "charlm", "tale_of_tails")
#: The family a claim belongs to, by the prefix of its id.
CLAIM_FAMILY = {"gmm": "mixture", "vae": "vae", "lm": "charlm", "tale": "tale_of_tails"}


def check_family(family: str) -> str:
    """Refuse an unknown family with a ValueError naming the parameter.

    Explained in :ref:`chapter-model-families`.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}")
    return family


def _check(P: dict) -> None:
    if P["tale_k"] >= P["tale_items"]:
        raise ValueError(f"parameter 'tale_k' must be smaller than tale_items ({P['tale_items']}); got {P['tale_k']}")
    if P["tale_T_max"] <= P["tale_k"]:
        raise ValueError(f"parameter 'tale_T_max' must exceed tale_k ({P['tale_k']}); got {P['tale_T_max']}")
    if P["lm_n"] < P["lm_batch"]:
        raise ValueError(f"parameter 'lm_n' must be at least lm_batch ({P['lm_batch']}) lines; got {P['lm_n']}")


SHARE_OF_CHAINS = (
    "stated minimal effect: {pp} percentage points of chains (the smallest difference in the share "
    "of chains that lose a region this chapter calls a difference)"
)
LOST = "lost = the model keeps less than 0.2 of the region's real mass"

CLAIMS = (
    # --- Gaussian mixture
    ClaimSpec(
        "gmm-rare-first",
        "Mixture, replace, last generation: more chains lose the rare component's region than lose "
        "a common component's region",
        f"per chain: 1{{rare region lost}} − 1{{a common region lost}} ({LOST}); mean over chains (t)",
        "direction",
        0.15,
        SHARE_OF_CHAINS.format(pp=15),
        "chains",
        source="notes",
    ),
    ClaimSpec(
        "gmm-low-density-shrinks",
        "Mixture, replace: the model's mass on the real low-density region (p0's least-probable "
        "q = {q:g}) shrinks (the notes' 'rare events vanish', read as probability mass)",
        "per chain: 1 − model mass on the region / q at the last generation; median over chains (bootstrap)",
        "direction",
        0.2,
        "stated minimal effect: a fifth of the region's real mass",
        "chains",
        source="notes",
        expected="fails",
    ),
    ClaimSpec(
        "gmm-error-mass-grows",
        "Instead the typical chain ends with more mass on the real low-density region than the real "
        "distribution has: mass where p0 has almost none (error mass)",
        "per chain: model mass on the region / q − 1 at the last generation; median over chains (bootstrap)",
        "direction",
        0.1,
        "stated minimal effect: a tenth of the region's real mass",
        "chains",
        source="finding",
    ),
    ClaimSpec(
        "gmm-accumulate-keeps",
        "Mixture: accumulating the data, fewer chains lose the rare region than under replace",
        f"per chain (same real data at generation 0): 1{{lost, replace}} − 1{{lost, accumulate}} at the "
        f"last generation ({LOST}); mean over chains (paired t)",
        "direction",
        0.1,
        SHARE_OF_CHAINS.format(pp=10),
        "chains",
        source="paper",
    ),
    ClaimSpec(
        "gmm-real-data-helps",
        "Mixture: with {rf:g} fresh real data per generation fewer chains lose the rare region than without",
        f"per chain (same real data at generation 0): 1{{lost, replace}} − 1{{lost, mix}} at the "
        f"last generation ({LOST}); mean over chains (paired t)",
        "direction",
        0.1,
        SHARE_OF_CHAINS.format(pp=10),
        "chains",
        source="notes",
    ),
    ClaimSpec(
        "gmm-subsample-keeps",
        "Mixture: accumulating but training on a subsample of n points per generation "
        "(accumulate-subsample), fewer chains lose the rare region than under replace",
        f"per chain (same real data at generation 0): 1{{lost, replace}} − 1{{lost, accumulate-subsample}} at "
        f"the last generation ({LOST}); mean over chains (paired t)",
        "direction",
        0.1,
        SHARE_OF_CHAINS.format(pp=10),
        "chains",
        source="paper",
    ),
    ClaimSpec(
        "gmm-recall-falls",
        "Mixture, replace: the k-NN recall of the model's samples falls (real points outside the model's "
        "support: the real tail that is lost)",
        "per chain: recall at generation 0 − recall at the last generation; mean over chains (t)",
        "direction",
        0.05,
        "stated minimal effect: 5% of the real points",
        "chains",
        source="notes",
    ),
    ClaimSpec(
        "gmm-precision-falls",
        "Mixture, replace: the k-NN precision falls (model samples outside the real support: the error "
        "tail that grows)",
        "per chain: precision at generation 0 − precision at the last generation; mean over chains (t)",
        "direction",
        0.05,
        "stated minimal effect: 5% of the model's samples",
        "chains",
        source="paper",
        expected="fails",
    ),
    ClaimSpec(
        "gmm-recall-before-precision",
        "Instead recall falls by more than precision: the k-NN balls of the real points still cover the "
        "mass the refits add between and around the clusters, so the lost real tail shows and the "
        "error tail barely does",
        "per chain: (recall drop) − (precision drop), generation 0 to the last; mean over chains (paired t)",
        "direction",
        0.05,
        "stated minimal effect: 5 percentage points (as gmm-recall-falls)",
        "chains",
        source="finding",
    ),
    # --- VAE
    ClaimSpec(
        "vae-rare-first",
        "VAE, replace: the {k} rarest digit classes keep a smaller fraction of their generation-0 share "
        "than the {k} most common (last generation)",
        "fraction kept by the common classes − fraction kept by the rare classes, fraction kept = "
        "mean share at the last generation / mean share at generation 0; bootstrap over chains",
        "direction",
        0.2,
        "stated minimal effect: a fifth of the generation-0 share",
        "chains",
        source="notes",
    ),
    ClaimSpec(
        "vae-diversity-falls",
        "VAE, replace: the Vendi score (effective number of distinct images) of the samples falls",
        "per chain: 1 − Vendi score at the last generation / at generation 0; mean over chains (t)",
        "direction",
        0.2,
        "stated minimal effect: a fifth of the generation-0 diversity",
        "chains",
        source="notes",
    ),
    ClaimSpec(
        "vae-mix-helps",
        "VAE: with {rf:g} fresh real images per generation the samples keep more diversity than under replace",
        "per chain (same real data and generation 0 in both arms): Vendi ratio (last / generation 0), "
        "mix − replace; mean over chains (paired t)",
        "direction",
        0.1,
        "stated minimal effect: a tenth of the generation-0 diversity",
        "chains",
        source="notes",
    ),
    ClaimSpec(
        "vae-mix-still-rare-first",
        "Yet with {rf:g} fresh real images per generation the rarest classes still keep a smaller fraction "
        "of their generation-0 share than the most common",
        "as vae-rare-first, in the mix arm; bootstrap over chains",
        "direction",
        0.2,
        "stated minimal effect: a fifth of the generation-0 share (as vae-rare-first)",
        "chains",
        source="finding",
    ),
    ClaimSpec(
        "vae-recall-falls",
        "VAE, replace: the k-NN recall of the samples (pixel space) falls: the real images the model still covers",
        "per chain: recall at generation 0 − recall at the last generation; mean over chains (t)",
        "direction",
        0.05,
        "stated minimal effect: 5% of the real images (as gmm-recall-falls)",
        "chains",
        source="notes",
    ),
    ClaimSpec(
        "vae-precision-falls",
        "VAE, replace: the k-NN precision of the samples falls (samples outside the real images' support: "
        "an error tail that grows)",
        "per chain: precision at generation 0 − precision at the last generation; mean over chains (t)",
        "direction",
        0.05,
        "stated minimal effect: 5% of the samples (as gmm-precision-falls)",
        "chains",
        source="paper",
        expected="fails",
    ),
    # --- character language model
    ClaimSpec(
        "lm-heldout-ppl-rises",
        "LM, replace at T = 1: the perplexity of held-out real text rises across generations",
        "per chain: held-out perplexity at the last generation / at generation 0; mean over chains (t)",
        "direction",
        1.1,
        "stated minimal effect: a 10% rise of the generation-0 perplexity",
        "chains",
        source="notes",
    ),
    ClaimSpec(
        "lm-T1-rare-first",
        "LM, replace at T = 1: words of the real list's rarer half lose a larger fraction of their "
        "share of the generated words than its 100 most common words",
        "per chain: log[(common share, last / generation 0) / (rare-half share, last / generation 0)]; "
        "mean over chains (t)",
        "direction",
        0.405,
        "stated minimal effect: a 1.5-fold ratio of the two fractions kept (δ = ln 1.5)",
        "chains",
        source="notes",
        expected="fails",
    ),
    ClaimSpec(
        "lm-truncation-rare-first",
        "Sampled at T = {T:g} (truncating the tail) the rarer half does lose a larger fraction of its "
        "share than the 100 most common words",
        "as lm-T1-rare-first, in the truncated arm; mean over chains (t)",
        "direction",
        0.405,
        "stated minimal effect: a 1.5-fold ratio (δ = ln 1.5), as lm-T1-rare-first",
        "chains",
        source="finding",
    ),
    ClaimSpec(
        "lm-T1-no-narrowing",
        "At T = 1 the generated lines instead become less probable under a reference model of real "
        "text: errors accumulate rather than the distribution narrowing",
        "per chain: median per-line perplexity of generated lines under the reference model, last "
        "generation / generation 0; mean over chains (t)",
        "direction",
        1.05,
        "stated minimal effect: a 5% rise of the generated lines' perplexity",
        "chains",
        source="finding",
    ),
    ClaimSpec(
        "lm-real-data-helps",
        "LM: with {rf:g} fresh real lines per generation the held-out perplexity rises less than under replace",
        "per chain (same real data and generation 0 in both arms): held-out perplexity ratio "
        "(last / generation 0), replace − mix; mean over chains (paired t)",
        "direction",
        0.05,
        "stated minimal effect: 5% of the generation-0 perplexity",
        "chains",
        source="notes",
    ),
    # --- A Tale of Tails
    ClaimSpec(
        "tale-theory",
        "The simulated memoriser's test error follows Σ p_i (1 − q_i)^T on every learning curve",
        "per simulated learning curve: mean over the T grid of simulated error / Σ p_i (1 − q_i)^T − 1; theory 0",
        "oracle",
        0.0,
        "exact oracle (|z| < 4): the formula is an exact expectation",
        "simulated learning curves",
        source="theory",
    ),
    ClaimSpec(
        "tale-clean-keeps-scaling",
        "At the largest T the memoriser trained on tail-cut data (k = {k}) errs at least twice as often "
        "as the one trained on clean data: the clean curve keeps falling, the cut one has stopped",
        "log(error on tail-cut data) − log(error on clean data) at the largest T, over independent "
        "simulated chains (Welch t)",
        "direction",
        0.693,
        "stated minimal effect: a factor 2 in error (δ = ln 2)",
        "simulated chains",
        source="paper",
    ),
    ClaimSpec(
        "tale-mix-restores",
        "A fraction {pi:g} of clean data mixed into the tail-cut data brings the error at the largest T "
        "below the tail-cut error",
        "log(error on tail-cut data) − log(error with the clean fraction) at the largest T, over "
        "independent simulated chains (Welch t)",
        "direction",
        0.105,
        "stated minimal effect: a 10% lower error (δ = ln(1/0.9))",
        "simulated chains",
        source="paper",
    ),
    ClaimSpec(
        "tale-recursion-compounds",
        "The memoriser retrained on its own top-k output: the test error grows across generations",
        "per chain: error at the last generation / at generation 0; mean over chains (t)",
        "direction",
        1.5,
        "stated minimal effect: a 1.5-fold error",
        "chains",
        source="notes",
    ),
    ClaimSpec(
        "tale-real-data-helps",
        "Memoriser: with {rf:g} fresh real data per generation the error grows less than without",
        "per chain (same real data at generation 0): error ratio (last / generation 0), replace − mix; "
        "mean over chains (paired t)",
        "direction",
        0.2,
        "stated minimal effect: a fifth of the generation-0 error",
        "chains",
        source="notes",
    ),
)


def spec_for(families) -> ChapterSpec:
    """The chapter's spec restricted to the claims of the selected ``families`` (each checked).

    Explained in :ref:`chapter-model-families`.
    """
    chosen = {check_family(f) for f in families}
    return replace(SPEC, claims=tuple(c for c in SPEC.claims if CLAIM_FAMILY[c.id.split("-")[0]] in chosen))


SPEC = ChapterSpec(
    stem="02_model_families",
    short="families",
    book_seconds=230,
    title="Every model family forgets its tails",
    description="A Gaussian mixture, a VAE on real handwriting, a character language model on "
    "Shakespeare and the Hutter memoriser of 'A Tale of Tails', each retrained on its own output; "
    "replace, accumulate and fresh real data compared.",
    checks=(_check,),
    params=(
        *common_params({"smoke": 24, "book": 48, "full": 128}),
        Param(
            "families",
            "str_list",
            list(FAMILIES),
            "model families to run (their experiments, figures and claims); "
            "'What real data is worth' compares the selected ones",
            choices=FAMILIES,
        ),
        Param(
            "real_fraction",
            "float",
            0.0,
            "fresh real data in every generation of every self-consuming arm and in the memoriser's "
            "tail-cut data (0 = pure self-training, the notes' setting; 1 = the null control); no "
            "mix arm gets less",
            low=0.0,
            high=1.0,
        ),
        # --- Gaussian mixture
        Param(
            "gmm_n",
            "int",
            {"smoke": 250, "book": 250, "full": 1000},
            "points per generation for the Gaussian mixture",
            low=30,
            high=1_000_000,
        ),
        Param(
            "gmm_generations",
            "int",
            {"smoke": 12, "book": 30, "full": 100},
            "generations of refitting (mixture)",
            low=1,
            high=10_000,
        ),
        Param(
            "q",
            "float",
            0.05,
            "low-density region: the real mixture's least-probable q of the mass",
            low=0.001,
            high=0.25,
        ),
        Param(
            "real_fractions",
            "float_list",
            {"smoke": [0.1, 0.5], "book": [0.02, 0.05, 0.1, 0.2, 0.5], "full": [0.01, 0.02, 0.05, 0.1, 0.2, 0.5]},
            "fractions of fresh real data per generation (mixture and memoriser sweep)",
            low=0.0,
            high=1.0,
        ),
        Param(
            "pr_points",
            "int",
            {"smoke": 300, "book": 300, "full": 1000},
            "model and real points per chain for the k-NN precision and recall (mixture)",
            low=10,
            high=100_000,
        ),
        # --- VAE on digits
        Param(
            "vae_chains",
            "int",
            {"smoke": 8, "book": 8, "full": 16},
            "independent VAE chains (trained together, batched)",
            low=2,
            high=256,
        ),
        Param(
            "vae_n",
            "int",
            {"smoke": 400, "book": 800, "full": 1500},
            "images per generation (VAE)",
            low=50,
            high=100_000,
        ),
        Param(
            "vae_generations",
            "int",
            {"smoke": 3, "book": 8, "full": 15},
            "generations of retraining (VAE)",
            low=1,
            high=1000,
        ),
        Param(
            "vae_steps",
            "int",
            {"smoke": 200, "book": 320, "full": 2000},
            "Adam steps per VAE training",
            low=10,
            high=1_000_000,
        ),
        Param(
            "vae_real_fraction",
            "float",
            0.25,
            "fresh real images per generation in the VAE's mix arm",
            low=0.0,
            high=1.0,
        ),
        Param(
            "class_decay",
            "float",
            0.7,
            "real class shares fall as class_decay^rank (the rarest digits are the rare events)",
            low=0.3,
            high=1.0,
        ),
        Param(
            "vae_decays",
            "float_list",
            {"smoke": [0.5], "book": [0.5, 0.9], "full": [0.4, 0.5, 0.6, 0.8, 0.9]},
            "further class decays of the VAE sweep (replace arm; run as extra members of one batched VAE)",
            low=0.3,
            high=1.0,
        ),
        Param(
            "vae_decay_chains",
            "int",
            {"smoke": 2, "book": 2, "full": 8},
            "VAE chains per class decay of the sweep",
            low=2,
            high=256,
        ),
        # --- character language model
        Param(
            "lm_chains",
            "int",
            {"smoke": 3, "book": 6, "full": 8},
            "independent LM chains per arm (trained together, batched)",
            low=2,
            high=64,
        ),
        Param(
            "lm_n",
            "int",
            {"smoke": 400, "book": 600, "full": 20000},
            "lines of text per generation (LM)",
            low=64,
            high=1_000_000,
        ),
        Param(
            "lm_generations",
            "int",
            {"smoke": 2, "book": 3, "full": 8},
            "generations of retraining (LM)",
            low=1,
            high=100,
        ),
        Param(
            "lm_steps",
            "int",
            {"smoke": 35, "book": 60, "full": 3000},
            "training steps per LM generation",
            low=10,
            high=10_000_000,
        ),
        Param(
            "lm_batch", "int", {"smoke": 64, "book": 64, "full": 128}, "lines per LM training step", low=8, high=4096
        ),
        Param(
            "lm_measure",
            "int",
            {"smoke": 300, "book": 500, "full": 2000},
            "lines sampled from each LM generation to measure its words and perplexities",
            low=10,
            high=1_000_000,
        ),
        Param("lm_hidden", "int", {"smoke": 48, "book": 48, "full": 256}, "GRU hidden size", low=8, high=4096),
        Param(
            "temperature",
            "float",
            0.7,
            "sampling temperature of the truncated arm (the other arms sample at 1)",
            low=0.05,
            high=1.0,
        ),
        Param(
            "lm_real_fractions",
            "float_list",
            {"smoke": [0.5], "book": [0.5], "full": [0.1, 0.25, 0.5, 1.0]},
            "fractions of fresh real lines per generation (LM mix arms)",
            low=0.0,
            high=1.0,
        ),
        Param(
            "parallel",
            "str",
            "auto",
            "train the language model in a worker process while the other families run (a second CPU "
            "core; the numbers do not change): yes, no, or auto = yes unless OMP_NUM_THREADS=1 (the "
            "book build and the tests give each chapter one core)",
            choices=("auto", "yes", "no"),
        ),
        Param(
            "device",
            "str",
            {"smoke": "cpu", "book": "cpu", "full": "auto"},
            "torch device for the VAE and the LM",
            choices=("cpu", "cuda", "auto"),
        ),
        # --- A Tale of Tails
        Param(
            "tale_items",
            "int",
            {"smoke": 20000, "book": 50000, "full": 200000},
            "number of Zipf items N",
            low=100,
            high=10_000_000,
        ),
        Param("zipf_beta", "float", 2.0, "Zipf exponent beta (p_i ~ i^-beta)", low=1.1, high=4.0),
        Param("tale_k", "int", 100, "rank beyond which the earlier generation cut the tail", low=1),
        Param(
            "tale_T_max",
            "int",
            {"smoke": 100000, "book": 1000000, "full": 10000000},
            "largest training-set size T on the learning curve",
            low=10,
            high=100_000_000,
        ),
        Param(
            "clean_fractions",
            "float_list",
            [0.05, 0.2],
            "fractions pi of clean data mixed into the tail-cut training data",
            low=0.0,
            high=1.0,
        ),
        Param(
            "tale_generations",
            "int",
            {"smoke": 10, "book": 20, "full": 50},
            "generations of the recursive memoriser",
            low=1,
            high=10_000,
        ),
    ),
    claims=CLAIMS,
    null={"real_fraction": 1.0},
    null_description="fresh real data every generation: every self-consuming arm (and every mix arm) trains "
    "on a new real sample each generation, and the memoriser's 'tail-cut' data are clean, so nothing "
    "is inherited and nothing compounds",
)
