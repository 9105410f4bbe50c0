"""Chapter 9, "Coverage by construction": parameters, presets, claims (with their δ) and the null.

Plain data (no numpy, no engine). Every claim's per-replicate value is one number per seed:
each seed is an independent world — a taxonomy with its leaf rules, a real popularity, a
generator collapsed from it, a teacher — and every sampler of a seed draws from that world,
so sampler differences are paired within a seed.

The smallest effects of interest were declared with the claims, before any run of them, by
one rule per kind of quantity:

* a share or a probability (of leaves covered, of correct answers, an accuracy, a mean
  complexity in [0, 1], local diversity relative to real queries): 0.05, five percentage
  points — the book's rule for probabilities (chapter 3);
* a claim that says "far more" or "the whole tree": 0.1, a tenth of the leaves.
"""

from ...book.params import ChapterSpec, ClaimSpec, Param, common_params

_SHARE = "stated minimal effect: 5 percentage points of a share (the book's rule for probabilities)"
_TENTH = "stated minimal effect: a tenth of the taxonomy's leaves"
_SEEDS = "seeds (independent worlds)"


def _check_teacher(P: dict) -> None:
    if len(P["teacher_error"]) != P["branching"][0]:
        raise ValueError(
            f"parameter 'teacher_error' needs one value per top-level branch ({P['branching'][0]}); "
            f"got {len(P['teacher_error'])}"
        )


