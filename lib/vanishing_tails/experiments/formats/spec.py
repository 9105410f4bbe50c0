"""Chapter 4, "One format wins": parameters, presets, claims and the null configuration.

Plain data: no torch, no engine imports (``python -m vanishing_tails list`` reads it).
The unit of replication is the pretrained model: ``n_pretrain`` models per size, each
with ``n_seeds`` RL runs per KL strength whose values are averaged inside the model.
Claims about both sizes pair the j-th small and the j-th large model (independent
pretraining streams) and take the smaller of their two values, so one replicate is one
pretraining seed j and the claim must hold for both sizes.
"""

from ...book.params import ChapterSpec, ClaimSpec, Param, common_params
from .vocab import FORMATS, VERBS, check_formats, check_proportions


def _check(P: dict) -> None:
    """Cross-parameter rules, each refused with a ValueError that names the parameter."""
    check_formats(P["formats"], name="formats")
    check_proportions(P["proportions"], formats=P["formats"], name="proportions")
    bad = [b for b in P["betas"] if not b > 0]
    if bad:
        raise ValueError(f"parameter 'betas' (KL strengths) must all be > 0; got {P['betas']}")
    if len(P["betas"]) < 2:
        raise ValueError(f"parameter 'betas' needs at least two KL strengths to compare; got {P['betas']}")
    n = len(P["d_models"])
    if n != 2 or len(P["n_layers"]) != n or len(P["n_heads"]) != n:
        raise ValueError(
            "parameters 'd_models', 'n_layers' and 'n_heads' must each list exactly two "
            f"model sizes (small, large); got {P['d_models']}, {P['n_layers']}, {P['n_heads']}"
        )
    for d, h in zip(P["d_models"], P["n_heads"]):
        if d % h:
            raise ValueError(f"parameter 'd_models': {d} is not divisible by its n_heads {h}")
    if "none" in P["code_misreads"] and len(P["code_misreads"]) > 1:
        raise ValueError("parameter 'code_misreads': 'none' cannot be combined with verbs")
    if P["rl_steps"] * P["batch_problems"] < P["n_rl"]:
        raise ValueError(
            f"parameter 'rl_steps' must cover the first pass over the RL problems "
            f"(n_rl / batch_problems = {P['n_rl'] / P['batch_problems']:g} steps); got {P['rl_steps']}"
        )
    code = P["proportions"][P["formats"].index("code")] if "code" in P["formats"] else 0.0
    bad = [x for x in P["flip_steps_shares"] if x > 1.0 - code + 1e-9]
    if bad:
        raise ValueError(
            f"parameter 'flip_steps_shares': code keeps its share {code:g} of 'proportions', so a steps "
            f"share must be <= {1 - code:g}; got {bad}"
        )
    if P["flip_n_rl"] // P["batch_problems"] < 5:
        raise ValueError(
            f"parameter 'flip_n_rl' must give the sweep's RL pass at least 5 steps of batch_problems = "
            f"{P['batch_problems']} problems; got {P['flip_n_rl']}"
        )
    if P["max_value"] < 2 * P["max_operand"]:
        raise ValueError(f"parameter 'max_value' must be >= 2 * max_operand = {2 * P['max_operand']}")


