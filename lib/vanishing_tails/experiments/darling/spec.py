"""Chapter 8, "Paying for the tails": parameters, presets, claims and the null configuration.

Plain data (no torch). A replicate is a seed: its own pair classifiers (trained on its own
labelled pairs) and its own GRPO sampling stream, shared by every arm of that seed (common
random numbers), so arm differences are paired within a seed.

The smallest effects of interest were declared with the claims, before any run of the
chapter, one rule per kind of quantity:

* a probability or share (pass@1, the chance that a pair of draws is "gamed"): two
  percentage points, the rule of chapter 5;
* a count of distinct correct classes among n draws: half a class — one more way of being
  right in every second batch of n draws;
* the distance of trained class shares from a derived fixed point (total variation):
  three percentage points of class mass.
"""

from ...book.params import ChapterSpec, ClaimSpec, Param, common_params

UNIT = "seeds"
PROB = "stated minimal effect: two percentage points of a probability or share (the rule of chapter 5)"
CLASSES = (
    "stated minimal effect: half a distinct correct class among the n draws — one more way of being "
    "right in every second batch of n draws"
)
TV = (
    "stated tolerance: three percentage points of class mass in total variation, declared with the claims "
    "(the chapter prints how far apart the two arms' fixed points are, to show the test can tell them apart)"
)
LAST = "at the last step, exact under the policy, mean over prompts"


def _check_eval_every(P: dict) -> None:
    if P["eval_every"] > P["steps"]:
        raise ValueError(f"parameter 'eval_every' must be <= 'steps' = {P['steps']}; got {P['eval_every']}")


CLAIMS = (
    ClaimSpec(
        "variety-creative",
        "Creative task: DARLING (quality × partition diversity, exact partition) ends with more distinct "
        "correct classes among n = {n_distinct} draws than quality-only GRPO",
        f"per seed: distinct correct classes in n draws, {LAST}, DARLING minus quality only",
        "direction",
        0.5,
        CLASSES,
        UNIT,
        "notes",
        "holds",
    ),
    ClaimSpec(
        "variety-code",
        "Math-like task (tiny programs with several solution paths): DARLING ends with more distinct correct "
        "classes among n = {n_distinct} draws than quality-only GRPO",
        f"per seed: distinct correct classes in n draws, {LAST}, DARLING minus quality only",
        "direction",
        0.5,
        CLASSES,
        UNIT,
        "notes",
        "holds",
    ),
    ClaimSpec(
        "quality-catalysed",
        "Diversity catalyses quality: DARLING ends with a higher pass@1 than quality-only GRPO (mean over both tasks)",
        f"per seed: pass@1, {LAST}, DARLING minus quality only, mean over the two tasks",
        "direction",
        0.02,
        PROB,
        UNIT,
        "notes",
        "fails",
    ),
    ClaimSpec(
        "quality-cost",
        "Finding: DARLING pays for its variety with pass@1 — quality-only GRPO ends higher (mean over both tasks)",
        f"per seed: pass@1, {LAST}, quality only minus DARLING, mean over the two tasks",
        "direction",
        0.02,
        PROB,
        UNIT,
        "finding",
        "holds",
    ),
    ClaimSpec(
        "multiplicative-beats-additive",
        "Multiplying quality by diversity beats adding them (quality + λ·diversity, λ = {additive_weight:g}): "
        "more distinct correct classes (mean over both tasks)",
        f"per seed: distinct correct classes in n draws, {LAST}, multiplicative minus additive, mean over tasks",
        "direction",
        0.5,
        CLASSES,
        UNIT,
        "paper",
        "fails",
    ),
    ClaimSpec(
        "additive-matches",
        "Finding: at λ = {additive_weight:g} the additive reward ends within δ of the multiplicative one in "
        "distinct correct classes (mean over both tasks)",
        f"per seed: distinct correct classes in n draws, {LAST}, multiplicative minus additive, mean over tasks",
        "equivalence",
        0.5,
        CLASSES,
        UNIT,
        "finding",
        "holds",
    ),
    ClaimSpec(
        "lexical-gamed",
        "A lexical proxy for diversity (n-gram overlap) is gamed: its policy puts more probability than "
        "DARLING's on pairs of draws that differ in words but share a meaning (mean over both tasks)",
        f"per seed: chance that two draws are lexically different and semantically equal, {LAST}, "
        "lexical arm minus DARLING, mean over tasks",
        "direction",
        0.02,
        PROB,
        UNIT,
        "paper",
        "holds",
    ),
    ClaimSpec(
        "lexical-no-semantic",
        "The lexical proxy buys surface variation and no semantic variety: its distinct correct classes stay "
        "within δ of quality only's (mean over both tasks)",
        f"per seed: distinct correct classes in n draws, {LAST}, lexical arm minus quality only, mean over tasks",
        "equivalence",
        0.5,
        CLASSES,
        UNIT,
        "paper",
        "fails",
    ),
    ClaimSpec(
        "lexical-semantic-rises",
        "Finding: the lexical arm does raise distinct correct classes over quality only, by more than δ "
        "(mean over both tasks) — the gamed pairs ride along with real variety",
        f"per seed: distinct correct classes in n draws, {LAST}, lexical arm minus quality only, mean over tasks",
        "direction",
        0.5,
        CLASSES,
        UNIT,
        "finding",
        "holds",
    ),
    ClaimSpec(
        "learned-near-oracle",
        "A learned equivalence classifier is good enough: DARLING with a learned partition ends within δ of "
        "DARLING with the exact partition in distinct correct classes (mean over both tasks)",
        f"per seed (its own classifier): distinct correct classes in n draws, {LAST}, exact-partition arm minus "
        "learned-partition arm, mean over tasks",
        "equivalence",
        0.5,
        CLASSES,
        UNIT,
        "paper",
        "holds",
    ),
    ClaimSpec(
        "fixed-point-darling",
        "Theory: GRPO under DARLING's reward with a KL anchor (β = {oracle_beta:g}) settles at the derived "
        "fixed point π* ∝ π_ref exp(f(π*)/β) — class shares within δ, code task",
        "per seed: total variation between the trained and the fixed point's class shares, mean over prompts",
        "oracle",
        0.03,
        TV,
        UNIT,
        "theory",
        "holds",
    ),
    ClaimSpec(
        "fixed-point-quality",
        "Theory: quality-only GRPO with the same KL anchor settles at its own fixed point, the KL-regularised "
        "optimum π_ref exp(q/β)/Z — class shares within δ, code task",
        "per seed: total variation between the trained and the fixed point's class shares, mean over prompts",
        "oracle",
        0.03,
        TV,
        UNIT,
        "theory",
        "holds",
    ),
)

