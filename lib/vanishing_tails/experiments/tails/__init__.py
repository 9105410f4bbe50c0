"""Chapter 1, "Tails vanish first": its spec (:mod:`vanishing_tails.experiments.tails.spec`) and
what the chapter records from the word chains (:mod:`vanishing_tails.experiments.tails.words`).
The engines are shared (:mod:`vanishing_tails.core.collapse`)."""
