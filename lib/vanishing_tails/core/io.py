"""Files: where the book lives, and writes that never leave a half-written file behind.

Used by the runner (executed notebooks, figures, ``results.json``) and by chapter 4's
checkpoint cache; see :ref:`sec-running-the-book`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

ROOT_ENV = "VANISHING_TAILS_ROOT"


def repo_root() -> Path:
    """The book's root: ``$VANISHING_TAILS_ROOT``, else the checkout this package lives in.

    Raises ``FileNotFoundError`` when that folder has no ``chapters/``.
    Explained in :ref:`sec-running-the-book`.
    """
    env = os.environ.get(ROOT_ENV)
    root = Path(env) if env else Path(__file__).resolve().parents[3]
    if not (root / "chapters").is_dir():
        raise FileNotFoundError(f"cannot find the chapters/ folder under {root}; set {ROOT_ENV}")
    return root


def atomic_write(path: str | Path, data: bytes | str | Callable[[BinaryIO], None]) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    ``data`` is bytes, text, or a callable that writes to a binary file object (e.g.
    ``lambda f: torch.save(obj, f)``). A reader sees either the old file or the whole new
    one, never a partial write; an exception (or Ctrl-C) removes the temporary file.
    Explained in :ref:`sec-running-the-book`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
