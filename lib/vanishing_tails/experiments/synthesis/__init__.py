"""Chapter 10, "One phenomenon?": every experiment of the book read through its common
``trajectory`` interface at the sizes of :mod:`.spec` (:mod:`.collect`), and the analyses of
the closing chapter — the rank correlation of support and q-tail mass across experiments,
the mechanism claims, the interventions and the value of real data (:mod:`.analysis`)."""
