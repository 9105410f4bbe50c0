"""Chapter 5, "What the reward pays for": its spec, the toy domains (:mod:`.domains`) and
preference tuning with exact optima (:mod:`.tuning`)."""
