"""Model families retrained on their own output, one module each (chapter 2, "Every model
family forgets its tails").

Every family drives the same loop, :func:`vanishing_tails.core.collapse.recursive_fit`, with
its own ``fit`` / ``sample`` / ``measure`` callbacks and the book's regime vocabulary
(``replace``, ``accumulate``, ``accumulate-subsample``, ``mix`` with ``real_fraction``):

* :mod:`.mixture` — 2-D Gaussian mixtures refit by EM, every chain at once;
* :mod:`.vae` — a small torch VAE on scikit-learn's real handwritten digits;
* :mod:`.charlm` — character-level GRUs (the model of :mod:`vanishing_tails.core.lm`) on
  Shakespeare, every chain at once;
* :mod:`.tale_of_tails` — Dohmatob et al.'s Hutter memoriser on Zipf data, with its
  exact expected test error;
* :mod:`.fitting` — the memoised ``fit`` the families share.

Explained in :ref:`chapter-model-families`.
"""
