"""Chapter 6, "Search breadth": its spec, the generated document world (:mod:`.world`), the
stacked transformer agents (:mod:`.agent`), SFT and GRPO training (:mod:`.training`) and
the entropy mechanism of Cui et al. 2025 (:mod:`.entropy`)."""