PAIRED = "pretraining seeds (a small and a large model each)"
CLAIMS = (
    ClaimSpec(
        "one-format-first-pass",
        "Under the weak KL one format holds more than 80% of the samples by the end of the first pass "
        "over the RL problems, in both sizes",
        "per pretraining seed, the smaller over sizes of the largest format share (exact, on the RL "
        "batches) averaged over the last five steps of the first pass",
        "direction",
        0.8,
        "a stated minimal effect: 'one format wins' means it holds more than four fifths of the samples "
        "(the threshold of the chapter's first version)",
        PAIRED,
        source="notes",
        expected="holds",
    ),
    ClaimSpec(
        "pass1-rises",
        "RL with the weak KL raises pass@1 on held-out problems in both sizes",
        "per pretraining seed, the smaller over sizes of pass@1 after RL minus before",
        "direction",
        0.1,
        "a stated minimal effect: ten points of held-out accuracy",
        PAIRED,
        source="paper",
        expected="holds",
    ),
    ClaimSpec(
        "capacity-helps-arithmetic",
        "Accuracy by format depends on capacity: before RL the large model is more accurate than the "
        "small one on the formats that need arithmetic (bare, steps)",
        "mean accuracy over bare and steps before RL, large minus small (Welch interval over "
        "independently pretrained models)",
        "direction",
        0.05,
        "a stated minimal effect: five points of accuracy",
        "pretrained models per size",
        source="notes",
        expected="holds",
    ),
    ClaimSpec(
        "most-accurate-wins",
        "Finding: in both sizes RL amplifies the format the pretrained model was right with most often "
        "(before RL, the winner's held-out accuracy exceeds every other format's)",
        "per pretraining seed, the smaller over sizes of the weak-KL winner's accuracy before RL minus the "
        "best other format's",
        "direction",
        0.0,
        "no margin: 'right most often' is a strict ordering",
        PAIRED,
        source="finding",
        expected="holds",
    ),
    ClaimSpec(
        "kl-keeps-minority",
        "The stronger KL keeps a larger minority share at the end of RL than the weak one, in both sizes",
        "per pretraining seed, the smaller over sizes of the difference (strong minus weak, same "
        "pretrained model and RL seed) in 1 - the largest format share after RL",
        "direction",
        0.1,
        "a stated minimal effect: a tenth of the samples",
        PAIRED,
        source="notes",
        expected="holds",
    ),
    ClaimSpec(
        "strong-kl-keeps-pass-at-k",
        "The stronger KL keeps pass@k (k = all evaluation samples) higher after RL than the weak one",
        "per pretraining seed, the mean over sizes of pass@k after strong-KL RL minus after weak-KL RL "
        "(same pretrained model, RL seed and evaluation samples' seed)",
        "direction",
        0.05,
        "a stated minimal effect: five points of pass@k",
        PAIRED,
        source="notes",
        expected="fails",
    ),
    ClaimSpec(
        "clean-coverage-kept",
        "Finding: on the problems code can read, the weak-KL collapse costs no coverage: pass@k (k = all "
        "evaluation samples) after RL stays where it was before, in both sizes",
        "per pretraining seed, of the two sizes' changes in pass@k on the evaluation problems without a "
        "dropped verb (after weak-KL RL minus before), the one farther from 0",
        "equivalence",
        0.05,
        "a stated minimal effect: five points of pass@k, as for the notes' comparison",
        PAIRED,
        source="finding",
        expected="holds",
    ),
    ClaimSpec(
        "rl-repairs-code",
        "Finding: RL partly repairs the code corpus' systematic bug: on the problems with a dropped "
        "verb, code's accuracy rises under the weak KL, in both sizes",
        "per pretraining seed, the smaller over sizes of code's accuracy on those problems after RL minus before",
        "direction",
        0.1,
        "a stated minimal effect: ten points of accuracy",
        PAIRED,
        source="finding",
        expected="holds",
    ),
    ClaimSpec(
        "overshoots-optimum",
        "Finding: under the weak KL the winner's share overshoots the whole-sequence KL optimum "
        "p_ref(1 - a + a·e^(1/β)), computed per prompt and averaged over the evaluation problems",
        "per pretraining seed, the mean over sizes of the winner's share after RL minus its share at "
        "the per-prompt optimum of the pretrained model",
        "direction",
        0.2,
        "a stated minimal effect: a fifth of the samples",
        PAIRED,
        source="finding",
        expected="holds",
    ),
)