SPEC = ChapterSpec(
    stem="08_paying_for_the_tails",
    short="darling",
    book_seconds=61,
    title="Paying for the tails",
    description="DARLING's reward (quality × partition diversity) against quality-only, additive and "
    "lexical-diversity rewards, with exact, learned and lexical partitions; GRPO on tabular policies over the "
    "enumerable code and creative domains; the derived fixed point of the multiplicative reward as an oracle.",
    params=(
        *common_params({"smoke": 4, "book": 30, "full": 40}),
        Param(
            "n_prompts", "int", 6, "prompts per domain (at most 6: the creative domain has six topics)", low=1, high=6
        ),
        Param(
            "valid_share",
            "float",
            0.5,
            "share of valid outputs in each prompt's prior (the start)",
            low=0.05,
            high=0.95,
        ),
        Param(
            "group_size", "int", 8, "G: samples per group, the group DARLING partitions (8 in its runs)", low=2, high=64
        ),
        Param("steps", "int", {"smoke": 400, "book": 400, "full": 2000}, "GRPO steps of the five arms", low=1),
        Param("lr", "float", 1.0, "SGD learning rate on the logits (0: nothing moves)", low=0.0, high=100.0),
        Param(
            "beta",
            "float",
            0.0,
            "KL weight of the five arms' reward r - β log(π/π_ref); 0 = no KL, as in DARLING's math runs",
            low=0.0,
            high=100.0,
        ),
        Param("additive_weight", "float", 1.0, "λ of the additive arm, r = quality + λ·diversity", low=0.0, high=100.0),
        Param(
            "lexical_threshold",
            "float",
            0.5,
            "the lexical proxy calls two outputs the same when their 1-/2-gram Jaccard overlap is at least this",
            low=0.05,
            high=1.0,
        ),
        Param("n_pairs", "int", 300, "labelled pairs per prompt the classifier of each seed is trained on", low=2),
        Param("ridge", "float", 1.0, "L2 penalty of the pair classifier's logistic regression", low=1e-6, high=1e6),
        Param("n_distinct", "int", 16, "n of 'distinct correct classes among n draws' (and of the support)", low=1),
        Param(
            "eval_every",
            "int",
            {"smoke": 50, "book": 25, "full": 100},
            "record the metrics every this many steps",
            low=1,
        ),
        Param(
            "q",
            "float",
            0.1,
            "tail quantile of the real distribution for the common tail measures",
            low=0.001,
            high=0.5,
        ),
        Param("oracle_beta", "float", 0.5, "KL weight of the fixed-point runs (code task)", low=0.05, high=100.0),
        Param("oracle_lr", "float", 4.0, "SGD learning rate of the fixed-point runs", low=0.001, high=100.0),
        Param("oracle_steps", "int", 1000, "steps of the fixed-point runs", low=1),
        Param("oracle_groups", "int", 4, "groups of G per prompt and step in the fixed-point runs", low=1, high=64),
        Param(
            "null_partition",
            "bool",
            False,
            "true: every sample is its own class, so every diversity is 1 and every reward is quality (plus a "
            "constant) — the null configuration",
        ),
    ),
    checks=(_check_eval_every,),
    claims=CLAIMS,
    null={"null_partition": True},
    null_description="every sample its own class (null_partition = true): every diversity is 1, the diversity "
    "term carries no signal, and every arm's reward is quality alone (plus a constant in the additive arm)",
)
