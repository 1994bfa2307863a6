"""Converts a PyTorch MobileFaceNet checkpoint to the ``.npz`` that ``MobileFaceNet`` reads.

    python -m facedeblur_jax.models.mobilefacenet_convert --input 068.ckpt \\
        --out weights/mobilefacenet.npz

Source: the layout of Xiaoccer/MobileFaceNet_Pytorch (``core/model.py``), whose released
``model/best/068.ckpt`` is a ``{"epoch": int, "net_state_dict": OrderedDict}`` saved by an
old PyTorch (the legacy, non-zip pickle format). ``torch.load(..., weights_only=True)``
reads it: PyTorch's restricted unpickler, which rebuilds only tensors and plain containers
and never runs code from the file; anything else in the file is refused. ``torch`` is
imported only here. Plain ``state_dict`` files, ``{"state_dict": …}`` wrappers and a
``module.`` prefix (DataParallel) are accepted too.

Key mapping (PyTorch -> Flax ``{"params", "batch_stats"}``, see ``mobilefacenet.py``):

* ``conv1``, ``dw_conv1``, ``conv2``, ``linear7``, ``linear1`` keep their names; inside each,
  ``conv.weight`` -> ``conv/kernel``, ``bn.weight``/``bn.bias`` -> ``bn/scale``/``bn/bias``,
  ``bn.running_mean``/``bn.running_var`` -> ``batch_stats …/bn/mean``/``var``,
  ``prelu.weight`` -> ``prelu/negative_slope``;
* ``blocks.{i}.conv.{0,1,2}`` (conv, BN, PReLU) -> ``blocks_{i}/expand``, ``{3,4,5}`` ->
  ``blocks_{i}/depthwise``, ``{6,7}`` (conv, BN) -> ``blocks_{i}/project``;
* ``num_batches_tracked`` is dropped (inference only).

Kernels go from PyTorch OIHW to Flax HWIO (``transpose(2, 3, 1, 0)``); a depthwise kernel
``[C, 1, kh, kw]`` becomes ``[kh, kw, 1, C]``, the layout of ``feature_group_count = C``.
Both frameworks compute cross-correlation, so no spatial flip.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from facedeblur_jax.models.mobilefacenet import (
    conv_layers,
    expected_variable_shapes,
    save_mobilefacenet,
)
from facedeblur_jax.models.npz_weights import unflatten_tree

_TOP_LEVEL = ("conv1", "dw_conv1", "conv2", "linear7", "linear1")
# Bottleneck sub-unit -> index of its conv in the PyTorch nn.Sequential (BN follows at +1,
# PReLU at +2).
_BLOCK_INDEX = {"expand": 0, "depthwise": 3, "project": 6}


def _torch_modules(unit: str) -> tuple[str, str, str]:
    """Flax unit path -> PyTorch prefixes of its conv, BN and PReLU (``blocks_3/depthwise``
    -> ``blocks.3.conv.3``, ``blocks.3.conv.4``, ``blocks.3.conv.5``)."""
    if unit in _TOP_LEVEL:
        return f"{unit}.conv", f"{unit}.bn", f"{unit}.prelu"
    block, _, part = unit.partition("/")
    head, index = f"blocks.{block.removeprefix('blocks_')}.conv", _BLOCK_INDEX[part]
    return f"{head}.{index}", f"{head}.{index + 1}", f"{head}.{index + 2}"


def key_mapping() -> dict[str, tuple[str, str]]:
    """``{PyTorch key: (Flax variable path, kind)}``; kind ``"kernel"`` (OIHW -> HWIO) or
    ``"vector"`` (copied)."""
    mapping = {}
    for unit, *_, prelu in conv_layers():
        conv, bn, act = _torch_modules(unit)
        mapping[f"{conv}.weight"] = (f"params/{unit}/conv/kernel", "kernel")
        mapping[f"{bn}.weight"] = (f"params/{unit}/bn/scale", "vector")
        mapping[f"{bn}.bias"] = (f"params/{unit}/bn/bias", "vector")
        mapping[f"{bn}.running_mean"] = (f"batch_stats/{unit}/bn/mean", "vector")
        mapping[f"{bn}.running_var"] = (f"batch_stats/{unit}/bn/var", "vector")
        if prelu:
            mapping[f"{act}.weight"] = (f"params/{unit}/prelu/negative_slope", "vector")
    return mapping


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch.Tensor; float() also handles fp16/bf16
        return x.detach().cpu().float().numpy()
    return np.asarray(x)


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, Any]:
    """The ``state_dict`` inside a training checkpoint (``net_state_dict`` / ``state_dict``
    entry, or the mapping itself), without a DataParallel ``module.`` prefix."""
    if isinstance(obj, Mapping):
        for entry in ("net_state_dict", "state_dict"):
            if isinstance(obj.get(entry), Mapping):
                obj = obj[entry]
                break
    if not isinstance(obj, Mapping):
        raise ValueError(f"{source}: expected a state_dict (names -> tensors); got {type(obj)}")
    if obj and all(isinstance(k, str) and k.startswith("module.") for k in obj):
        obj = {k.removeprefix("module."): v for k, v in obj.items()}
    return dict(obj)


def convert_state_dict(state_dict: Mapping[str, Any], source: str = "state_dict") -> dict:
    """A MobileFaceNet PyTorch ``state_dict`` (tensors or arrays) -> Flax
    ``{"params": …, "batch_stats": …}`` of float32 numpy arrays.

    ``ValueError`` (one line, naming ``source``) for missing, unknown or wrong-shaped keys.
    """
    sd = unwrap_state_dict(state_dict, source)
    mapping = key_mapping()
    shapes = expected_variable_shapes()
    missing = [key for key in mapping if key not in sd]
    unknown = sorted(k for k in sd if k not in mapping and not k.endswith("num_batches_tracked"))
    problems = []
    if missing:
        problems.append(f"missing {missing[:6]}{' …' if len(missing) > 6 else ''}")
    if unknown:
        problems.append(f"unknown {unknown[:6]}{' …' if len(unknown) > 6 else ''}")
    flat = {}
    for key, (target, kind) in mapping.items():
        if key not in sd:
            continue
        value = _to_numpy(sd[key])
        want = shapes[target]
        if kind == "kernel":
            want = (want[3], want[2], want[0], want[1])  # OIHW
        if value.shape != want:
            problems.append(f"{key}: expected shape {want}, got {value.shape}")
        elif not np.issubdtype(value.dtype, np.floating):
            problems.append(f"{key}: dtype {value.dtype}, not float")
        else:
            value = value.transpose(2, 3, 1, 0) if kind == "kernel" else value
            flat[target] = np.ascontiguousarray(value, dtype=np.float32)
    if problems:
        raise ValueError(f"{source} is not a MobileFaceNet state_dict: " + "; ".join(problems))
    bad = sorted(k for k, v in flat.items() if not np.all(np.isfinite(v)))
    if bad:
        raise ValueError(f"{source}: non-finite values in {bad[:6]}")
    return unflatten_tree(flat, source)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a PyTorch checkpoint with ``torch.load(..., weights_only=True)`` and returns its
    ``state_dict`` (see :func:`unwrap_state_dict`). One-line errors naming ``path``."""
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"MobileFaceNet checkpoint not found: {path}")
    try:
        import torch  # deferred: torch is optional (the test extra)
    except ImportError as e:  # torch is not a dependency of the package
        raise ImportError(f"reading the PyTorch checkpoint {path} needs torch") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses anything but tensors and containers
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"{path} could not be read as a PyTorch checkpoint with weights_only=True ({reason})"
        ) from e
    return unwrap_state_dict(obj, str(path))


