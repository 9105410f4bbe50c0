"""The book's machinery: parameters and presets (:mod:`.params`), the chapter registry
(:mod:`.registry`), claims (:mod:`.claims`), notebook glue and setup (:mod:`.notebook`),
figures (:mod:`.plots`), the command line (:mod:`.runner`) and the Sphinx extension
(:mod:`.sphinx_ext`). Importing this package imports none of them.
"""
