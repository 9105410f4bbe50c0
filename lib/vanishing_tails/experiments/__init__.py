"""One package per chapter: ``spec.py`` (plain data: parameters, presets, claims, null
configuration) and the chapter's own engine modules.

An experiment imports :mod:`vanishing_tails.core` and :mod:`vanishing_tails.book`,
never another experiment; ``spec.py`` imports neither torch nor the engines, so that the
runner can list and validate without them. The packages' ``__init__`` files import nothing.
"""
