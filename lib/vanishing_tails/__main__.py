"""``python -m vanishing_tails``: see :mod:`vanishing_tails.book.runner`."""

from .book.runner import main

raise SystemExit(main())
