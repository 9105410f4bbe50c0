"""Chapter 1, "Tails vanish first": its spec. The engine is shared (:mod:`vanishing_tails.core.collapse`)."""
