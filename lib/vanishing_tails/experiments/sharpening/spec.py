"""Chapter 3, "Sharpening spreads": parameters and presets."""

from ...book.params import ChapterSpec, Param, common_params


def _check_ks(P: dict) -> None:
    if max(P["ks"]) > P["n_eval_samples"]:
        raise ValueError(
            f"parameter 'ks' must not exceed 'n_eval_samples' = {P['n_eval_samples']} "
            f"(pass@k needs at least k samples drawn); got max(ks) = {max(P['ks'])}"
        )


def _check_eval_every(P: dict) -> None:
    if P["eval_every"] > P["steps"]:
        raise ValueError(
            f"parameter 'eval_every' must be <= 'steps' = {P['steps']}; got {P['eval_every']}"
        )


SPEC = ChapterSpec(
    stem="03_sharpening_spreads",
    short="sharpening",
    title="Sharpening spreads",
    description="Outcome-reward RL (GRPO) on problems with K candidate answers: sharpening "
    "solved problems drains diversity on unsolved and held-out ones through the shared "
    "parameters; historical (UCB) and batch exploration pay for the tail in different ways.",
    params=(
        *common_params({"smoke": 8, "book": 24, "full": 64}),
        Param("n_solved", "int", {"smoke": 128, "book": 128, "full": 512},
              "training problems whose correct answer is the base policy's mode", low=1),
        Param("n_unsolved", "int", {"smoke": 128, "book": 128, "full": 512},
              "training problems whose correct answer sits in the base policy's tail", low=1),
        Param("n_held_out", "int", {"smoke": 128, "book": 256, "full": 1024},
              "held-out problems (half of each kind), never trained on", low=2),
        Param("n_answers", "int", {"smoke": 32, "book": 32, "full": 64},
              "candidate final answers K per problem", low=2, high=4096),
        Param("n_features", "int", 16, "problem feature dimension d", low=1, high=1024),
        Param("n_hidden", "int", 16, "width h of the shared feature map and answer embeddings",
              low=1, high=1024),
        Param("base_scale", "float", 2.0, "base inverse temperature: how peaked the base policy is",
              low=0.1, high=10.0),
        Param("p_unsolved", "float", 1e-3,
              "base probability of the correct answer on an unsolved problem", low=1e-6, high=0.1),
        Param("group_size", "int", 8, "GRPO group: answers sampled per problem per step", low=2,
              high=1024),
        Param("steps", "int", {"smoke": 300, "book": 400, "full": 1000}, "policy updates", low=1,
              high=100000),
        Param("lr", "float", 0.05, "Adam learning rate", low=1e-6, high=1.0),
        Param("normalize", "bool", True,
              "divide advantages by the group's reward std (GRPO); false = mean baseline only"),
        Param("ucb_c", "float", 1.0, "historical exploration: bonus c min(1, 1/sqrt(N(x,a)))",
              low=0.0, high=100.0),
        Param("batch_c", "float", 1.0,
              "batch exploration: penalty (c/n) x (other samples in the group with the same answer)",
              low=0.0, high=100.0),
        Param("entropy_beta", "float", 0.1, "entropy bonus coefficient of the entropy arm",
              low=0.0, high=100.0),
        Param("eval_every", "int", {"smoke": 10, "book": 10, "full": 20},
              "record the metrics every this many steps", low=1),
        Param("n_distinct", "int", 16, "n for 'expected distinct answers in n samples'", low=1,
              high=100000),
        Param("ks", "int_list", [1, 2, 4, 8, 16, 32, 64, 128, 256], "k values of the pass@k curves",
              low=1),
        Param("n_eval_samples", "int", {"smoke": 512, "book": 1024, "full": 4096},
              "answers drawn per problem for the unbiased pass@k estimator", low=1, high=1000000),
        Param("device", "str", {"smoke": "cpu", "book": "cpu", "full": "auto"},
              "torch device for training", choices=("cpu", "cuda", "auto")),
    ),
    checks=(_check_ks, _check_eval_every),
)
