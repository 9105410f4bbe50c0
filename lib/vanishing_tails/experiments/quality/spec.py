"""Chapter 7, "Quality hides diversity": parameters, presets, claims (with their δ) and the null control."""

from ...book.params import ChapterSpec, ClaimSpec, Param, common_params

ACCURACY = (
    "stated minimal effect, declared with the claims: two points of accuracy (the smallest "
    "change in accuracy this chapter calls an effect)"
)
QUARTER = (
    "stated minimal effect, declared with the claims: a quarter of the real distribution's "
    "effective number of sub-populations (the book's smallest loss)"
)
GRID_AVERAGE = "averaged over every level of the other two knobs; one value per seed (t)"

CLAIMS = (
    ClaimSpec(
        "quality-id-over-ood",
        "At equal budget, raising quality from {q_lo:.2f} to {q_hi:.2f} raises ID accuracy by at least "
        "two points more than OOD accuracy",
        "per seed: [ID(q_hi) − ID(q_lo)] − [OOD(q_hi) − OOD(q_lo)], " + GRID_AVERAGE,
        "direction",
        0.02,
        ACCURACY,
        "seeds",
        source="notes",
        expected="fails",
    ),
    ClaimSpec(
        "quality-moves-ood",
        "Instead, raising quality from {q_lo:.2f} to {q_hi:.2f} raises OOD accuracy too, by at least two points",
        "per seed: OOD(q_hi) − OOD(q_lo), " + GRID_AVERAGE,
        "direction",
        0.02,
        ACCURACY,
        "seeds",
        source="finding",
    ),
    ClaimSpec(
        "diversity-ood-over-id",
        "At equal budget, raising coverage from {c_lo} to {c_hi} segments raises OOD accuracy by at least "
        "two points more than it changes ID accuracy",
        "per seed: [OOD(c_hi) − OOD(c_lo)] − [ID(c_hi) − ID(c_lo)], " + GRID_AVERAGE,
        "direction",
        0.02,
        ACCURACY,
        "seeds",
        source="notes",
    ),
    ClaimSpec(
        "complexity-helps-id",
        "At equal budget, raising the share of hard examples from {h_lo:.2f} to {h_hi:.2f} raises ID accuracy "
        "by at least two points",
        "per seed: ID(h_hi) − ID(h_lo), " + GRID_AVERAGE,
        "direction",
        0.02,
        ACCURACY,
        "seeds",
        source="notes",
    ),
    ClaimSpec(
        "complexity-helps-ood",
        "At equal budget, raising the share of hard examples from {h_lo:.2f} to {h_hi:.2f} raises OOD accuracy "
        "by at least two points",
        "per seed: OOD(h_hi) − OOD(h_lo), " + GRID_AVERAGE,
        "direction",
        0.02,
        ACCURACY,
        "seeds",
        source="notes",
    ),
    ClaimSpec(
        "complexity-has-a-limit",
        "Complexity helps only up to a point: the hardest mix ({h_hi:.2f}) loses at least two points of "
        "accuracy against the middle one ({h_mid:.2f})",
        "per seed: mean over ID and OOD of acc(h_mid) − acc(h_hi), " + GRID_AVERAGE,
        "direction",
        0.02,
        ACCURACY,
        "seeds",
        source="notes",
        expected="fails",
    ),
    ClaimSpec(
        "complexity-pays-where-labels-are-wrong",
        "Instead, hard examples pay most where labels are noisy: the gain from {h_lo:.2f} to {h_hi:.2f} hard "
        "examples is at least two points larger at quality {q_lo:.2f} than at {q_hi:.2f}",
        "per seed: mean over ID and OOD of [acc(h_hi) − acc(h_lo)] at q_lo minus the same at q_hi, "
        "averaged over coverages (t)",
        "direction",
        0.02,
        ACCURACY,
        "seeds",
        source="finding",
    ),
    ClaimSpec(
        "loop-quality-rises",
        "Self-training with a confidence filter: after {generations} generations the loop's reported quality "
        "(accuracy on held-out data like its own) is at least two points above generation 0's",
        "per seed: reported quality at the last generation minus at generation 0, self-trained arm (t)",
        "direction",
        0.02,
        ACCURACY,
        "seeds",
        source="notes",
    ),
    ClaimSpec(
        "loop-diversity-falls",
        "Meanwhile its training data loses at least a quarter of its effective number of sub-populations",
        "per seed: (D_0 − D_T) / D_real, D = effective number of segments of the training set, self-trained arm (t)",
        "direction",
        0.25,
        QUARTER,
        "seeds",
        source="notes",
    ),
    ClaimSpec(
        "loop-ood-falls",
        "Meanwhile its OOD accuracy falls by at least two points",
        "per seed: OOD accuracy at generation 0 minus at the last generation, self-trained arm (t)",
        "direction",
        0.02,
        ACCURACY,
        "seeds",
        source="notes",
    ),
    ClaimSpec(
        "loop-keeps-its-labels",
        "The loss is not error: the share of wrong labels in the self-trained loop's last training set "
        "stays within two points of zero",
        "per seed: error mass (wrong labels) of the last generation's training set, self-trained arm (t)",
        "equivalence",
        0.02,
        ACCURACY,
        "seeds",
        source="finding",
    ),
    ClaimSpec(
        "real-data-keeps-diversity",
        "Mixing {real_mix:.0%} fresh real data into every generation keeps at least a quarter more of the "
        "effective sub-populations than self-training",
        "per seed: D_T / D_real, real-mixed minus self-trained arm (paired t: same start)",
        "direction",
        0.25,
        QUARTER,
        "seeds",
        source="notes",
    ),
    ClaimSpec(
        "real-data-keeps-ood",
        "Mixing {real_mix:.0%} fresh real data into every generation keeps OOD accuracy at least two points "
        "above self-training",
        "per seed: OOD accuracy at the last generation, real-mixed minus self-trained arm (paired t)",
        "direction",
        0.02,
        ACCURACY,
        "seeds",
        source="notes",
    ),
    ClaimSpec(
        "ls-line-oracle",
        "The least-squares line's squared error at x₀ follows σ²(1/n + (x₀ − x̄)²/S_xx) at every coverage",
        "per noise draw: squared error / exact expectation, averaged over test points and coverages; theory 1",
        "oracle",
        0.0,
        "exact oracle (|z| < 4)",
        "noise draws",
        source="theory",
    ),
    ClaimSpec(
        "ls-subspace-oracle",
        "With data on an r-dimensional subspace the error is σ²(1/n + (x₀ − x̄)ᵀS⁺(x₀ − x̄)) plus the "
        "squared unseen part of the truth, in and off the span, at every r",
        "per replicate (design, truth, noise): squared error / exact conditional expectation, averaged over "
        "test points, ID and OOD and ranks; theory 1",
        "oracle",
        0.0,
        "exact oracle (|z| < 4)",
        "replicates",
        source="theory",
    ),
)