SPEC = ChapterSpec(
    stem="09_coverage_by_construction",
    short="coverage",
    book_seconds=31,
    title="Coverage by construction",
    description="A generator that lost its tails covers a taxonomy poorly; walking the taxonomy buys "
    "coverage by construction, local refinements buy diversity and complexity, and a taxonomy built "
    "by the generator itself inherits its blind spots.",
    params=(
        *common_params({"smoke": 4, "book": 24, "full": 64}),
        Param(
            "branching",
            "int_list",
            {"smoke": [4, 4, 4], "book": [4, 5, 5], "full": [5, 6, 6]},
            "children per node on each level of the taxonomy (leaves = their product)",
            low=1,
            high=64,
        ),
        Param(
            "budget",
            "int",
            {"smoke": 1024, "book": 1600, "full": 2880},
            "items N every sampler produces (16 per leaf at every scale)",
            low=1,
            high=100000,
        ),
        Param("dim", "int", 3, "dimension d of a query; a leaf's task is sign(w . u)", low=2, high=64),
        Param(
            "leaf_specific",
            "float",
            0.5,
            "share of a leaf rule's variance that is its own (the rest is shared with its ancestors)",
            low=0.0,
            high=1.0,
        ),
        Param(
            "local_spread",
            "float",
            0.3,
            "spread of the generator's queries inside a leaf, relative to real queries (1 = no local collapse)",
            low=0.01,
            high=1.0,
        ),
        Param("zipf_a", "float", 1.0, "Zipf exponent of the real popularity over leaves (0 = uniform)", low=0.0),
        Param("refit_m", "int", 2000, "draws per refit generation of the generator's popularity", low=1),
        Param(
            "refit_generations",
            "int",
            5,
            "refit generations the generator went through (0 = the real popularity itself)",
            low=0,
            high=1000,
        ),
        Param("gen_temperature", "float", 0.9, "sampling temperature of every refit generation", low=0.05, high=1.0),
        Param(
            "teacher_error",
            "float_list",
            [0.0, 0.0, 0.15, 0.25],
            "the teacher's own error rate on real queries, per top-level branch (its rule is rotated by pi e)",
            low=0.0,
            high=0.5,
        ),
        Param("slip_rate", "float", 0.1, "probability that the teacher flips an answer at random", low=0.0, high=0.49),
        Param("candidates", "int", 4, "local diversity: candidate queries per slot, the most distinct kept", low=1),
        Param(
            "complexify",
            "float",
            1.0,
            "share of the slots whose query is hardened by complexification",
            low=0.0,
            high=1.0,
        ),
        Param(
            "hardening",
            "float",
            0.1,
            "margin scale of a hardened query (its margin becomes hardening x N(0, 1))",
            low=0.001,
            high=1.0,
        ),  # fmt: skip
        Param("critic_rounds", "int", 2, "rounds of critic rejection and regeneration (0 = no critic)", low=0),
        Param("proposals", "int", 16, "sub-topic proposals per node when the generator builds its own taxonomy", low=1),
        Param("l2", "float", 1e-4, "L2 penalty of the student's node weights", low=1e-12, high=10.0),
        Param("train_steps", "int", 150, "L-BFGS iterations of the student", low=1, high=100000),
        Param(
            "tail_share",
            "float",
            0.25,
            "tail (head): the generator's least (most) probable share of leaves",
            low=0.01,
            high=0.5,
        ),  # fmt: skip
        Param(
            "q", "float", 0.1, "tail quantile of the real popularity for the common tail measures", low=0.001, high=0.5
        ),
    ),
    checks=(_check_teacher,),
    claims=(
        ClaimSpec(
            "taxonomy-covers-more",
            "At equal budget N = {budget}, walking the taxonomy covers far more leaves than sampling the generator",
            "per seed: share of leaves covered, taxonomy walk minus naive sampling",
            "direction",
            0.1,
            _TENTH,
            _SEEDS,
        ),
        ClaimSpec(
            "coverage-oracle",
            "Naive sampling covers the expected share of leaves sum_l [1 − (1 − p_l)^N] / L, for every N up to {n_max}",
            "per seed: simulated minus expected share of leaves covered, averaged over the grid of N; theory 0",
            "oracle",
            0.0,
            "exact oracle (|z| < 4)",
            _SEEDS,
            source="theory",
        ),
        ClaimSpec(
            "knobs-move-own-property",
            "Each knob moves its own property: the taxonomy raises coverage, candidates raise local diversity, "
            "complexification raises complexity, the critic raises quality (one knob at a time)",
            "per seed: the smallest of the four diagonal effects of the knob x property matrix",
            "direction",
            0.05,
            _SHARE,
            _SEEDS,
        ),
        ClaimSpec(
            "knobs-independent",
            "The knobs move nothing else: every off-diagonal effect of the knob x property matrix is within ±δ "
            "(coverage, diversity, complexity and quality 'controllable simultaneously')",
            "per seed: the largest absolute off-diagonal effect of the matrix",
            "equivalence",
            0.05,
            _SHARE,
            _SEEDS,
            expected="fails",
        ),
        ClaimSpec(
            "complexify-costs-quality",
            "Instead, complexification costs quality: hardened queries are where the teacher's blind spots "
            "decide the answer",
            "per seed: share of correct answers, taxonomy minus taxonomy + complexify",
            "direction",
            0.05,
            _SHARE,
            _SEEDS,
            source="finding",
        ),
        ClaimSpec(
            "tail-accuracy-rises",
            "Downstream, coverage pays on the tail: a student trained on the taxonomy walk is more accurate on the "
            "leaves the generator rarely reaches than one trained on naive samples",
            "per seed: the student's mean accuracy over the generator's least probable tail_share of the leaves, "
            "taxonomy minus naive",
            "direction",
            0.05,
            _SHARE,
            _SEEDS,
        ),
        ClaimSpec(
            "complexify-helps-reliable",
            "Complexification helps the student in the branches where the teacher is reliable (teacher error 0)",
            "per seed: mean accuracy over the leaves of branches with teacher error 0, taxonomy + local + "
            "complexify minus taxonomy + local",
            "direction",
            0.05,
            _SHARE,
            _SEEDS,
            source="paper",
        ),
        ClaimSpec(
            "complexify-hurts-weak",
            "Complexification hurts the student in the branches where the teacher is weak (teacher error > 0)",
            "per seed: mean accuracy over the leaves of branches with teacher error > 0, taxonomy + local minus "
            "taxonomy + local + complexify",
            "direction",
            0.05,
            _SHARE,
            _SEEDS,
            source="paper",
        ),
        ClaimSpec(
            "seedless-recovers-tree",
            "Without seed data, the taxonomy the generator proposes itself ({proposals} proposals per node) "
            "recovers the true tree: it misses less than a tenth of the leaves",
            "per seed: share of the true leaves missing from the recovered taxonomy",
            "equivalence",
            0.1,
            _TENTH,
            _SEEDS,
            expected="fails",
        ),
        ClaimSpec(
            "recovery-oracle",
            "The recovered share of leaves is the exact product formula mean_l prod_i [1 − (1 − q_i)^k] of the "
            "generator's own conditional popularity",
            "per seed: recovered share of leaves minus its expectation under that seed's generator; theory 0",
            "oracle",
            0.0,
            "exact oracle (|z| < 4)",
            _SEEDS,
            source="theory",
        ),
        ClaimSpec(
            "seedless-misses-alive",
            "Instead, the seedless taxonomy inherits the generator's blind spots: it misses at least a tenth of "
            "the leaves the generator can still produce, besides every leaf it lost",
            "per seed: share of leaves with generator probability > 0 minus the recovered share",
            "direction",
            0.1,
            _TENTH,
            _SEEDS,
            source="finding",
        ),
    ),
    null={"zipf_a": 0.0, "refit_generations": 0, "candidates": 1, "complexify": 0.0, "critic_rounds": 0},
    null_description="a generator with no tail to lose (uniform popularity, never refit) and every refinement "
    "switched off (one candidate, no complexification, no critic): each sampler reduces to uniform draws over "
    "the leaves, so no knob has anything to buy",
)
