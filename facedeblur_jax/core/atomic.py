"""Atomic file writes: a file appears complete under its name, or not at all.

:func:`atomic_write` lets a writer fill a temporary file beside the target, gives it the
permissions an ordinary new file would get (``0o666`` less the process's umask, so
``-rw-r--r--`` under the usual umask ``022``; ``tempfile.mkstemp`` alone leaves ``0600``) and
renames it over the target in one step. On any error the temporary file is removed and an
existing target is left as it was. Whether an existing target may be replaced is the
caller's decision (each caller says so in its own words); this module only writes.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from collections.abc import Callable

NEW_FILE_MODE = 0o666


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the only portable way to read it is to set it
    os.umask(mask)
    return mask


def atomic_write(
    path: str | os.PathLike, write: Callable[[str], None], *, durable: bool = False
) -> pathlib.Path:
    """Writes ``path`` atomically through ``write(temporary path)``.

    Args:
      path: the target; its folder is created when missing.
      write: fills the file it is given (opens it by name; the file exists and is empty).
      durable: ``fsync`` the data before the rename (for files that are costly to redo).
    Returns:
      ``path`` as a ``pathlib.Path``, with mode ``0o666 & ~umask``.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.stem}-", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, NEW_FILE_MODE & ~current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
