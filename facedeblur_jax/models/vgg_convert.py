"""Converts public VGG-Face releases to the Flax params that ``VGGFace`` uses.

Supported inputs (the format is sniffed from the file, not its name):

PyTorch ``state_dict`` files, read with ``torch.load(..., weights_only=True)`` (no arbitrary
unpickling; ``torch`` is imported only here). Key layouts recognised:

==================  ==========================================  ==============================
layout              keys (conv / fc)                             conv1_1 expects
==================  ==========================================  ==============================
``pytorch-mcn``     ``conv1_1.weight`` … ``fc8.bias``            RGB — Albanie's
                                                                 ``vgg_face_dag.pth``, converted
                                                                 from MatConvNet
``luatorch``        ``conv_1_1.weight`` … ``fc8.bias``           BGR — prlz77/vgg-face.pytorch,
                                                                 converted from the Lua Torch
                                                                 ``VGG_FACE.t7`` (itself from
                                                                 Caffe; its demos feed OpenCV
                                                                 BGR images)
``pyvggface``       ``features.conv_1_1.weight`` …               BGR — chi0tzp/PyVGGFace, from
                    ``fc.fc8.bias``                              the same ``VGG_FACE.t7``
``torchvision``     ``features.{0,2,5,…,28}.weight``,            unknown: pass
                    ``classifier.{0,3,6}.*``                     ``source_channels``
==================  ==========================================  ==============================

A ``module.`` prefix (DataParallel) and a ``{"state_dict": …}`` wrapper are unwrapped.
Weights are OIHW; Flax wants HWIO (``w.transpose(2, 3, 1, 0)``); both frameworks compute
cross-correlation, so no spatial flip.

MatConvNet ``.mat`` (v5/v7 MAT-files, read with ``scipy.io.loadmat`` — never pickle):

* DagNN (``vgg_face_dag.mat``): a ``params`` struct array with ``name`` (``conv1_1f``,
  ``conv1_1b``, …) and ``value``;
* SimpleNN (``vgg-face.mat``): a ``layers`` cell array of structs with ``type``, ``name`` and
  ``weights = {filters, biases}`` (older files: ``filters`` / ``biases`` fields).

MatConvNet filters are ``H×W×C_in×C_out``; ``loadmat`` returns them with MATLAB's logical
indices (it undoes the column-major storage), so they are already Flax HWIO — the same
mapping pytorch-mcn uses (``value.transpose(3, 2, 0, 1)`` to OIHW). Biases come as
``C_out×1`` or ``1×C_out`` and are flattened. MatConvNet reads images with ``imread`` (RGB) and
its ``meta.normalization.averageImage`` is (129.1863, 104.7624, 93.5940) in R, G, B order;
when the file has one, it is checked against ``VGG_FACE_MEAN_RGB``.

Channel order: the converted ``conv1_1`` always expects RGB. For a BGR source its input
channels are reversed (exact, since the BGR release subtracts the same per-colour means).

Identity check: VGG-Face classifies 2622 identities. If the file has ``fc8``, its output
count must be 2622 (ImageNet VGG-16, 1000 classes, has the very same conv shapes and would
otherwise pass silently); ``check_vgg_face=False`` skips this and the mean check.
``fc6``–``fc8`` are not converted.

Not supported: Caffe ``.caffemodel`` and Lua Torch ``.t7`` (use one of the files above),
MATLAB v7.3 (HDF5) MAT-files.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from scipy.io import loadmat  # scipy is a dependency; imported here to keep imports light

from facedeblur_jax.models.vgg import CONV_LAYERS, VGG_FACE_MEAN_RGB, check_vgg_face_params

VGG_FACE_CLASSES = 2622
SOURCE_CHANNELS = ("auto", "rgb", "bgr")

_CONV_NAMES = tuple(name for name, _, _ in CONV_LAYERS)
_FC_NAMES = ("fc6", "fc7", "fc8")
# torchvision ``vgg16().features`` indices of the 13 convs, and ``classifier`` of fc6–fc8.
_TORCHVISION_CONV = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
_TORCHVISION_FC = (0, 3, 6)


@dataclasses.dataclass(frozen=True)
class ConvertedVGGFace:
    """Result of a conversion.

    Attributes:
      params: ``{conv name: {"kernel": f32[3, 3, C_in, C_out], "bias": f32[C_out]}}``,
        ``conv1_1`` expecting RGB input.
      layout: detected source layout (``pytorch-mcn``, ``luatorch``, ``pyvggface``,
        ``torchvision``, ``matconvnet-dagnn``, ``matconvnet-simplenn``).
      source_channels: channel order the source's ``conv1_1`` expects (``rgb``/``bgr``).
      ignored: source layers not converted (``fc6``, ``fc7``, ``fc8``).
      notes: human-readable remarks for the summary (checks done, files' quirks).
    """

    params: dict[str, dict[str, np.ndarray]]
    layout: str
    source_channels: str
    ignored: tuple[str, ...]
    notes: tuple[str, ...] = ()


# ----------------------------------------------------------------------------- helpers


def _resolve_channels(requested: str, default: str | None, layout: str) -> str:
    if requested not in SOURCE_CHANNELS:
        raise ValueError(f"source_channels must be one of {SOURCE_CHANNELS}; got {requested!r}")
    if requested != "auto":
        return requested
    if default is None:
        raise ValueError(
            f"cannot tell which channel order the {layout} layout's conv1_1 expects (it is "
            "used for both Caffe-derived BGR and RGB conversions); pass source_channels='rgb' "
            "or 'bgr' (--source-channels) as the file's provider documents"
        )
    return default


def _fit(value: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``value`` as float32 of ``shape``; singleton dims (MATLAB squeeze quirks) may differ."""
    value = np.asarray(value)
    if not np.issubdtype(value.dtype, np.floating):
        raise ValueError(
            f"{what}: expected a float array of shape {shape}, got dtype {value.dtype}"
        )
    if value.shape != shape:
        if np.squeeze(value).shape != tuple(d for d in shape if d != 1):
            raise ValueError(f"{what}: expected shape {shape}, got {value.shape}")
        value = value.reshape(shape)
    return np.ascontiguousarray(value, dtype=np.float32)


def _finish(
    convs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    layout: str,
    channels: str,
    fc8_outputs: int | None,
    check_vgg_face: bool,
    ignored: tuple[str, ...],
    notes: list[str],
) -> ConvertedVGGFace:
    """Builds checked Flax params from ``{conv name: (HWIO kernel, bias)}``."""
    if fc8_outputs is not None:
        if fc8_outputs != VGG_FACE_CLASSES and check_vgg_face:
            raise ValueError(
                f"fc8 has {fc8_outputs} outputs, VGG-Face has {VGG_FACE_CLASSES} identities: "
                "this is a different VGG-16 (ImageNet's has 1000 classes and the same conv "
                "shapes). Pass check_vgg_face=False (--skip-vgg-face-check) to convert it anyway"
            )
        notes.append(f"fc8 has {fc8_outputs} outputs (VGG-Face: {VGG_FACE_CLASSES})")
    else:
        notes.append("no fc8 in the file: identity count not checked")
    params = {}
    for name, c_in, c_out in CONV_LAYERS:
        kernel, bias = convs[name]
        kernel = _fit(kernel, (3, 3, c_in, c_out), f"{name} kernel (HWIO)")
        bias = _fit(bias, (c_out,), f"{name} bias")
        params[name] = {"kernel": kernel, "bias": bias}
    if channels == "bgr":
        params["conv1_1"]["kernel"] = np.ascontiguousarray(params["conv1_1"]["kernel"][:, :, ::-1])
        notes.append("conv1_1 input channels reversed BGR -> RGB")
    check_vgg_face_params(params, source=f"converted {layout} weights")
    for name, leaves in params.items():
        for leaf, value in leaves.items():
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{name}/{leaf} holds non-finite values")
    return ConvertedVGGFace(params, layout, channels, ignored, tuple(notes))


# ----------------------------------------------------------------------------- PyTorch


def _torch_layouts() -> dict[str, tuple[Callable[[str], str], Callable[[str], str], str | None]]:
    """layout -> (key of a conv layer, key of an fc layer, default channel order)."""

    def luatorch(name: str) -> str:
        return re.sub(r"conv(\d)_(\d)", r"conv_\1_\2", name)

    def tv_conv(name: str) -> str:
        return f"features.{_TORCHVISION_CONV[_CONV_NAMES.index(name)]}"

    def tv_fc(name: str) -> str:
        return f"classifier.{_TORCHVISION_FC[_FC_NAMES.index(name)]}"

    return {
        "pytorch-mcn": (lambda n: n, lambda n: n, "rgb"),
        "luatorch": (luatorch, lambda n: n, "bgr"),
        "pyvggface": (lambda n: "features." + luatorch(n), lambda n: "fc." + n, "bgr"),
        "torchvision": (tv_conv, tv_fc, None),
    }


def _unwrap_state_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"expected a state_dict (a mapping of names to tensors); got {type(obj)}")
    keys = list(obj)
    if keys and all(isinstance(k, str) and k.startswith("module.") for k in keys):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch.Tensor; float() also handles fp16/bf16
        return x.detach().cpu().float().numpy()
    return np.asarray(x)


