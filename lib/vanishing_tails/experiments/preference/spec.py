"""Chapter 5, "What the reward pays for": parameters and presets."""

from ...book.params import ChapterSpec, Param, common_params

JUDGES = ("correct", "distinct")
ARCHS = ("gru", "transformer")  # core.lm.ARCHS; a test keeps the two equal (no torch here)


def _judges_differ(P: dict) -> None:
    if P["code_judge"] == P["creative_judge"]:
        raise ValueError(
            f"parameter 'creative_judge' must differ from 'code_judge' (both are "
            f"{P['code_judge']!r}): the swapped-judges panel needs one judge per domain; "
            f"allowed: one of {JUDGES} each, different"
        )


SPEC = ChapterSpec(
    stem="05_what_the_reward_pays_for",
    short="preference",
    title="What the reward pays for",
    description="DPO on one small reference model: a convergent judge narrows a toy code "
    "domain, a distinctiveness judge widens a toy creative domain, and swapping the judges "
    "swaps the directions; exact KL-regularised optima on the enumerable output spaces.",
    params=(
        *common_params({"smoke": 2, "book": 4, "full": 8}),
        Param("beta", "float", 1.0,
              "DPO's KL weight β for every arm (rewards are standardised under the reference, "
              "so β is in reward standard deviations per nat); must be > 0", low=0.001, high=1000.0),
        Param("sweep_betas", "float_list",
              {"smoke": [1.0], "book": [0.25, 0.5, 2.0, 4.0], "full": [0.1, 0.25, 0.5, 2.0, 4.0, 10.0]},
              "further β values at which the two natural arms are also trained, to set them "
              "against the theory curve (values equal to beta add nothing); each > 0",
              low=0.001, high=1000.0),
        Param("code_judge", "str", "correct",
              "the judge the code domain is tuned against in the natural arms (the swapped arm "
              "uses the other one)", choices=JUDGES),
        Param("creative_judge", "str", "distinct",
              "the judge the creative domain is tuned against in the natural arms", choices=JUDGES),
        Param("n_prompts", "int", 6, "prompts per domain (an empty domain is refused)", low=1, high=6),
        Param("valid_share", "float", 0.5,
              "share of valid outputs in the pretraining corpus, per prompt", low=0.05, high=0.95),
        Param("corpus_size", "int", {"smoke": 20000, "book": 20000, "full": 100000},
              "(prompt, output) pairs in the reference model's pretraining corpus", low=100),
        Param("pretrain_steps", "int", {"smoke": 600, "book": 600, "full": 3000},
              "pretraining steps of the reference model (batch 128)", low=1),
        Param("n_pairs", "int", {"smoke": 1024, "book": 1024, "full": 4096},
              "preference pairs drawn from the reference per prompt (identical pairs dropped)", low=1),
        Param("dpo_steps", "int", {"smoke": 150, "book": 150, "full": 600},
              "DPO steps (batch 64 pairs)", low=1),
        Param("dpo_lr", "float", 3e-3, "DPO learning rate (AdamW)", low=1e-6, high=1.0),
        Param("n_samples", "int", {"smoke": 64, "book": 128, "full": 256},
              "samples per prompt for the sample-based metrics", low=2, high=4096),
        Param("arch", "str", {"smoke": "gru", "book": "gru", "full": "transformer"},
              "architecture of the reference model (lm.build_model)", choices=ARCHS),
        Param("device", "str", {"smoke": "cpu", "book": "cpu", "full": "auto"},
              "torch device; auto picks CUDA when present", choices=("cpu", "cuda", "auto")),
    ),
    checks=(_judges_differ,),
)
