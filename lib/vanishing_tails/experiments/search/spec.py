"""Chapter 6, "Search breadth": parameters, presets, claims and the null configuration.

Plain data (no torch). Every claim's per-replicate value is one number per seed: a seed is
an independent generated world with its own demonstrations, its own initial transformer
(shared by all of the seed's arms) and its own RL sampling stream (shared by all of its
arms), so arm differences are paired within a seed.

The smallest effects of interest were declared with the claims, before any run of the
chapter, by one rule per kind of quantity (the rules of chapter 3 where they overlap):

* a probability (success@1, success@k, a strategy's share): 0.05, five percentage points;
* an entropy (of strategies, states or whole trajectories): 0.1 nats, a 10% change of the
  effective number of choices e^H;
* a number of distinct strategies in n draws: half a strategy;
* a goodness of fit: R² = 0.8; a correlation: 0.3 (9% of the variance);
* the covariance oracle: the first-order prediction must carry the measured change to
  within a quarter (the lemma is first order, the RL steps are finite).
"""

from ...book.params import ChapterSpec, ClaimSpec, Param, common_params

_PROB = "stated minimal effect: 5 percentage points of a probability (the chapter's rule for probabilities)"
_NATS = "stated minimal effect: 0.1 nats, a 10% change of the effective number of choices e^H"
_SEEDS = "seeds"