def convert_state_dict(
    state_dict: Mapping[str, Any], *, source_channels: str = "auto", check_vgg_face: bool = True
) -> ConvertedVGGFace:
    """Converts a VGG-Face PyTorch ``state_dict`` (tensors or arrays, OIHW) to Flax params.

    The layout is recognised from the keys (see the module docstring). ``ValueError`` names
    missing convs, unknown keys and wrong shapes.
    """
    sd = _unwrap_state_dict(state_dict)
    layouts = _torch_layouts()

    def conv_keys(layout: str) -> set[str]:
        conv_key = layouts[layout][0]
        keys = {f"{conv_key(n)}.weight" for n in _CONV_NAMES}
        keys |= {f"{conv_key(n)}.bias" for n in _CONV_NAMES}
        if layout == "pyvggface":  # one release names it ``conv_2_2-conv``
            keys |= {"features.conv_2_2-conv.weight", "features.conv_2_2-conv.bias"}
        return keys

    hits = {layout: len(conv_keys(layout) & set(sd)) for layout in layouts}
    layout = max(hits, key=hits.get)
    if hits[layout] == 0:
        raise ValueError(
            "unrecognised VGG-Face state_dict layout: no conv1_1/conv5_3-style keys; first keys "
            f"{sorted(sd)[:8]}. Known layouts: conv1_1.weight (vgg_face_dag.pth), "
            "conv_1_1.weight, features.conv_1_1.weight, features.0.weight (torchvision)"
        )
    conv_key, fc_key, default_channels = layouts[layout]

    convs, used, missing = {}, set(), []
    for name, c_in, c_out in CONV_LAYERS:
        key = conv_key(name)
        if layout == "pyvggface" and name == "conv2_2" and f"{key}.weight" not in sd:
            key = "features.conv_2_2-conv"
        leaves = []
        for leaf in ("weight", "bias"):
            if f"{key}.{leaf}" not in sd:
                missing.append(f"{key}.{leaf}")
            else:
                leaves.append(_to_numpy(sd[f"{key}.{leaf}"]))
                used.add(f"{key}.{leaf}")
        if len(leaves) == 2:
            weight = _fit(leaves[0], (c_out, c_in, 3, 3), f"{key}.weight (OIHW)")
            convs[name] = (weight.transpose(2, 3, 1, 0), leaves[1])
    fc_present = [n for n in _FC_NAMES if f"{fc_key(n)}.weight" in sd]
    used |= {f"{fc_key(n)}.{leaf}" for n in _FC_NAMES for leaf in ("weight", "bias")}
    unknown = sorted(set(sd) - used)
    if missing or unknown:
        raise ValueError(
            f"state_dict does not match the {layout} VGG-16 layout:"
            + (f"\n  missing: {missing}" if missing else "")
            + (f"\n  unknown: {unknown}" if unknown else "")
        )
    channels = _resolve_channels(source_channels, default_channels, layout)
    fc8 = f"{fc_key('fc8')}.weight"
    fc8_outputs = int(np.shape(sd[fc8])[0]) if fc8 in sd else None
    return _finish(
        convs,
        layout=layout,
        channels=channels,
        fc8_outputs=fc8_outputs,
        check_vgg_face=check_vgg_face,
        ignored=tuple(fc_present),
        notes=[],
    )


