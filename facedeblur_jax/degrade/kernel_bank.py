"""The fixed test-kernel bank (docs/design.md §3, paper Tables 9/10): ``per_size`` Boracchi & Foi
kernels for every support size, drawn from a seed that no training run uses, saved as one
deterministic ``.npz``.

Key derivation. Kernel ``i`` of support size ``k`` is ``sample_kernel(key(k, i), sizes=(k,))``
with::

    key(k, i) = fold_in(fold_in(fold_in(jax.random.key(BANK_SEED), BANK_TAG), k), i)

``BANK_SEED = 2**31 − 1`` and ``BANK_TAG = 0x7E57_BA4C``. Training draws its kernels from
``split(jax.random.key(config.seed))[1]`` folded with the step and then the sample index
(``train_step.py``), i.e. from another root key *and* another derivation: the two streams
share no key unless threefry collides. The test suite checks it directly for the first
training steps. Because the key depends only on ``(k, i)``, kernel ``i`` of size ``k`` is
the same whatever ``sizes`` or ``per_size`` a bank is built with (a 10-per-size bank starts
with the 2-per-size one).

Extra kernels. A bank may also carry kernels read from files (:func:`with_extras`,
``facedeblur make-kernels --extra NAME=FILE.npy``), e.g. the 27×27 test kernel the
paper's authors released, which ``facedeblur eval`` then reports as one more group beside
the sizes. Such a file is never part of this repository; the bank records its file name,
sha256, original shape and sum. It must hold one 2-D, finite, non-negative array with a
positive sum; it is renormalised to sum 1 (the original sum is recorded and printed when it
was off by more than 1e-4), zero-padded to the canvas (centred; an odd leftover row or
column goes after the kernel) or, when larger, cropped by all-zero border rows/columns
only (mass outside the canvas is an error naming the file). Its ``size`` is the smallest
centred odd square that holds it, its group label ``NAME``; extra rows follow the drawn ones.

File layout (``np.load(path, allow_pickle=False)``), drawn rows ordered by size (ascending),
then index, then the extra rows::

    kernels            f32[K, canvas, canvas]  each sums to 1, zero outside its centred k×k
    sizes              i32[K]                  support size of each kernel
    index              i32[K]                  i of each kernel within its size (or group)
    groups             str[K]                  "<size>" for drawn kernels, NAME for extras
    seed, tag          i64[]                   BANK_SEED, BANK_TAG
    anxiety            f64[]                   NaN = B&F's random 0.1·U per kernel
    center             str[]                   placement in the support (kernels.CENTERS)
    steps              i32[]                   trajectory samples (numT)
    trajectory_length  f64[]                   path length L
    canvas, per_size   i32[]
    version            i32[]                   FORMAT_VERSION
    extras             str[]                   JSON list: name, file, sha256, shape, sum
    provenance         str[]                   the same fields as JSON (for people)

Banks of format version 1 (no ``center``, ``groups`` or ``extras``) load as centroid-placed
kernels (what they were drawn with) without extras (``core/compat.py``).

The zip is written by hand with fixed member order and a fixed 1980-01-01 timestamp, so the
same arguments give byte-identical files (``np.savez`` stamps the current time). That holds
for one JAX version and backend: threefry draws are platform-independent, but the float
rounding of the trajectory scan may differ between backends or CPU types in the last bit, so
``facedeblur eval`` records the bank file's sha256 next to its numbers.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import pathlib
import zipfile
from collections.abc import Sequence

import jax
import numpy as np

from facedeblur_jax.core import compat, imageio, npzfile
from facedeblur_jax.core.atomic import atomic_write
from facedeblur_jax.core.digest import sha256_file
from facedeblur_jax.degrade import kernels as kernels_lib

BANK_SEED = 2**31 - 1
BANK_TAG = 0x7E57_BA4C
DEFAULT_PER_SIZE = 10
FORMAT_VERSION = 2
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_SUM_TOL = 1e-4


@dataclasses.dataclass(frozen=True)
class KernelBank:
    """A test-kernel bank in memory.

    Attributes:
      kernels: ``f32[K, canvas, canvas]``.
      sizes: ``i32[K]`` support size of each kernel (ascending, grouped).
      index: ``i32[K]`` index of each kernel within its size.
      seed, tag: root seed and tag of the key derivation (module docstring).
      anxiety: B&F shake amount, or ``None`` for the random ``0.1·U`` per kernel.
      num_steps, max_total_length: trajectory samples and path length.
      center: placement of each stroke in its support (``kernels.rasterize``); banks
        written before the field existed were ``"centroid"``.
      groups: ``str[K]`` group label of each row: ``str(size)`` for drawn kernels, the
        name of an extra kernel (``None``: every row is drawn).
      extras: provenance of the extra kernels (one dict each, in row order).
    """

    kernels: np.ndarray
    sizes: np.ndarray
    index: np.ndarray
    seed: int = BANK_SEED
    tag: int = BANK_TAG
    anxiety: float | None = kernels_lib.DEFAULT_ANXIETY
    num_steps: int = kernels_lib.DEFAULT_NUM_STEPS
    max_total_length: float = kernels_lib.DEFAULT_MAX_TOTAL_LENGTH
    center: str = kernels_lib.DEFAULT_CENTER
    groups: np.ndarray | None = None
    extras: tuple[dict, ...] = ()

    def __len__(self) -> int:
        return int(self.kernels.shape[0])

    @property
    def canvas(self) -> int:
        return int(self.kernels.shape[-1])

    @property
    def group_labels(self) -> np.ndarray:
        """``str[K]``: ``"<size>"`` for a drawn kernel, the extra kernel's name otherwise."""
        if self.groups is None:
            return np.asarray([str(int(k)) for k in self.sizes])
        return np.asarray(self.groups, str)

    @property
    def drawn(self) -> np.ndarray:
        """``bool[K]``: rows drawn by the sampler (not extras)."""
        return self.group_labels == np.asarray([str(int(k)) for k in self.sizes])

    @property
    def extra_groups(self) -> tuple[str, ...]:
        """Names of the extra kernels, in row order."""
        return tuple(dict.fromkeys(self.group_labels[~self.drawn].tolist()))

    @property
    def unique_sizes(self) -> tuple[int, ...]:
        """The sizes of the drawn kernels."""
        return tuple(int(k) for k in np.unique(self.sizes[self.drawn]))

    @property
    def per_size(self) -> int:
        drawn = self.sizes[self.drawn]
        return int(np.max(np.bincount(drawn))) if drawn.size else 0

    def provenance(self) -> dict:
        """JSON-ready description of how the bank was drawn (no kernel values)."""
        return {
            "generator": "facedeblur_jax.degrade.kernel_bank",
            "version": FORMAT_VERSION,
            "seed": int(self.seed),
            "tag": int(self.tag),
            "key": "fold_in(fold_in(fold_in(jax.random.key(seed), tag), size), index)",
            "sizes": list(self.unique_sizes),
            "per_size": self.per_size,
            "canvas": self.canvas,
            "anxiety": self.anxiety,
            "steps": int(self.num_steps),
            "trajectory_length": float(self.max_total_length),
            "center": self.center,
            "num_kernels": len(self),
            "extras": [dict(e) for e in self.extras],
        }