def convert_checkpoint(path: str | os.PathLike) -> dict:
    """``read_checkpoint`` + ``convert_state_dict``: Flax ``{"params", "batch_stats"}``."""
    return convert_state_dict(read_checkpoint(path), source=str(path))


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """``--input 068.ckpt --out mobilefacenet.npz [--overwrite]``; 0 on success, else one
    error line on stderr (nothing written) and 2 for bad input (a missing, unreadable or
    foreign checkpoint, a bad or existing --out), 1 for a failure while writing."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Converts a PyTorch MobileFaceNet checkpoint (e.g. 068.ckpt of "
        "Xiaoccer/MobileFaceNet_Pytorch) to the .npz weights file of the identity network.",
    )
    parser.add_argument("--input", required=True, help="PyTorch checkpoint (.ckpt / .pth)")
    parser.add_argument("--out", required=True, help="weights file to write (.npz)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)

    src = pathlib.Path(args.input).expanduser().resolve()
    out = pathlib.Path(args.out).expanduser().resolve()
    try:
        if out.suffix != ".npz":
            raise ValueError(f"--out must end in .npz; got {out}")
        if out == src:
            raise ValueError(f"--out is the input file {src}")
        if out.exists() and not args.overwrite:
            raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
        variables = convert_checkpoint(src)
        written = save_mobilefacenet(
            variables, out, source=f"{src.name} (PyTorch)", overwrite=args.overwrite
        )
    except (FileNotFoundError, FileExistsError, ValueError, ImportError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a failure while converting or writing
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    count = sum(v.size for v in _leaves(variables["params"]))
    stats = sum(v.size for v in _leaves(variables["batch_stats"]))
    print(f"input  {src}")
    print(f"layers {len(conv_layers())} conv-BN units; {count:,} parameters, {stats:,} BN stats")
    print(f"wrote  {written}")
    return 0


def _leaves(tree: Mapping[str, Any]):
    for value in tree.values():
        if isinstance(value, Mapping):
            yield from _leaves(value)
        else:
            yield value


if __name__ == "__main__":
    sys.exit(main())
