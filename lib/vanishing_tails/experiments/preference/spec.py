"""Chapter 5, "What the reward pays for": parameters, presets, claims and the null configuration."""

from ...book.params import ChapterSpec, ClaimSpec, Param, common_params

JUDGES = ("correct", "distinct")
ARCHS = ("gru", "transformer")  # core.lm.ARCHS; a test keeps the two equal (no torch here)


def _judges_differ(P: dict) -> None:
    if P["code_judge"] == P["creative_judge"]:
        raise ValueError(
            f"parameter 'creative_judge' must differ from 'code_judge' (both are "
            f"{P['code_judge']!r}): the swapped-judges panel needs one judge per domain; "
            f"allowed: one of {JUDGES} each, different"
        )


UNIT = "reference models"
NATS = (
    "stated minimal effect: 0.05 nats, a 5% change in the effective number of outcomes (e^0.05 = 1.05); "
    "the same δ for every entropy and KL of the chapter"
)
POINTS = (
    "stated minimal effect: two percentage points of a probability or share, twice the drift of about "
    "one point that coin-flip labels (the null configuration) produced in development; the same δ for "
    "every probability and share of the chapter"
)


def _bigram(domain: str, judge: str, widens: bool) -> ClaimSpec:
    word = {"correct": "convergent", "distinct": "distinctiveness"}[judge]
    return ClaimSpec(
        f"{domain}-{judge}-bigram",
        f"{domain.capitalize()} × {word} judge ({{{domain}_{judge}_arm}} arm): lexical diversity "
        f"{'rises' if widens else 'falls'} — the exact bigram entropy {'grows' if widens else 'drops'} "
        "by more than δ",
        f"{'+' if widens else '−'}Δ exact bigram entropy (nats), after − before, mean over prompts",
        "direction",
        0.05,
        NATS,
        UNIT,
        "notes",
        "holds",
    )


CLAIMS = (
    _bigram("code", "correct", widens=False),
    _bigram("creative", "distinct", widens=True),
    _bigram("code", "distinct", widens=True),
    _bigram("creative", "correct", widens=False),
    ClaimSpec(
        "code-pass-rises",
        "Code × convergent judge: the pass rate rises by more than δ",
        "Δ exact pass rate, mean over prompts",
        "direction",
        0.02,
        POINTS,
        UNIT,
        "paper",
        "holds",
    ),
    ClaimSpec(
        "code-syntactic-falls",
        "Code × convergent judge: syntactic diversity (the chance that two programs differ in shape) "
        "falls by more than δ",
        "−Δ exact syntactic diversity, mean over prompts",
        "direction",
        0.02,
        POINTS,
        UNIT,
        "paper",
        "holds",
    ),
    ClaimSpec(
        "code-effective-semantic-rises",
        "Code × convergent judge: effective semantic diversity (the chance that two programs are both "
        "correct and compute different functions) rises by more than δ",
        "Δ exact effective semantic diversity, mean over prompts",
        "direction",
        0.02,
        POINTS,
        UNIT,
        "paper",
        "holds",
    ),
    ClaimSpec(
        "creative-effective-semantic-falls",
        "Finding: creative × distinctiveness judge: effective semantic diversity (two lines both on "
        "topic and different in content) falls by more than δ",
        "−Δ exact effective semantic diversity, mean over prompts",
        "direction",
        0.02,
        POINTS,
        UNIT,
        "finding",
        "holds",
    ),
    ClaimSpec(
        "code-distinct2-rises",
        "Finding: code × convergent judge: the sampled distinct-2 rises by more than δ (while the exact "
        "bigram entropy falls: claim code-correct-bigram); it held with a brevity cost c = 0.05 per token, "
        "and with c = 0 (the main arm) it is not resolved at the book's budget",
        "Δ distinct-2 of the samples, mean over prompts",
        "direction",
        0.02,
        POINTS,
        UNIT,
        "finding",
        "inconclusive",
    ),
    ClaimSpec(
        "dpo-toward-optimum",
        "Theory: DPO ends closer to the exact optimum p*_β than the reference was — KL(π‖p*_β) falls by "
        "more than δ (mean over the four arms)",
        "KL(π_ref‖p*_β) − KL(π_DPO‖p*_β) (nats), mean over arms and prompts",
        "direction",
        0.05,
        NATS,
        UNIT,
        "theory",
        "holds",
    ),
    ClaimSpec(
        "entropy-side-matches-optimum",
        "Theory: the tuned model's output entropy moves toward the side of the reference's on which p*_β's "
        "lies, by more than δ on average over the four arms",
        "mean over arms of sign(H(p*_β) − H(π_ref)) · (H(π_DPO) − H(π_ref)) (nats), mean over prompts "
        "(a signed move; a share of matching signs saturates at 1 and has no interval)",
        "direction",
        0.05,
        NATS,
        UNIT,
        "theory",
        "holds",
    ),
    ClaimSpec(
        "convergent-limit-narrows",
        "Theory: the convergent judge's β → 0 limit, π_ref restricted to its maximisers (with c = 0 every "
        "valid output ties), has less entropy than the reference in both domains: H(π_ref) − H(π_ref | A) > δ",
        "min over domains of H(π_ref) − H(π_ref | argmax r) (nats), mean over prompts",
        "direction",
        0.05,
        NATS,
        UNIT,
        "theory",
        "holds",
    ),
    ClaimSpec(
        "mixed-dpo-side-matches",
        "Theory: on the phase diagram of the mixed reward, the DPO-tuned models' bigram entropy moves toward "
        "the side of the reference's on which p*_{β,λ}'s lies, by more than δ on average over the trained "
        "(domain, β, λ) points",
        "mean over trained points of sign(ΔH₂(p*_{β,λ})) · ΔH₂(π_DPO) (nats), ΔH₂ the change of exact bigram "
        "entropy from the reference, mean over prompts",
        "direction",
        0.05,
        NATS,
        UNIT,
        "theory",
        "holds",
    ),
    ClaimSpec(
        "distinct-optimum-widens",
        "Theory: in both domains, for some β the distinctiveness judge's optimum p*_β has more output "
        "entropy than the reference",
        "min over domains of max over the β grid of H(p*_β) − H(π_ref) (nats), mean over prompts",
        "direction",
        0.05,
        NATS,
        UNIT,
        "theory",
        "holds",
    ),
)


