"""Chapter 7, "Quality hides diversity": its spec (:mod:`vanishing_tails.experiments.quality.spec`),
the synthetic task with three knobs (:mod:`vanishing_tails.experiments.quality.task`), the batched
logistic model (:mod:`vanishing_tails.experiments.quality.model`), the knob grid
(:mod:`vanishing_tails.experiments.quality.grid`), the exact least-squares error
(:mod:`vanishing_tails.experiments.quality.linear`) and the self-improvement loop
(:mod:`vanishing_tails.experiments.quality.loop`)."""