def kernel_key(size: int, index: int, seed: int = BANK_SEED, tag: int = BANK_TAG) -> jax.Array:
    """The PRNG key of kernel ``index`` of support ``size`` (module docstring)."""
    key = jax.random.fold_in(jax.random.key(seed), tag)
    return jax.random.fold_in(jax.random.fold_in(key, size), index)


def _check_sizes(sizes: Sequence[int], canvas: int) -> tuple[int, ...]:
    sizes = tuple(int(k) for k in sizes)
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"sizes must not repeat; got {sizes}")
    kernels_lib._validate_canvas(canvas)
    return tuple(sorted(kernels_lib._validate_sizes(sizes, canvas)))


def make_bank(
    sizes: Sequence[int] = kernels_lib.DEFAULT_SIZES,
    per_size: int = DEFAULT_PER_SIZE,
    *,
    canvas: int = kernels_lib.DEFAULT_CANVAS,
    anxiety: float | None = kernels_lib.DEFAULT_ANXIETY,
    num_steps: int = kernels_lib.DEFAULT_NUM_STEPS,
    max_total_length: float = kernels_lib.DEFAULT_MAX_TOTAL_LENGTH,
    center: str = kernels_lib.DEFAULT_CENTER,
    seed: int = BANK_SEED,
    tag: int = BANK_TAG,
) -> KernelBank:
    """Draws the bank: ``per_size`` kernels for each size (sorted ascending).

    Returns:
      :class:`KernelBank` with ``len(sizes) · per_size`` kernels on a ``canvas`` grid.
    """
    sizes = _check_sizes(sizes, canvas)
    if isinstance(per_size, bool) or not isinstance(per_size, int) or per_size < 1:
        raise ValueError(f"per_size must be an int >= 1; got {per_size!r}")
    if anxiety is not None and (not math.isfinite(anxiety) or anxiety < 0):
        raise ValueError(f"anxiety must be finite and >= 0 (or None); got {anxiety!r}")
    kernels_lib._check_center(center)
    out_k, out_s, out_i = [], [], []
    for k in sizes:

        def draw(key, k=k):
            kernel, _ = kernels_lib.sample_kernel(
                key, (k,), canvas, anxiety, num_steps, max_total_length, center=center
            )
            return kernel

        keys = jax.vmap(lambda i, k=k: kernel_key(k, i, seed, tag))(np.arange(per_size))
        out_k.append(np.asarray(jax.jit(jax.vmap(draw))(keys), np.float32))
        out_s.append(np.full(per_size, k, np.int32))
        out_i.append(np.arange(per_size, dtype=np.int32))
    return KernelBank(
        kernels=np.concatenate(out_k),
        sizes=np.concatenate(out_s),
        index=np.concatenate(out_i),
        seed=int(seed),
        tag=int(tag),
        anxiety=None if anxiety is None else float(anxiety),
        num_steps=int(num_steps),
        max_total_length=float(max_total_length),
        center=center,
    )