SPEC = ChapterSpec(
    stem="05_what_the_reward_pays_for",
    short="preference",
    book_seconds=158,
    title="What the reward pays for",
    description="DPO on several small reference models: a convergent judge narrows a toy code "
    "domain, a distinctiveness judge widens a toy creative domain, and swapping the judges "
    "swaps the directions; exact KL-regularised optima on the enumerable output spaces.",
    params=(
        *common_params({"smoke": 2, "book": 6, "full": 10}),
        Param(
            "beta",
            "float",
            1.0,
            "DPO's KL weight β for every arm (rewards are standardised under the reference, "
            "so β is in reward standard deviations per nat); must be > 0",
            low=0.001,
            high=1000.0,
        ),
        Param(
            "sweep_betas",
            "float_list",
            {"smoke": [1.0], "book": [0.25], "full": [0.1, 0.25, 0.5, 2.0, 4.0, 10.0]},
            "further β values at which the two natural arms of every reference model are also "
            "trained (exact metrics only), to set them against the theory curve (values equal to "
            "beta add nothing); each > 0",
            low=0.001,
            high=1000.0,
        ),
        Param(
            "code_judge",
            "str",
            "correct",
            "the judge the code domain is tuned against in the natural arms (the swapped arm uses the other one)",
            choices=JUDGES,
        ),
        Param(
            "creative_judge",
            "str",
            "distinct",
            "the judge the creative domain is tuned against in the natural arms",
            choices=JUDGES,
        ),
        Param("n_prompts", "int", 6, "prompts per domain (an empty domain is refused)", low=1, high=6),
        Param(
            "valid_share",
            "float",
            0.5,
            "share of valid outputs in the pretraining corpus, per prompt",
            low=0.05,
            high=0.95,
        ),
        Param(
            "corpus_size",
            "int",
            {"smoke": 20000, "book": 20000, "full": 100000},
            "(prompt, output) pairs in the reference model's pretraining corpus",
            low=100,
        ),
        Param(
            "pretrain_steps",
            "int",
            {"smoke": 300, "book": 600, "full": 3000},
            "pretraining steps of the reference model (batch 128)",
            low=1,
        ),
        Param(
            "n_pairs",
            "int",
            {"smoke": 1024, "book": 1024, "full": 4096},
            "preference pairs drawn from the reference per prompt (identical pairs dropped)",
            low=1,
        ),
        Param("dpo_steps", "int", {"smoke": 60, "book": 150, "full": 600}, "DPO steps (batch 64 pairs)", low=1),
        Param("dpo_lr", "float", 3e-3, "DPO learning rate (AdamW)", low=1e-6, high=1.0),
        Param(
            "judge_scale",
            "float",
            1.0,
            "multiplies both judges' standardised rewards; 0 is a judge that prefers nothing: every "
            "preference label is a coin flip and p*_β = π_ref at every β (the null configuration)",
            low=0.0,
            high=100.0,
        ),
        Param(
            "brevity",
            "float",
            0.0,
            "the convergent judge's cost c per output token, s(y) = 1[y valid] − c·|y| (0, the main "
            "arm: validity alone, every valid output tied; > 0 adds a preference for short outputs)",
            low=0.0,
            high=1.0,
        ),
        Param(
            "mix_lambdas",
            "float_list",
            {"smoke": [0.5], "book": [0.5], "full": [0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9]},
            "weights λ of the mixed reward (1 − λ)·r_conv + λ·r_dist at which each domain is also tuned "
            "at beta (exact metrics only), to place DPO on the phase diagram; each in [0, 1]",
            low=0.0,
            high=1.0,
        ),
        Param(
            "n_samples",
            "int",
            {"smoke": 64, "book": 64, "full": 256},
            "samples per prompt for the sample-based metrics",
            low=2,
            high=4096,
        ),
        Param(
            "arch",
            "str",
            {"smoke": "gru", "book": "gru", "full": "transformer"},
            "architecture of the reference model (lm.build_model)",
            choices=ARCHS,
        ),
        Param(
            "device",
            "str",
            {"smoke": "cpu", "book": "cpu", "full": "auto"},
            "torch device; auto picks CUDA when present",
            choices=("cpu", "cuda", "auto"),
        ),
    ),
    checks=(_judges_differ,),
    claims=CLAIMS,
    null={"judge_scale": 0.0},
    null_description="a judge that prefers nothing (judge_scale = 0): every preference label is a coin "
    "flip and the KL-regularised optimum is the reference itself, at every β",
)
