"""Chapter 1, "Tails vanish first": parameters and presets."""

from ...book.params import ChapterSpec, Param, common_params

SPEC = ChapterSpec(
    stem="01_tails_vanish_first",
    short="tails",
    title="Tails vanish first",
    description="Recursive refitting of a Gaussian and of real English word counts loses "
    "the tails first; accumulating data or mixing in real data stops it.",
    params=(
        *common_params({"smoke": 400, "book": 2000, "full": 20000}),
        Param("n_values", "int_list", [10, 100], "samples per generation for the Gaussian chains",
              low=2),
        Param("generations", "int", {"smoke": 60, "book": 150, "full": 500},
              "generations of refitting (Gaussian)", low=1, high=100000),
        Param("top_n", "int", {"smoke": 5000, "book": 20000, "full": 50000},
              "vocabulary: the top_n most frequent English words (wordfreq)", low=10, high=200000),
        Param("m", "int", {"smoke": 20000, "book": 100000, "full": 1000000},
              "words sampled per generation (the corpus size the model is refit on)", low=2),
        Param("word_generations", "int", {"smoke": 30, "book": 60, "full": 200},
              "generations of refitting (words)", low=1, high=100000),
        Param("word_chains", "int", {"smoke": 16, "book": 48, "full": 200},
              "independent word-count chains", low=1),
        Param("q", "float", 0.1, "tail quantile: the least-probable q of the real mass", low=0.001,
              high=0.5),
        Param("temperature", "float", 0.9,
              "sampling temperature of the sharpened arm (1 = plain refitting)", low=0.05, high=1.0),
        Param("real_fractions", "float_list", [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5],
              "fractions of fresh real data per generation for the 'mix' sweep", low=0.0, high=1.0),
    ),
)