def bank_kwargs_from_config(config) -> dict:
    """``make_bank`` keyword arguments matching a config's ``degrade`` section (the kernel
    sizes, canvas, anxiety, trajectory and placement the model was trained with)."""
    d = config.degrade
    return {
        "sizes": tuple(int(k) for k in d.kernel_sizes),
        "canvas": int(d.kernel_canvas),
        "anxiety": None if d.anxiety is None else float(d.anxiety),
        "num_steps": int(d.trajectory_steps),
        "max_total_length": float(d.trajectory_length),
        "center": str(d.center),
    }


def _arrays(bank: KernelBank) -> list[tuple[str, np.ndarray]]:
    """The ``.npz`` members in their fixed order."""
    anxiety = np.nan if bank.anxiety is None else bank.anxiety
    return [
        ("kernels", np.ascontiguousarray(bank.kernels, np.float32)),
        ("sizes", np.asarray(bank.sizes, np.int32)),
        ("index", np.asarray(bank.index, np.int32)),
        ("groups", bank.group_labels),
        ("seed", np.asarray(bank.seed, np.int64)),
        ("tag", np.asarray(bank.tag, np.int64)),
        ("anxiety", np.asarray(anxiety, np.float64)),
        ("center", np.asarray(bank.center)),
        ("steps", np.asarray(bank.num_steps, np.int32)),
        ("trajectory_length", np.asarray(bank.max_total_length, np.float64)),
        ("canvas", np.asarray(bank.canvas, np.int32)),
        ("per_size", np.asarray(bank.per_size, np.int32)),
        ("version", np.asarray(FORMAT_VERSION, np.int32)),
        ("extras", np.asarray(json.dumps([dict(e) for e in bank.extras], sort_keys=True))),
        ("provenance", np.asarray(json.dumps(bank.provenance(), sort_keys=True))),
    ]