SPEC = ChapterSpec(
    stem="04_one_format_wins",
    short="formats",
    book_seconds=348,
    title="One format wins",
    description="Tiny transformers pretrained on arithmetic word problems solved in three formats; "
    "RL with a correctness reward collapses them onto one format within the first pass. Tested over "
    "independently pretrained models: whether a stronger KL penalty keeps the other formats and pass@k, "
    "and how far the collapse overshoots the KL-regularised optimum.",
    params=(
        *common_params({"smoke": 1, "book": 1, "full": 2}),
        Param(
            "n_pretrain",
            "int",
            {"smoke": 2, "book": 5, "full": 8},
            "independently pretrained models per size: the unit of replication (each gets n_seeds RL "
            "runs per KL strength, averaged inside the model)",
            low=1,
            high=20,
        ),
        Param("formats", "str_list", list(FORMATS), "formats in the pretraining mixture", choices=FORMATS),
        Param(
            "proportions",
            "float_list",
            [0.4, 0.4, 0.2],
            "share of each format in the corpus (aligned with formats; must sum to 1)",
            low=0.0,
            high=1.0,
        ),
        Param("n_ops", "int", 2, "additions/subtractions per problem", low=1, high=4),
        Param("max_value", "int", 14, "running amounts stay in [0, max_value]", low=2, high=60),
        Param("max_operand", "int", 7, "operands lie in [1, max_operand]", low=1, high=30),
        Param("slip", "float", 0.05, "chance that a written operation in the corpus is off by one", low=0.0, high=0.5),
        Param(
            "code_misreads",
            "str_list",
            ["eats"],
            "verbs the code corpus' translator drops ('none': a bug-free code corpus)",
            choices=(*VERBS, "none"),
        ),
        Param(
            "d_models",
            "int_list",
            {"smoke": [32, 64], "book": [32, 64], "full": [64, 256]},
            "model width of the small and the large transformer",
            low=4,
            high=2048,
        ),
        Param(
            "n_layers",
            "int_list",
            {"smoke": [1, 2], "book": [1, 2], "full": [1, 4]},
            "layers of the small and the large transformer",
            low=1,
            high=24,
        ),
        Param(
            "n_heads",
            "int_list",
            {"smoke": [4, 4], "book": [4, 4], "full": [4, 8]},
            "attention heads of the small and the large transformer",
            low=1,
            high=32,
        ),
        Param(
            "pretrain_steps",
            "int",
            {"smoke": 400, "book": 600, "full": 6000},
            "pretraining steps (both sizes see the same data)",
            low=1,
        ),
        Param(
            "pretrain_batch", "int", {"smoke": 64, "book": 64, "full": 128}, "pretraining batch size (sequences)", low=1
        ),
        Param(
            "n_corpus",
            "int",
            {"smoke": 50000, "book": 50000, "full": 400000},
            "pretraining corpus size (sequences)",
            low=100,
        ),
        Param(
            "betas",
            "float_list",
            [0.02, 0.3],
            "KL strengths beta (weak, strong; > 0) of the penalty to the pretrained model",
            low=0.0,
            high=100.0,
        ),
        Param("rl_steps", "int", {"smoke": 40, "book": 120, "full": 200}, "RL steps per run", low=2),
        Param(
            "n_rl",
            "int",
            {"smoke": 480, "book": 720, "full": 3200},
            "RL problems (held out from pretraining); one pass = n_rl / batch_problems steps",
            low=2,
        ),
        Param("batch_problems", "int", {"smoke": 12, "book": 12, "full": 32}, "problems per RL step", low=1),
        Param(
            "group_size",
            "int",
            {"smoke": 8, "book": 8, "full": 16},
            "samples per problem (the GRPO group)",
            low=2,
            high=256,
        ),
        Param(
            "rl_lr",
            "float",
            1e-3,
            "Adam learning rate of the RL updates (0 freezes the policy: the null)",
            low=0.0,
            high=1.0,
        ),
        Param(
            "n_eval",
            "int",
            {"smoke": 96, "book": 128, "full": 256},
            "held-out evaluation problems (before and after RL)",
            low=1,
        ),
        Param(
            "eval_samples",
            "int",
            {"smoke": 16, "book": 32, "full": 64},
            "samples per evaluation problem (pass@k and maj@k up to this k)",
            low=2,
            high=1024,
        ),
        Param(
            "bandit_steps",
            "int",
            {"smoke": 800, "book": 1500, "full": 4000},
            "steps of the format bandit that illustrates the optimisers' paths to the KL optimum",
            low=1,
        ),
        Param(
            "bandit_chains",
            "int",
            {"smoke": 4, "book": 8, "full": 16},
            "independent chains of the format bandit per optimiser (the replicates of its figure)",
            low=2,
            high=256,
        ),
        Param(
            "flip_pretrain_steps",
            "int_list",
            {"smoke": [100, 400], "book": [150, 600], "full": [600, 2400, 6000]},
            "pretraining budgets (steps) of the winner-flip sweep, large size",
            low=1,
            high=100000,
        ),
        Param(
            "flip_steps_shares",
            "float_list",
            {"smoke": [0.4], "book": [0.4, 0.7], "full": [0.2, 0.4, 0.7]},
            "corpus shares of the steps format in the winner-flip sweep (code keeps its share in "
            "proportions, bare gets the rest)",
            low=0.0,
            high=1.0,
        ),
        Param(
            "flip_n_rl",
            "int",
            {"smoke": 120, "book": 720, "full": 3200},
            "RL problems of the winner-flip sweep: its RL runs are one pass, flip_n_rl / batch_problems "
            "steps (equal to n_rl, the sweep's cell at the chapter's budget repeats the chapter's first pass)",
            low=2,
        ),
        Param(
            "flip_n_pretrain",
            "int",
            {"smoke": 2, "book": 3, "full": 5},
            "independently pretrained models per cell of the winner-flip sweep (its unit of replication)",
            low=2,
            high=20,
        ),
        Param(
            "device",
            "str",
            {"smoke": "cpu", "book": "cpu", "full": "auto"},
            "torch device: cpu, or auto (CUDA when present)",
            choices=("cpu", "auto", "cuda"),
        ),
    ),
    checks=(_check,),
    claims=CLAIMS,
    null={"rl_lr": 0.0, "d_models": [32, 32], "n_layers": [1, 1], "n_heads": [4, 4]},
    null_description="RL cannot move the model (learning rate 0) and the two 'sizes' are the same "
    "small transformer, pretrained from different seeds",
)
