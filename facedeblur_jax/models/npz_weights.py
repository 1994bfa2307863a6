"""Converted pre-trained weights as tagged ``.npz`` files (VGG-Face, MobileFaceNet).

A weights file is a plain ``.npz``: one float array per parameter under a ``/``-joined path
(``conv1_1/kernel``, ``params/conv1/conv/kernel``), a ``__format__`` string that names the
network and its layout version (a file of another network or an older layout is refused
before any shape is looked at), and optional ``__name__`` metadata strings or numbers.

Reading uses ``np.load(..., allow_pickle=False)``, so a file from anywhere cannot run code:
an object array inside it is a ``ValueError``, not an unpickling. Writing is atomic
(:func:`facedeblur_jax.core.atomic.atomic_write`) and never replaces an existing file unless
asked to.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from facedeblur_jax.core.atomic import atomic_write
from facedeblur_jax.core.npzfile import READ_ERRORS, why_unreadable

FORMAT_KEY = "__format__"


def _is_meta(key: str) -> bool:
    return key.startswith("__") and key.endswith("__")


def flatten_tree(tree: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """``{"a": {"b": x}}`` -> ``{"a/b": f32 x}`` (every leaf as a float32 numpy array)."""
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_tree(value, prefix=f"{path}/"))
        else:
            flat[path] = np.asarray(value, np.float32)
    return flat


def unflatten_tree(flat: Mapping[str, np.ndarray], source: str) -> dict[str, Any]:
    """``{"a/b": x}`` -> ``{"a": {"b": x}}``; ``ValueError`` naming a key that is both a leaf
    and a folder of other keys (``a/b`` and ``a/b/c``)."""
    tree: dict[str, Any] = {}
    for key in sorted(flat):
        *folders, leaf = key.split("/")
        node = tree
        for depth, folder in enumerate(folders):
            node = node.setdefault(folder, {})
            if not isinstance(node, dict):
                folder_path = "/".join(folders[: depth + 1])
                raise ValueError(f"{source}: {folder_path} is both an array and a group")
        if leaf in node:
            raise ValueError(f"{source}: {key} is both an array and a group")
        node[leaf] = flat[key]
    return tree


def write_tagged_npz(
    path: str | os.PathLike,
    arrays: Mapping[str, np.ndarray],
    *,
    fmt: str,
    what: str,
    meta: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """Writes ``arrays`` plus the format tag and ``meta`` (keys without underscores; stored as
    ``__key__``) atomically to ``path``.

    Args:
      path: target; must end in ``.npz``; resolved to an absolute path.
      arrays: ``{"/"-joined name: array}``.
      fmt: the format tag that :func:`read_tagged_npz` will require.
      what: the kind of file for messages (``"the VGG-Face checkpoint"``).
      meta: strings or numbers stored beside the arrays.
      overwrite: replace an existing file (else ``FileExistsError`` naming it).
    Returns:
      The resolved path.
    """
    path = pathlib.Path(path).expanduser().resolve()
    if path.suffix != ".npz":
        raise ValueError(f"{what} must be a .npz file; got {path}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    payload = {key: np.asarray(value) for key, value in arrays.items()}
    bad = sorted(key for key in payload if _is_meta(key))
    if bad:
        raise ValueError(f"array names {bad} are reserved for metadata")
    payload[FORMAT_KEY] = np.asarray(fmt)
    for key, value in (meta or {}).items():
        payload[f"__{key}__"] = np.asarray(value)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **payload)

    return atomic_write(path, write, durable=True)


def read_tagged_npz(
    path: str | os.PathLike,
    *,
    fmt: str,
    what: str,
    writer: str,
    missing_hint: str = "",
    bad_hint: str = "",
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Reads a file written by :func:`write_tagged_npz` with the tag ``fmt``.

    Args:
      path: the file.
      fmt: the required format tag.
      what: the kind of file for messages (``"VGG-Face checkpoint"``).
      writer: what writes such files, for messages (``"facedeblur convert-vgg"``).
      missing_hint: appended to the message for a missing file.
      bad_hint: appended to the message for a file that is not such a checkpoint.
    Returns:
      ``({name: array}, {meta name without underscores: array})``.
    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: not an ``.npz``, a truncated one, an ``.npz`` with pickled objects (never
        unpickled), or another format tag.
    """
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}{missing_hint}")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):  # a plain .npy array
            raise ValueError("a single .npy array, not an .npz archive")
        with data:
            stored = {key: data[key] for key in data.files}
    except READ_ERRORS as e:  # not an npz, a truncated one, or one with pickled objects
        raise ValueError(
            f"{path} is not a {what} written by {writer}: {why_unreadable(path, e)}{bad_hint}"
        ) from e
    tag = str(stored.pop(FORMAT_KEY, ""))
    if tag != fmt:
        raise ValueError(
            f"{path} is not a {what} written by {writer} (format tag {tag!r}, expected "
            f"{fmt!r}){bad_hint}"
        )
    meta = {key[2:-2]: value for key, value in stored.items() if _is_meta(key)}
    arrays = {key: value for key, value in stored.items() if not _is_meta(key)}
    return arrays, meta
