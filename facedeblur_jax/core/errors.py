"""How a command fails: one line, ``facedeblur NAME: error: ...``, and an exit status that
says whose move it is (``facedeblur_jax/cli.py`` maps the exceptions):

* **2, bad input**: something the user can fix and run again — an argument, a missing or
  unreadable file, a config key, a checkpoint of another model, an output that exists or a
  folder that cannot be written. Raised as ``ValueError`` (every such error of the package
  is one, or a subclass), ``FileNotFoundError``, ``FileExistsError``, ``NotADirectoryError``,
  ``IsADirectoryError``, ``ImportError`` (an optional dependency) — checked, where it can
  be, before any work is done.
* **1, a failure during the work**: the command started but could not finish what was
  asked — :class:`WorkFailed` (e.g. ``deblur`` wrote nothing because no input had a face)
  or any other ``OSError`` (a disk that fills, a file that cannot be written half-way).

:func:`one_line` turns either into the text after ``error:``.
"""

from __future__ import annotations


class WorkFailed(RuntimeError):
    """A command ran but could not do what was asked (exit status 1)."""


def one_line(e: BaseException) -> str:
    """The message of ``e`` on one line. An ``OSError`` raised by the system (``errno``
    set) reads ``FILE: reason`` instead of Python's ``[Errno N] reason: 'FILE'``."""
    if isinstance(e, OSError) and e.errno is not None and e.strerror:
        text = e.strerror
        if e.filename is not None:
            text = f"{e.filename}: {text}"
        if getattr(e, "filename2", None) is not None:
            text += f" (-> {e.filename2})"
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())
