"""Where a command will write, checked before it does any work.

A bad ``--out`` (an existing file where a folder is wanted, a folder where a file is wanted,
a place the user cannot write to, an output that exists) fails at once with one line that
names it and says what to do, and leaves nothing behind: :func:`check_output_file` creates
nothing; :func:`prepare_output_folder` creates the folder and returns what it created, and
:func:`remove_created` takes that away again when the run wrote nothing. Whether a place is
writable is tried (a temporary file created and removed at once), not inferred from mode
bits, so it holds for root, ACLs and read-only file systems alike.
"""

from __future__ import annotations

import os
import pathlib
import tempfile


def _nearest_existing(path: pathlib.Path) -> pathlib.Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe(folder: pathlib.Path, what: str, flag: str) -> None:
    """``ValueError`` unless a file can be created (and is removed again) in ``folder``."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".facedeblur-write-test-")
    except OSError as e:
        reason = e.strerror or str(e)
        raise ValueError(
            f"cannot write {what}: {folder} is not writable ({reason}); choose another {flag}"
        ) from e
    os.close(fd)
    os.remove(tmp)


def check_output_file(
    path: str | os.PathLike, *, overwrite: bool, flag: str = "--out"
) -> pathlib.Path:
    """Checks that the file ``path`` can be written (nothing is created): not a folder, not
    an existing file unless ``overwrite``, under a folder (existing or to be created) that
    is writable. Returns the absolute path.

    Raises:
      ValueError: a folder, or a place that cannot be written (named, with ``flag``).
      FileExistsError: it exists and not ``overwrite``.
      NotADirectoryError: a part of the path above it is a file.
    """
    path = pathlib.Path(path).expanduser().absolute()
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; name the file to write")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise NotADirectoryError(f"{flag} {path}: {base} is a file, not a folder")
    _probe(base, str(path), flag)
    return path


def check_output_folder(path: str | os.PathLike, *, flag: str = "--out") -> pathlib.Path:
    """Checks that the folder ``path`` exists and is writable, or can be created (nothing
    is created). Returns the absolute path.

    Raises:
      ValueError: ``path`` or a part of it is a file, or the place cannot be written.
    """
    folder = pathlib.Path(path).expanduser().absolute()
    base = _nearest_existing(folder)
    if not base.is_dir():
        what = "is a file, not a folder" if base == folder else f"is under a file, {base}"
        raise ValueError(f"{flag} {folder} {what}: name a folder (it is created if missing)")
    _probe(base, f"into {folder}", flag)
    return folder


def prepare_output_folder(
    path: str | os.PathLike, *, flag: str = "--out"
) -> tuple[pathlib.Path, list[pathlib.Path]]:
    """Creates the folder ``path`` (and missing parents) and checks that files can be
    written in it.

    Returns:
      ``(the folder, the folders this call created, outermost first)``; hand the list to
      :func:`remove_created` when the run ends without writing anything.
    Raises:
      ValueError: ``path`` (or a part of it) is a file, or the folder cannot be created or
        written to — one line naming it and ``flag``; anything this call created is
        removed again.
    """
    folder = pathlib.Path(path).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise ValueError(
            f"{flag} {folder} is a file, not a folder: name a folder (it is created if missing)"
        )
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise ValueError(f"{flag} {folder}: {base} is a file, not a folder")
    created = []
    probe = folder
    while probe != base:
        created.append(probe)
        probe = probe.parent
    created.reverse()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        remove_created(created)
        reason = e.strerror or str(e)
        raise ValueError(
            f"cannot create the output folder {folder}: {base} is not writable ({reason}); "
            f"choose another {flag}"
        ) from e
    try:
        _probe(folder, f"into {folder}", flag)
    except ValueError:
        remove_created(created)
        raise
    return folder, created


def remove_created(created: list[pathlib.Path]) -> None:
    """Removes the folders :func:`prepare_output_folder` created, innermost first, as long
    as they are empty (a folder that got a file stays, with everything above it)."""
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:
            break
