"""Chapter 8, "Paying for the tails": DARLING's partition diversity reward on the book's
enumerable domains — the reward written out (:mod:`.partition`), its fixed point
(:mod:`.theory`) and GRPO training of tabular policies under five rewards (:mod:`.training`)."""