def _check(P: dict) -> None:
    """Cross-parameter rules, each refused with a ValueError that names the parameter."""
    K, core = P["n_segments"], P["n_core"]
    if core > K or (K - core) % 2:
        raise ValueError(f"parameter 'n_core' must be at most n_segments ({K}) and of its parity; got {core}")
    for name in ("qualities", "coverages", "hard_shares"):
        if list(P[name]) != sorted(P[name]):
            raise ValueError(f"parameter '{name}' must list its levels from low to high; got {P[name]}")
    bad = [c for c in P["coverages"] if c < core or c > K or (K - c) % 2]
    if bad:
        raise ValueError(
            f"parameter 'coverages' must lie in [n_core, n_segments] = [{core}, {K}] with the parity of "
            f"n_segments; got {P['coverages']}"
        )
    bad = [r for r in P["ls_ranks"] if r > P["ls_dim"] or P["ls_n"] <= r + 2]
    if bad:
        raise ValueError(f"parameter 'ls_ranks' must be at most ls_dim and below ls_n − 2; got {P['ls_ranks']}")


SPEC = ChapterSpec(
    stem="07_quality_hides_diversity",
    short="quality",
    book_seconds=23,
    title="Quality hides diversity",
    description="A synthetic task with three independent knobs — label quality, coverage of "
    "sub-populations, share of hard examples — at one data budget, the exact least-squares error "
    "as a function of coverage, and a self-improvement loop whose reported quality rises while "
    "its data loses sub-populations.",
    params=(
        *common_params({"smoke": 6, "book": 16, "full": 40}),
        Param("n_segments", "int", 10, "sub-populations: equal segments of the position u in [-1, 1]", low=2, high=100),
        Param("n_core", "int", 4, "central segments every training set covers (the ID test set)", low=1, high=100),
        Param(
            "budget",
            "int",
            {"smoke": 256, "book": 256, "full": 1024},
            "training examples per data set (equal budget)",
            low=16,
        ),
        Param(
            "qualities",
            "float_list",
            [0.7, 0.85, 1.0],
            "quality knob: share of correct labels (low to high)",
            low=0.5,
            high=1.0,
        ),
        Param(
            "coverages",
            "int_list",
            [4, 6, 8, 10],
            "diversity knob: central segments covered, evenly (low to high)",
            low=1,
        ),
        Param(
            "hard_shares",
            "float_list",
            [0.0, 0.25, 0.5, 0.75, 1.0],
            "complexity knob: share of hard examples (low to high)",
            low=0.0,
            high=1.0,
        ),
        Param("hard_band", "float", 0.15, "an example is hard when |v − g(u)| < hard_band", low=0.01, high=2.0),
        Param("amplitude", "float", 0.8, "amplitude of the true boundary g(u)", low=0.0, high=3.0),
        Param("period", "float", 1.0, "period of the true boundary g(u) in u", low=0.1, high=100.0),
        Param("ridge", "float", 1.0, "ridge penalty of the logistic model (> 0)", low=1e-6, high=1e6),
        Param("newton_steps", "int", 15, "Newton steps per fit", low=1, high=200),
        Param("n_test", "int", {"smoke": 1000, "book": 2000, "full": 5000}, "examples per ID / OOD test set", low=10),
        Param(
            "generations",
            "int",
            {"smoke": 6, "book": 10, "full": 20},
            "generations of the self-improvement loop",
            low=1,
            high=1000,
        ),
        Param(
            "keep",
            "float",
            0.5,
            "the loop's confidence filter keeps this most-confident share of candidates",
            low=0.01,
            high=1.0,
        ),
        Param(
            "jitter",
            "float",
            0.05,
            "the loop's input generator: jitter added to resampled training inputs",
            low=0.0,
            high=1.0,
        ),
        Param(
            "real_sd",
            "float",
            0.4,
            "the real distribution: u ~ N(0, real_sd²) truncated to [-1, 1]",
            low=0.05,
            high=10.0,
        ),
        Param(
            "real_fraction",
            "float",
            0.0,
            "fresh real data in every generation of every loop arm (0 = pure self-training; 1 = the null control)",
            low=0.0,
            high=1.0,
        ),
        Param(
            "real_mix", "float", 0.5, "fresh real data per generation in the loop's real-mixed arm", low=0.0, high=1.0
        ),
        Param(
            "q",
            "float",
            0.1,
            "tail quantile of the common tail measures: the real distribution's rarest q",
            low=0.001,
            high=0.5,
        ),
        Param("n_distinct", "int", 100, "n of the support measure (expected distinct outcomes in n draws)", low=1),
        Param("ls_n", "int", 20, "least-squares theory: points per fit", low=4),
        Param("ls_noise", "float", 0.5, "least-squares theory: noise standard deviation σ", low=1e-3, high=100.0),
        Param(
            "ls_widths",
            "float_list",
            [0.1, 0.25, 0.5, 1.0],
            "least-squares line: coverage half-widths of the design",
            low=1e-3,
            high=1.0,
        ),
        Param("ls_dim", "int", 8, "least-squares subspace: input dimension d", low=1, high=100),
        Param("ls_ranks", "int_list", [1, 2, 4, 6, 8], "least-squares subspace: dimensions r the data covers", low=1),
        Param(
            "ls_replicates",
            "int",
            {"smoke": 400, "book": 2000, "full": 10000},
            "least-squares theory: replicates per setting",
            low=2,
        ),
    ),
    checks=(_check,),
    claims=CLAIMS,
    null={"qualities": [0.85, 0.85], "coverages": [6, 6], "hard_shares": [0.5, 0.5], "real_fraction": 1.0},
    null_description="no knob moves and no loop inherits: each knob's two levels are equal (two independent "
    "replicates of one cell, so every contrast is noise), and every loop arm is refit on fresh real data "
    "every generation",
)