def _load_torch(path: pathlib.Path) -> Any:
    try:
        import torch  # deferred: torch is optional (the test extra)
    except ImportError as e:  # torch is not a dependency of the package
        raise ImportError(
            f"reading the PyTorch file {path} needs torch (pip install torch); or convert the "
            "MatConvNet .mat release instead"
        ) from e
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses anything but tensors and containers
        raise ValueError(
            f"{path} could not be read as a PyTorch state_dict with weights_only=True ({e})"
        ) from e


# ----------------------------------------------------------------------------- MatConvNet


def _field(struct: Any, name: str, default: Any = None) -> Any:
    return getattr(struct, name, default) if struct is not None else default


def _string(x: Any) -> str:
    return str(np.asarray(x).item()) if np.size(x) == 1 else str(x)


def _mat_mean_notes(data: Mapping[str, Any], check_vgg_face: bool) -> list[str]:
    normalization = _field(data.get("meta"), "normalization")
    if normalization is None:  # pre-beta17 SimpleNN files keep it at the top level
        normalization = data.get("normalization")
    average = _field(normalization, "averageImage")
    if average is None or np.size(average) == 0:
        return ["no meta.normalization.averageImage in the file: mean not checked"]
    average = np.asarray(average, np.float64)
    if average.ndim == 3:  # a full average image: its per-channel mean
        average = average.mean(axis=(0, 1))
    average = average.ravel()
    mean = np.asarray(VGG_FACE_MEAN_RGB)
    if average.size == 3 and np.allclose(average, mean, atol=1e-3):
        return [f"averageImage {np.round(average, 4).tolist()} = VGG-Face mean, RGB order"]
    if check_vgg_face:
        hint = (
            " (it is the VGG-Face mean in BGR order, unexpected for MatConvNet)"
            if average.size == 3 and np.allclose(average, mean[::-1], atol=1e-3)
            else ""
        )
        raise ValueError(
            f"the file's meta.normalization.averageImage {np.round(average, 4).tolist()} is "
            f"not VGG-Face's RGB mean {list(VGG_FACE_MEAN_RGB)}{hint}; is this VGG-Face? Pass "
            "check_vgg_face=False (--skip-vgg-face-check) to convert it anyway"
        )
    return [f"averageImage {np.round(average, 4).tolist()} differs from VGG-Face (not checked)"]