CLAIMS = (
    ClaimSpec(
        "narrow-loses-strategies",
        "RL from narrow SFT loses at least half a strategy within the first {early_passes:g} passes over "
        "the training questions (expected distinct strategies in {n_distinct} episodes)",
        "per seed: distinct strategies of narrow → RL at step 0 minus at the early step",
        "direction",
        0.5,
        "stated minimal effect: half a strategy of the three",
        _SEEDS,
        source="notes",
    ),
    ClaimSpec(
        "narrow-trajectory-entropy-falls",
        "RL from narrow SFT loses at least 0.1 nats of trajectory entropy within the first {early_passes:g} passes",
        "per seed: trajectory entropy (training questions) of narrow → RL at step 0 minus at the early step",
        "direction",
        0.1,
        _NATS,
        _SEEDS,
        source="notes",
    ),
    ClaimSpec(
        "training-success-rises",
        "RL from narrow SFT raises training success@1 by at least 5 points within the first {early_passes:g} passes",
        "per seed: training success@1 of narrow → RL at the early step minus at step 0",
        "direction",
        0.05,
        _PROB,
        _SEEDS,
        source="notes",
    ),
    ClaimSpec(
        "narrow-heldout-falls",
        "RL alone (from narrow SFT) leaves held-out success@{k} below the SFT model's",
        "per seed: held-out success@k of narrow → RL at step 0 minus at the last step",
        "direction",
        0.05,
        _PROB,
        _SEEDS,
        source="notes",
    ),
    ClaimSpec(
        "diverse-keeps-heldout",
        "SFT on diverse demonstrations keeps held-out success@{k} through RL (within 5 points of the "
        "diverse SFT model's)",
        "per seed: held-out success@k of diverse → RL at the last step minus at step 0",
        "equivalence",
        0.05,
        _PROB,
        _SEEDS,
        source="notes",
        expected="fails",
    ),
    ClaimSpec(
        "diverse-loses-multihop",
        "Instead RL squeezes the diverse agent too: it removes at least 5 points of the multi-hop share, "
        "the one strategy the held-out questions need",
        "per seed: multi-hop share (exact, training questions) of diverse → RL at step 0 minus at the last step",
        "direction",
        0.05,
        _PROB,
        _SEEDS,
        source="finding",
    ),
    ClaimSpec(
        "entropy-reward-law",
        "Training success follows Cui et al.'s R = −a·e^H + b over training (narrow → RL: R² of the fit "
        "at least 0.8, with a > 0)",
        "per seed: R² of the least-squares fit of training success@1 on the mean state entropy over the "
        "evaluation steps of narrow → RL, signed by a",
        "direction",
        0.8,
        "stated minimal effect: the law explains at least 80% of the variance of R",
        _SEEDS,
        source="paper",
    ),
    ClaimSpec(
        "law-predicts-final",
        "The law fitted on the first half of training predicts the final training success of narrow → RL "
        "within 5 points",
        "per seed: final training success@1 minus the law's prediction at the final entropy, fitted on the "
        "evaluation steps of the first half",
        "equivalence",
        0.05,
        _PROB,
        _SEEDS,
        source="paper",
    ),
    ClaimSpec(
        "law-breaks-when-learning",
        "Where it breaks: for the wrong-answer arm, which must learn to answer rather than sharpen, the same "
        "half-time fit under-predicts the final training success by at least 5 points",
        "per seed: final training success@1 minus the first-half law's prediction, wrong-answer diverse → RL",
        "direction",
        0.05,
        _PROB,
        _SEEDS,
        source="finding",
    ),
    ClaimSpec(
        "covariance-oracle",
        "Each RL step changes the state entropy by −Cov(log π, Δz), Cui et al.'s first-order law (slope of "
        "the measured on the predicted change = 1)",
        "per seed: least-squares slope through the origin of the measured on the predicted mean entropy "
        "change, over every step of the seed's four RL arms; theory 1",
        "oracle",
        0.25,
        "stated tolerance: a quarter of the predicted change for the terms beyond first order (the lemma is "
        "first order, the Adam steps finite; the chapter computes the second-order term)",
        _SEEDS,
        source="theory",
    ),
    ClaimSpec(
        "covariance-drives-entropy",
        "Cui et al.'s batch covariance of log-probability and advantage tracks the entropy drop step by step "
        "(correlation at least 0.3)",
        "per seed: correlation over the steps of the seed's four RL arms between the batch covariance and "
        "the measured entropy drop −ΔH",
        "direction",
        0.3,
        "stated minimal effect: a correlation of 0.3 (9% of the variance)",
        _SEEDS,
        source="paper",
    ),
    ClaimSpec(
        "entropy-bonus-keeps-strategies",
        "An entropy bonus (β = {entropy_beta:g}) keeps at least 0.1 nats more strategy entropy than RL from "
        "the same narrow SFT model without it",
        "per seed: strategy entropy at the last step, narrow → RL + entropy bonus minus narrow → RL",
        "direction",
        0.1,
        _NATS,
        _SEEDS,
        source="notes",
    ),
    ClaimSpec(
        "entropy-bonus-not-tail",
        "The entropy bonus does not keep the tail: held-out success@{k} with it stays within 5 points of RL without it",
        "per seed: held-out success@k at the last step, narrow → RL + entropy bonus minus narrow → RL",
        "equivalence",
        0.05,
        _PROB,
        _SEEDS,
        source="finding",
    ),
    ClaimSpec(
        "wrong-answer-priming",
        "Behaviour priming with wrong-answer diverse demonstrations reaches the training success of correct "
        "diverse demonstrations after RL (within 5 points)",
        "per seed: training success@1 at the last step, wrong-answer diverse → RL minus diverse → RL",
        "equivalence",
        0.05,
        _PROB,
        _SEEDS,
        source="paper",
        expected="fails",
    ),
)


def _check_sizes(P: dict) -> None:
    if P["k"] > P["n_eval"]:
        raise ValueError(
            f"parameter 'k' must be <= 'n_eval' = {P['n_eval']} (success@k needs k episodes); got {P['k']}"
        )
    if P["n_held_out"] > P["n_entities"] - 2:
        raise ValueError(
            f"parameter 'n_held_out' must be <= n_entities - 2 = {P['n_entities'] - 2}; got {P['n_held_out']}"
        )
    n_train = P["n_entities"] - P["n_held_out"]
    if P["questions_per_step"] > n_train:
        raise ValueError(f"parameter 'questions_per_step' must be <= the {n_train} training questions; got "
                         f"{P['questions_per_step']}")  # fmt: skip
    if P["d_model"] % P["n_heads"]:
        raise ValueError(f"parameter 'd_model' must be divisible by n_heads = {P['n_heads']}; got {P['d_model']}")


