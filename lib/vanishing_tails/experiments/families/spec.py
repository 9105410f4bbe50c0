"""Chapter 2, "Every model family forgets its tails": parameters and presets."""

from ...book.params import ChapterSpec, Param, common_params

FAMILIES = ("mixture", "vae", "charlm", "tale_of_tails")


def check_family(family: str) -> str:
    """Refuse an unknown family with a ValueError naming the parameter."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}")
    return family


def _check(P: dict) -> None:
    if P["tale_k"] >= P["tale_items"]:
        raise ValueError(f"parameter 'tale_k' must be smaller than tale_items ({P['tale_items']}); "
                         f"got {P['tale_k']}")
    if P["tale_T_max"] <= P["tale_k"]:
        raise ValueError(f"parameter 'tale_T_max' must exceed tale_k ({P['tale_k']}); got {P['tale_T_max']}")
    if P["lm_n"] < P["lm_batch"]:
        raise ValueError(f"parameter 'lm_n' must be at least lm_batch ({P['lm_batch']}) lines; got {P['lm_n']}")


SPEC = ChapterSpec(
    stem="02_model_families",
    short="families",
    title="Every model family forgets its tails",
    description="A Gaussian mixture, a VAE on real handwriting, a character language model on "
    "Shakespeare and the Hutter memoriser of 'A Tale of Tails', each retrained on its own output; "
    "replace, accumulate and fresh real data compared.",
    checks=(_check,),
    params=(
        *common_params({"smoke": 16, "book": 32, "full": 64}),
        Param("families", "str_list", list(FAMILIES),
              "model families to run (their experiments, figures and claims); "
              "'What real data is worth' compares the selected ones", choices=FAMILIES),
        # --- Gaussian mixture
        Param("gmm_n", "int", {"smoke": 250, "book": 250, "full": 1000},
              "points per generation for the Gaussian mixture", low=30, high=1_000_000),
        Param("gmm_generations", "int", {"smoke": 12, "book": 30, "full": 100},
              "generations of refitting (mixture)", low=1, high=10_000),
        Param("q", "float", 0.05, "low-density region: the real mixture's least-probable q of the mass",
              low=0.001, high=0.25),
        Param("real_fractions", "float_list", {"smoke": [0.1, 0.5], "book": [0.02, 0.05, 0.1, 0.2, 0.5],
                                               "full": [0.01, 0.02, 0.05, 0.1, 0.2, 0.5]},
              "fractions of fresh real data per generation (mixture sweep)", low=0.0, high=1.0),
        # --- VAE on digits
        Param("vae_chains", "int", {"smoke": 8, "book": 8, "full": 16},
              "independent VAE chains (trained together, batched)", low=1, high=256),
        Param("vae_n", "int", {"smoke": 400, "book": 800, "full": 1500},
              "images per generation (VAE)", low=50, high=100_000),
        Param("vae_generations", "int", {"smoke": 3, "book": 8, "full": 15},
              "generations of retraining (VAE)", low=1, high=1000),
        Param("vae_steps", "int", {"smoke": 200, "book": 500, "full": 2000},
              "Adam steps per VAE training", low=10, high=1_000_000),
        Param("vae_real_fraction", "float", 0.25, "fresh real images per generation in the VAE's mix arm",
              low=0.0, high=1.0),
        Param("class_decay", "float", 0.7,
              "real class shares fall as class_decay^rank (the rarest digits are the rare events)",
              low=0.3, high=1.0),
        # --- character language model
        Param("lm_seeds", "int", {"smoke": 2, "book": 2, "full": 4}, "independent LM chains per arm",
              low=1, high=64),
        Param("lm_n", "int", {"smoke": 400, "book": 2000, "full": 20000},
              "lines of text per generation (LM)", low=64, high=1_000_000),
        Param("lm_generations", "int", {"smoke": 2, "book": 4, "full": 8},
              "generations of retraining (LM)", low=1, high=100),
        Param("lm_steps", "int", {"smoke": 35, "book": 250, "full": 3000},
              "training steps per LM generation", low=10, high=10_000_000),
        Param("lm_batch", "int", {"smoke": 64, "book": 64, "full": 128}, "lines per LM training step",
              low=8, high=4096),
        Param("lm_hidden", "int", {"smoke": 64, "book": 64, "full": 256}, "GRU hidden size", low=8,
              high=4096),
        Param("temperature", "float", 0.7,
              "sampling temperature of the truncated arm (the other arm samples at 1)", low=0.05,
              high=1.0),
        Param("lm_real_fractions", "float_list", {"smoke": [0.5], "book": [0.25, 0.5, 1.0],
                                                  "full": [0.1, 0.25, 0.5, 1.0]},
              "fractions of fresh real lines per generation (LM mix arms)", low=0.0, high=1.0),
        Param("device", "str", {"smoke": "cpu", "book": "cpu", "full": "auto"},
              "torch device for the VAE and the LM", choices=("cpu", "cuda", "auto")),
        # --- A Tale of Tails
        Param("tale_items", "int", {"smoke": 20000, "book": 50000, "full": 200000},
              "number of Zipf items N", low=100, high=10_000_000),
        Param("zipf_beta", "float", 2.0, "Zipf exponent beta (p_i ~ i^-beta)", low=1.1, high=4.0),
        Param("tale_k", "int", 100, "rank beyond which the earlier generation cut the tail", low=1),
        Param("tale_T_max", "int", {"smoke": 100000, "book": 1000000, "full": 10000000},
              "largest training-set size T on the learning curve", low=10, high=100_000_000),
        Param("clean_fractions", "float_list", [0.05, 0.2],
              "fractions pi of clean data mixed into the tail-cut training data", low=0.0, high=1.0),
        Param("tale_generations", "int", {"smoke": 10, "book": 20, "full": 50},
              "generations of the recursive memoriser", low=1, high=10_000),
    ),
)