def _dagnn_convs(params: Any) -> tuple[dict, dict, list[str], list[str]]:
    values = {}
    for p in np.atleast_1d(params):
        values[_string(_field(p, "name"))] = _field(p, "value")
    convs, missing = {}, []
    for name in _CONV_NAMES:
        if f"{name}f" in values and f"{name}b" in values:
            convs[name] = (values[f"{name}f"], values[f"{name}b"])
        else:
            missing += [k for k in (f"{name}f", f"{name}b") if k not in values]
    known = {f"{n}{s}" for n in _CONV_NAMES + _FC_NAMES for s in "fb"}
    unknown = sorted(set(values) - known)
    fcs = {n: values[f"{n}f"] for n in _FC_NAMES if f"{n}f" in values}
    return convs, fcs, missing, unknown


def _simplenn_convs(layers: Any) -> tuple[dict, dict, list[str], list[str]]:
    convs, fcs, unknown = {}, {}, []
    for layer in np.atleast_1d(layers):
        if _string(_field(layer, "type", "")) != "conv":
            continue
        name = _string(_field(layer, "name", "?"))
        weights = _field(layer, "weights")
        if weights is not None and np.size(weights) == 2:
            filters, biases = np.atleast_1d(weights)
        else:  # pre-beta17 SimpleNN files
            filters, biases = _field(layer, "filters"), _field(layer, "biases")
        if filters is None or biases is None:
            raise ValueError(f"SimpleNN conv layer {name!r} has no filters/biases")
        if name in _CONV_NAMES:
            convs[name] = (filters, biases)
        elif name in _FC_NAMES:
            fcs[name] = filters
        else:
            unknown.append(name)
    missing = [n for n in _CONV_NAMES if n not in convs]
    return convs, fcs, missing, unknown


