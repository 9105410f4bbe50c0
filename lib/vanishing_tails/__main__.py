"""``python -m vanishing_tails``: see :mod:`vanishing_tails.runner`."""

from .runner import main

raise SystemExit(main())
