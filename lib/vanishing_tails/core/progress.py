"""Progress bars for long work: one helper (tqdm) for the runner and the library's loops.

A bar shows where the work is (a chapter, a cell, a generation), how far it got and the
time elapsed. It shows where someone is watching and stays out of logs:

* ``$VANISHING_TAILS_PROGRESS`` = ``1`` forces bars on, ``0`` forces them off;
* otherwise bars show on a terminal (standard error is a tty) and in an interactive
  Jupyter kernel, and never in CI logs or a redirected file;
* a chapter, or any caller, switches them off with ``progress.set_enabled(False)`` (or
  ``with progress.disabled(): ...``); the runner switches them off inside the kernels it
  starts, whose output lands in the executed notebook, and shows its own per-cell bar.

Library loops use :func:`bar`::

    for step in progress.bar(range(steps), desc="pretraining"):
        ...

Explained in :ref:`sec-running-the-book`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any

PROGRESS_ENV = "VANISHING_TAILS_PROGRESS"
_override: bool | None = None  # set_enabled(): wins over the environment and the terminal test


def _interactive_kernel() -> bool:
    """Inside a Jupyter kernel that a person drives (not one the runner started: it sets
    ``$VANISHING_TAILS_PROGRESS=0``)."""
    return "ipykernel" in sys.modules and type(sys.stderr).__module__.startswith("ipykernel")


def enabled(stream=None) -> bool:
    """Whether progress bars show now (see the module docstring for the rule).
    Explained in :ref:`sec-running-the-book`.
    """
    if _override is not None:
        return _override
    env = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    if env in ("1", "true", "yes", "on"):
        return True
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) or _interactive_kernel()


def set_enabled(flag: bool | None) -> None:
    """Switch bars on (``True``) or off (``False``) in this process; ``None`` restores the
    rule of :func:`enabled`. Explained in :ref:`sec-running-the-book`.
    """
    global _override
    _override = None if flag is None else bool(flag)


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """No bars inside the ``with`` block (the previous setting comes back after it).
    Explained in :ref:`sec-running-the-book`.
    """
    global _override
    saved = _override
    _override = False
    try:
        yield
    finally:
        _override = saved


def bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str | None = None,
        unit: str = "it", leave: bool = False, **kwargs: Any):  # fmt: skip
    """A tqdm bar (``tqdm.auto``: a widget in Jupyter, text on a terminal) that is
    disabled unless :func:`enabled`. Use it like ``tqdm``: wrap an iterable, or call
    ``.update()`` on it inside a ``with`` block. Explained in :ref:`sec-running-the-book`.
    """
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", not enabled())
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, **kwargs)