def save_bank(
    path: str | os.PathLike, bank: KernelBank, *, overwrite: bool = False
) -> pathlib.Path:
    """Writes ``bank`` to ``path`` (``.npz``) atomically and byte-deterministically.

    Raises:
      FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    path = pathlib.Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"the kernel bank file must end in .npz; got {str(path)!r}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"refusing to overwrite existing file {str(path)!r}")

    def write(tmp: str) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, array in _arrays(bank):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, array, allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
                info.external_attr = 0o644 << 16
                zf.writestr(info, buf.getvalue())

    return atomic_write(path, write)


def load_bank(path: str | os.PathLike) -> KernelBank:
    """Reads and checks a bank written by :func:`save_bank` (never unpickles).

    Raises:
      FileNotFoundError: no such file.
      ValueError: not a kernel bank, or kernels that are not valid PSFs of their size.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"kernel bank {str(path)!r} not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except npzfile.READ_ERRORS as e:
        raise ValueError(
            f"{str(path)!r} is not a kernel bank .npz: {npzfile.why_unreadable(path, e)}"
        ) from e
    required = {"kernels", "sizes", "index", "seed", "tag", "anxiety", "steps"}
    missing = required - set(data)
    if missing:
        raise ValueError(
            f"{str(path)!r} is not a kernel bank (missing {sorted(missing)}); write one "
            "with facedeblur make-kernels"
        )
    kernels, sizes = data["kernels"].astype(np.float32), data["sizes"].astype(np.int32)
    if kernels.ndim != 3 or kernels.shape[1] != kernels.shape[2] or kernels.shape[1] % 2 == 0:
        raise ValueError(f"{str(path)!r}: kernels must be f32[K, c, c], c odd; got {kernels.shape}")
    if sizes.shape != kernels.shape[:1] or data["index"].shape != kernels.shape[:1]:
        raise ValueError(f"{str(path)!r}: sizes/index must be i32[{kernels.shape[0]}]")
    if len(kernels) == 0:
        raise ValueError(f"{str(path)!r} holds no kernels")
    canvas = kernels.shape[-1]
    _check_sizes(np.unique(sizes).tolist(), canvas)
    if not np.all(np.isfinite(kernels)) or kernels.min() < 0:
        raise ValueError(f"{str(path)!r}: kernels must be finite and >= 0")
    sums = kernels.sum(axis=(1, 2))
    if np.max(np.abs(sums - 1.0)) > _SUM_TOL:
        raise ValueError(f"{str(path)!r}: kernels must sum to 1 (got sums {sums.min()}..)")
    for k in np.unique(sizes):
        lo, hi = (canvas - k) // 2, (canvas + k) // 2
        outside = kernels[sizes == k].copy()
        outside[:, lo:hi, lo:hi] = 0
        if np.any(outside != 0):
            raise ValueError(f"{str(path)!r}: a kernel of size {k} is non-zero outside {k}×{k}")
    anxiety = float(data["anxiety"])
    center = compat.bank_center(data)
    if center not in kernels_lib.CENTERS:
        raise ValueError(f"{str(path)!r}: unknown center {center!r}")
    groups = None
    if "groups" in data:
        groups = np.asarray(data["groups"], str)
        if groups.shape != sizes.shape:
            raise ValueError(f"{str(path)!r}: groups must be str[{sizes.shape[0]}]")
    try:
        extras = tuple(json.loads(str(data["extras"]))) if "extras" in data else ()
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(path)!r}: extras is not JSON: {e}") from e
    return KernelBank(
        kernels=kernels,
        sizes=sizes,
        index=data["index"].astype(np.int32),
        seed=int(data["seed"]),
        tag=int(data["tag"]),
        anxiety=None if math.isnan(anxiety) else anxiety,
        num_steps=int(data["steps"]),
        max_total_length=float(data.get("trajectory_length", kernels_lib.DEFAULT_MAX_TOTAL_LENGTH)),
        center=center,
        groups=groups,
        extras=extras,
    )


def _fit_to_canvas(kernel: np.ndarray, canvas: int, name: str) -> np.ndarray:
    """Centres ``kernel`` on a ``canvas × canvas`` grid: zero-pads a smaller one (an odd
    leftover row/column after it), crops a larger one symmetrically (the same leftover
    rule) — only rows/columns that are all zero, so the kernel neither moves nor loses mass."""
    for axis in (0, 1):
        n = kernel.shape[axis]
        before = abs(canvas - n) // 2
        if n < canvas:
            pad = [(0, 0), (0, 0)]
            pad[axis] = (before, canvas - n - before)
            kernel = np.pad(kernel, pad)
        elif n > canvas:
            keep = np.arange(before, before + canvas)
            mass = kernel.sum(axis=1 - axis)
            if np.delete(mass, keep).any():
                what = "rows" if axis == 0 else "columns"
                raise ValueError(
                    f"{name}: {n} {what} with mass outside the centred {canvas} of the canvas; "
                    "make the bank with a larger --canvas"
                )
            kernel = np.take(kernel, keep, axis=axis)
    return kernel


