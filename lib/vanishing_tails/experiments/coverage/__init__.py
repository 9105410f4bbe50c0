"""Chapter 9, "Coverage by construction": its spec (:mod:`.spec`), the taxonomy and its leaf
tasks (:mod:`.taxonomy`), the collapsed generator and its teacher (:mod:`.generator`), the
samplers and the coverage oracle (:mod:`.samplers`), the taxonomy recovered from the generator
itself (:mod:`.seedless`) and the downstream student (:mod:`.student`)."""
