"""Array files (``.npz`` / ``.npy``) from anywhere: never unpickled, failures in words.

Every reader of such files in the package calls ``np.load(path, allow_pickle=False)``; a file
holding pickled objects then fails instead of running code. NumPy's message for that case
advises loading it with ``allow_pickle=True``, which a file from a stranger must never be;
:func:`why_unreadable` says instead what the file is, for a one-line error.
"""

from __future__ import annotations

import pathlib
import zipfile

# What np.load (and reading an entry of its NpzFile) raises for a file that is not a whole
# array file: not an archive, a truncated one, pickled objects, a bad header.
READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile)


def why_unreadable(path: str | pathlib.Path, e: BaseException) -> str:
    """Why ``np.load(path, allow_pickle=False)`` (or reading one of its entries) raised
    ``e``: a short phrase for an error line."""
    path, text = pathlib.Path(path), str(e)
    if "allow_pickle" in text or "Object arrays" in text or "pickle" in text.lower():
        return (
            "it holds pickled Python objects, which are never loaded (unpickling can run "
            "code); such a file holds only numeric arrays"
        )
    if path.is_file() and path.stat().st_size == 0:
        return "the file is empty (0 bytes)"
    if isinstance(e, zipfile.BadZipFile | EOFError):
        return f"not a complete .npz archive: truncated or corrupt ({text or type(e).__name__})"
    return text or type(e).__name__