def load_extra_kernel(path: str | os.PathLike, canvas: int) -> tuple[np.ndarray, dict]:
    """One kernel file for :func:`with_extras`: ``(f32[canvas, canvas] summing to 1, info)``.

    ``path``: a ``.npy`` file holding one 2-D array (never unpickled). ``info``: ``file``
    (the name only), ``sha256``, ``shape``, ``sum`` (before renormalising), ``renormalised``
    (the sum was off by more than 1e-4), ``size`` (smallest centred odd square holding it).

    Raises:
      FileNotFoundError: no such file.
      ValueError: not a 2-D, finite, non-negative array with a positive sum, or mass that
        does not fit the canvas; the message names the file.
    """
    path = pathlib.Path(path)
    name = repr(str(path))
    if not path.is_file():
        raise FileNotFoundError(f"extra kernel {name} not found")
    try:
        kernel = np.load(path, allow_pickle=False)
    except npzfile.READ_ERRORS as e:
        raise ValueError(
            f"extra kernel {name} is not a .npy array: {npzfile.why_unreadable(path, e)}"
        ) from e
    if not isinstance(kernel, np.ndarray) or kernel.ndim != 2 or 0 in kernel.shape:
        shape = getattr(kernel, "shape", None)
        raise ValueError(f"extra kernel {name} must be a non-empty 2-D array; got shape {shape}")
    if not np.issubdtype(kernel.dtype, np.number) or np.issubdtype(
        kernel.dtype, np.complexfloating
    ):
        raise ValueError(f"extra kernel {name} must hold real numbers; got {kernel.dtype}")
    kernel = kernel.astype(np.float64)
    if not np.all(np.isfinite(kernel)) or kernel.min() < 0:
        raise ValueError(f"extra kernel {name} must be finite and >= 0")
    total = float(kernel.sum())
    if total <= 0:
        raise ValueError(f"extra kernel {name} sums to {total}; it must have positive mass")
    kernels_lib._validate_canvas(canvas)
    placed = _fit_to_canvas(kernel, canvas, f"extra kernel {name}") / total
    rows, cols = np.flatnonzero(placed.any(axis=1)), np.flatnonzero(placed.any(axis=0))
    centre = (canvas - 1) // 2
    radius = max(centre - rows[0], rows[-1] - centre, centre - cols[0], cols[-1] - centre)
    info = {
        "file": path.name,
        "sha256": sha256_file(path),
        "shape": [int(n) for n in kernel.shape],
        "sum": total,
        "renormalised": bool(abs(total - 1.0) > _SUM_TOL),
        "size": max(3, 2 * int(radius) + 1),
    }
    return placed.astype(np.float32), info


def with_extras(bank: KernelBank, extras: Sequence[tuple[str, str | os.PathLike]]) -> KernelBank:
    """``bank`` plus one row per ``(name, .npy path)`` (:func:`load_extra_kernel`), each its
    own group ``name`` (letters, digits, ``_``, ``-``; not all digits — those label sizes)."""
    names = [str(n) for n, _ in extras]
    for n in names:
        if not n or n.isdigit() or not all(c.isalnum() or c in "_-" for c in n):
            raise ValueError(
                f"extra kernel name {n!r} must be letters, digits, '_' or '-' and not all digits"
            )
    taken = set(bank.group_labels.tolist())
    dup = [n for i, n in enumerate(names) if n in taken or n in names[:i]]
    if dup:
        raise ValueError(f"extra kernel name(s) {dup} repeat a group of the bank")
    kernels, sizes, groups, infos = [bank.kernels], [bank.sizes], [bank.group_labels], []
    for n, path in extras:
        kernel, info = load_extra_kernel(path, bank.canvas)
        kernels.append(kernel[None])
        sizes.append(np.asarray([info["size"]], np.int32))
        groups.append(np.asarray([n]))
        infos.append({"name": n, **info})
    return dataclasses.replace(
        bank,
        kernels=np.concatenate(kernels).astype(np.float32),
        sizes=np.concatenate(sizes).astype(np.int32),
        index=np.concatenate([bank.index, np.zeros(len(extras), np.int32)]),
        groups=np.concatenate(groups),
        extras=(*bank.extras, *infos),
    )


def preview(bank: KernelBank, zoom: int = 4) -> np.ndarray:
    """``uint8[H, W, 3]``: every kernel (max-normalised, ``zoom``× nearest), one row per size."""
    peak = np.maximum(bank.kernels.max(axis=(1, 2), keepdims=True), 1e-12)
    tiles = np.round(255 * bank.kernels / peak).astype(np.uint8)
    tiles = np.repeat(np.repeat(tiles, zoom, axis=1), zoom, axis=2)
    return imageio.grid([np.repeat(t[..., None], 3, -1) for t in tiles], columns=bank.per_size)