def _check_steps(P: dict) -> None:
    if P["rl_steps"] % P["eval_every"] or P["rl_steps"] // P["eval_every"] < 3:
        raise ValueError(f"parameter 'eval_every' must divide rl_steps = {P['rl_steps']} at least 3 times; got "
                         f"{P['eval_every']}")  # fmt: skip
    if P["early_step"] % P["eval_every"] or not 0 < P["early_step"] <= P["rl_steps"]:
        raise ValueError(f"parameter 'early_step' must be a multiple of eval_every = {P['eval_every']} in "
                         f"(0, rl_steps]; got {P['early_step']}")  # fmt: skip


SPEC = ChapterSpec(
    stem="06_search_breadth",
    short="search",
    book_seconds=88,
    title="Search breadth",
    description="A small transformer learns to search a generated document collection by SFT on "
    "narrow, diverse or wrong-answer demonstrations, then GRPO: RL squeezes its strategies by "
    "Cui et al.'s covariance mechanism, and diverse demonstrations delay the squeeze without "
    "stopping it.",
    params=(
        *common_params({"smoke": 3, "book": 10, "full": 16}),
        Param("n_entities", "int", 24, "entities (documents) in each generated world", low=3, high=10000),
        Param("n_held_out", "int", 8, "held-out targets: pages neither indexed nor listed", low=1, high=10000),
        Param("n_values", "int", 10, "distinct attribute values (answer tokens)", low=2, high=1000),
        Param(
            "narrow_share", "float", 0.8, "share of the direct look-up in the narrow demonstrations", low=0.0, high=1.0
        ),  # fmt: skip
        Param("n_demos", "int", 256, "demonstrations per SFT set", low=1, high=1000000),
        Param("d_model", "int", 16, "transformer width", low=2, high=4096),
        Param("n_layers", "int", 1, "transformer layers", low=1, high=64),
        Param("n_heads", "int", 2, "attention heads", low=1, high=64),
        Param("sft_steps", "int", 100, "SFT updates (Adam) on each demonstration set", low=1, high=1000000),
        Param("sft_lr", "float", 3e-3, "SFT learning rate", low=0.0, high=1.0),
        Param("batch_size", "int", 64, "SFT minibatch of demonstrations", low=1, high=100000),
        Param("rl_steps", "int", {"smoke": 40, "book": 150, "full": 400}, "GRPO updates", low=1, high=1000000),
        Param(
            "rl_lr",
            "float",
            3e-3,
            "RL (Adam) learning rate; 0 is the null configuration: no arm moves",
            low=0.0,
            high=1.0,
        ),  # fmt: skip
        Param("group_size", "int", 8, "GRPO group: episodes per question per step", low=2, high=1024),
        Param("questions_per_step", "int", 8, "training questions per RL step", low=1, high=10000),
        Param("entropy_beta", "float", 0.3, "entropy-bonus coefficient of the entropy arm", low=0.0, high=100.0),
        Param(
            "kl_beta",
            "float",
            0.0,
            "KL strength to each agent's SFT model (0: none, as in GRPO without KL)",
            low=0.0,
            high=1000.0,
        ),  # fmt: skip
        Param(
            "eval_every",
            "int",
            {"smoke": 5, "book": 15, "full": 20},
            "evaluate every this many RL steps",
            low=1,
            high=1000000,
        ),  # fmt: skip
        Param(
            "early_step",
            "int",
            {"smoke": 30, "book": 30, "full": 40},
            "the step that ends 'the first passes' of the squeeze claims",
            low=1,
            high=1000000,
        ),  # fmt: skip
        Param(
            "n_eval",
            "int",
            {"smoke": 16, "book": 32, "full": 64},
            "episodes sampled per question at every evaluation",
            low=1,
            high=100000,
        ),
        Param("k", "int", 16, "k of success@k", low=1, high=100000),
        Param("n_distinct", "int", 16, "n of 'expected distinct strategies in n episodes'", low=1, high=100000),
        Param(
            "q",
            "float",
            0.2,
            "tail quantile of the common tail measures (the reference's rarest q)",
            low=0.001,
            high=0.5,
        ),  # fmt: skip
    ),
    checks=(_check_sizes, _check_steps),
    claims=CLAIMS,
    null={"rl_lr": 0.0},
    null_description="RL learning rate 0: every RL arm stays its SFT model, so nothing that RL is claimed "
    "to do can appear",
)
