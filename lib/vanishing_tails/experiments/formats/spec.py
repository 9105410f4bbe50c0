"""Chapter 4, "One format wins": parameters and presets."""

from ...book.params import ChapterSpec, Param, common_params
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
        raise ValueError("parameters 'd_models', 'n_layers' and 'n_heads' must each list exactly two "
                         f"model sizes (small, large); got {P['d_models']}, {P['n_layers']}, {P['n_heads']}")
    for d, h in zip(P["d_models"], P["n_heads"]):
        if d % h:
            raise ValueError(f"parameter 'd_models': {d} is not divisible by its n_heads {h}")
    if "none" in P["code_misreads"] and len(P["code_misreads"]) > 1:
        raise ValueError("parameter 'code_misreads': 'none' cannot be combined with verbs")
    if P["max_value"] < 2 * P["max_operand"]:
        raise ValueError(f"parameter 'max_value' must be >= 2 * max_operand = {2 * P['max_operand']}")


SPEC = ChapterSpec(
    stem="04_one_format_wins",
    short="formats",
    title="One format wins",
    description="Tiny transformers pretrained on arithmetic word problems solved in three formats; "
    "RL with a correctness reward collapses them onto one format within the first pass, and a "
    "stronger KL penalty keeps the others (and pass@k) alive.",
    params=(
        *common_params({"smoke": 2, "book": 4, "full": 8}),
        Param("n_pretrain", "int", {"smoke": 1, "book": 2, "full": 3},
              "independently pretrained models per size (each gets n_seeds RL runs per KL strength)",
              low=1, high=20),
        Param("formats", "str_list", list(FORMATS), "formats in the pretraining mixture",
              choices=FORMATS),
        Param("proportions", "float_list", [0.4, 0.4, 0.2],
              "share of each format in the corpus (aligned with formats; must sum to 1)",
              low=0.0, high=1.0),
        Param("n_ops", "int", 2, "additions/subtractions per problem", low=1, high=4),
        Param("max_value", "int", 14, "running amounts stay in [0, max_value]", low=2, high=60),
        Param("max_operand", "int", 7, "operands lie in [1, max_operand]", low=1, high=30),
        Param("slip", "float", 0.05, "chance that a written operation in the corpus is off by one",
              low=0.0, high=0.5),
        Param("code_misreads", "str_list", ["eats"],
              "verbs the code corpus' translator drops ('none': a bug-free code corpus)",
              choices=(*VERBS, "none")),
        Param("d_models", "int_list", {"smoke": [32, 64], "book": [32, 64], "full": [64, 256]},
              "model width of the small and the large transformer", low=4, high=2048),
        Param("n_layers", "int_list", {"smoke": [1, 2], "book": [1, 2], "full": [1, 4]},
              "layers of the small and the large transformer", low=1, high=24),
        Param("n_heads", "int_list", {"smoke": [4, 4], "book": [4, 4], "full": [4, 8]},
              "attention heads of the small and the large transformer", low=1, high=32),
        Param("pretrain_steps", "int", {"smoke": 600, "book": 600, "full": 6000},
              "pretraining steps (both sizes see the same data)", low=1),
        Param("pretrain_batch", "int", {"smoke": 64, "book": 64, "full": 128},
              "pretraining batch size (sequences)", low=1),
        Param("n_corpus", "int", {"smoke": 50000, "book": 50000, "full": 400000},
              "pretraining corpus size (sequences)", low=100),
        Param("betas", "float_list", [0.02, 0.3],
              "KL strengths beta (weak, strong; > 0) of the penalty to the pretrained model",
              low=0.0, high=100.0),
        Param("rl_steps", "int", {"smoke": 60, "book": 120, "full": 200}, "RL steps per run", low=2),
        Param("n_rl", "int", {"smoke": 720, "book": 720, "full": 3200},
              "RL problems (held out from pretraining); one pass = n_rl / batch_problems steps",
              low=2),
        Param("batch_problems", "int", {"smoke": 12, "book": 12, "full": 32},
              "problems per RL step", low=1),
        Param("group_size", "int", {"smoke": 8, "book": 8, "full": 16},
              "samples per problem (the GRPO group)", low=2, high=256),
        Param("rl_lr", "float", 1e-3, "Adam learning rate of the RL updates", low=1e-6, high=1.0),
        Param("n_eval", "int", {"smoke": 96, "book": 128, "full": 256},
              "held-out evaluation problems (before and after RL)", low=1),
        Param("eval_samples", "int", {"smoke": 16, "book": 32, "full": 64},
              "samples per evaluation problem (pass@k and maj@k up to this k)", low=2, high=1024),
        Param("share_threshold", "float", 0.8,
              "the share one format must exceed within the first pass for 'one format wins'",
              low=0.34, high=0.99),
        Param("device", "str", {"smoke": "cpu", "book": "cpu", "full": "auto"},
              "torch device: cpu, or auto (CUDA when present)", choices=("cpu", "auto", "cuda")),
    ),
    checks=(_check,),
)