def convert_matconvnet(
    path: str | os.PathLike, *, source_channels: str = "auto", check_vgg_face: bool = True
) -> ConvertedVGGFace:
    """Converts a MatConvNet VGG-Face ``.mat`` (DagNN or SimpleNN) to Flax params."""

    path = pathlib.Path(path)
    try:
        data = loadmat(path, squeeze_me=True, struct_as_record=False, chars_as_strings=True)
    except NotImplementedError as e:  # scipy's answer to v7.3 files
        raise ValueError(
            f"{path} is a MATLAB v7.3 (HDF5) MAT-file, which scipy cannot read; re-save it in "
            "MATLAB with save(..., '-v7') or convert vgg_face_dag.pth instead"
        ) from e
    if "params" in data:
        layout = "matconvnet-dagnn"
        convs, fcs, missing, unknown = _dagnn_convs(data["params"])
    elif "layers" in data:
        layout = "matconvnet-simplenn"
        convs, fcs, missing, unknown = _simplenn_convs(data["layers"])
    else:
        keys = sorted(k for k in data if not k.startswith("__"))
        raise ValueError(
            f"{path} is neither a MatConvNet DagNN (no 'params') nor SimpleNN (no 'layers') "
            f"network; top-level variables: {keys}"
        )
    if missing or unknown:
        raise ValueError(
            f"{path} does not match the {layout} VGG-16 layout:"
            + (f"\n  missing: {missing}" if missing else "")
            + (f"\n  unknown parameter layers: {unknown}" if unknown else "")
        )
    notes = _mat_mean_notes(data, check_vgg_face)
    channels = _resolve_channels(source_channels, "rgb", layout)
    return _finish(
        convs,
        layout=layout,
        channels=channels,
        fc8_outputs=int(np.shape(fcs["fc8"])[-1]) if "fc8" in fcs else None,
        check_vgg_face=check_vgg_face,
        ignored=tuple(fcs),
        notes=notes,
    )


# ----------------------------------------------------------------------------- any file


def sniff_format(path: str | os.PathLike) -> str:
    """``"mat"``, ``"torch"``, or ``ValueError`` for formats we know but do not read."""
    path = pathlib.Path(path)
    with open(path, "rb") as f:
        head = f.read(128)
    if head.startswith(b"MATLAB"):
        return "mat"
    # torch >= 1.6 writes a zip archive; older torch (vgg_face_dag.pth) a pickle stream.
    pickled = len(head) > 1 and head[0] == 0x80 and head[1] in (2, 3, 4, 5)
    if head.startswith(b"PK\x03\x04") or pickled:
        return "torch"
    if path.suffix.lower() == ".t7":
        raise ValueError(
            f"{path}: Lua Torch .t7 files are not read (they need a Lua deserialiser); use "
            "vgg_face_dag.pth or the MatConvNet .mat release"
        )
    if path.suffix.lower() == ".caffemodel":
        raise ValueError(
            f"{path}: Caffe .caffemodel files are not read; use vgg_face_dag.pth or the "
            "MatConvNet .mat release"
        )
    raise ValueError(
        f"{path}: not a MAT-file or a PyTorch file (first bytes {head[:8]!r}); expected "
        "vgg_face_dag.pth, vgg_face_dag.mat or vgg-face.mat"
    )


def convert_vgg_face(
    path: str | os.PathLike, *, source_channels: str = "auto", check_vgg_face: bool = True
) -> ConvertedVGGFace:
    """Converts any supported VGG-Face release file (see the module docstring)."""
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    kwargs = {"source_channels": source_channels, "check_vgg_face": check_vgg_face}
    if sniff_format(path) == "mat":
        return convert_matconvnet(path, **kwargs)
    return convert_state_dict(_load_torch(path), **kwargs)
