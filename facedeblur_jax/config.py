"""Loading, overriding and validating experiment configs.

Configs are Python files with a ``get_config()`` returning an ``ml_collections.ConfigDict``
(big_vision style). The built-in ones live in the package, ``facedeblur_jax/configs/``;
``paper.py`` there defines every key that exists; a config or an override that introduces
any other key is an error naming the key, so a typo such as ``model.featurs`` never
silently trains the default model.

``--config`` (:func:`load_config`) takes a built-in name (``paper``), a config file
(``path/to/my_config.py``), or ``configs/NAME.py``: the form the docs use, which names the
built-in ``NAME`` when no such file exists (run from anywhere, not only a checkout).
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from facedeblur_jax.configs import paper

BUILTIN = (
    "paper",
    "demo",
    "tiny",
    "gpu_short",
    "cpu_study",
    "cvpr18",
)  # the files of facedeblur_jax/configs/
CONFIG_DIR = pathlib.Path(__file__).resolve().parent / "configs"


def reference_config() -> ml_collections.ConfigDict:
    """The schema: the built-in ``paper`` config (``facedeblur_jax/configs/paper.py``)."""

    return paper.get_config()


def _flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping | ml_collections.ConfigDict):
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _unknown(keys: Iterable[str], known: Iterable[str], what: str) -> None:
    """Raises ``ValueError`` for the first of ``keys`` not in ``known`` (schema keys), with
    a suggestion (:func:`suggest`)."""
    known = list(known)
    for key in keys:
        if _schema_key(key) not in known:
            raise ValueError(f"unknown {what} key {key!r}{suggest(key, known)}")


# Suggestions list at most this many keys of a section.
_MAX_LISTED = 20


def suggest(key: str, known: Sequence[str]) -> str:
    """A hint for an unknown ``key`` (`` (did you mean ...?)`` or the keys there are),
    given the schema's keys ``known`` (phases as ``phases.coarse.*``):

    1. a key of the same section whose last part is close to ``key``'s (a typo:
       ``model.featurs``) or that contains it (``degrade.noise`` -> ``degrade.noise_sigma``);
    2. keys of other sections with the same last part (``train.steps`` ->
       ``phases.<name>.steps``, one per phase);
    3. else every key of that section (at most 20), or the sections when there is none.
    """
    phase = None
    if key.startswith(_PHASE_PREFIX) and key.count(".") >= 2:
        phase = key.split(".")[1]

    def shown(schema_key: str) -> str:
        if schema_key.startswith(_PHASE_TEMPLATE):
            rest = schema_key[len(_PHASE_TEMPLATE) :]
            return f"phases.{phase}.{rest}" if phase else f"phases.<name>.{rest}"
        return schema_key

    known = sorted({_schema_key(k) for k in known})
    parent, _, leaf = _schema_key(key).rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in known if k.rpartition(".")[0] == parent}
    close = difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.75)
    if not close and len(leaf) >= 4:
        close = [s for s in sorted(siblings) if leaf in s or (len(s) >= 4 and s in leaf)][:1]
    if close:
        return f" (did you mean {shown(siblings[close[0]])!r}?)"
    elsewhere = sorted({shown(k) for k in known if k.rpartition(".")[2] == leaf})
    if elsewhere:
        names = " or ".join(repr(k) for k in elsewhere[:3])
        per_phase = any("<name>" in k for k in elsewhere)
        example = (
            f", one per phase, e.g. {shown(_PHASE_TEMPLATE + leaf).replace('<name>', 'coarse')!r}"
        )
        return f" (did you mean {names}{example if per_phase else ''}?)"
    if parent in known:
        return f"; {shown(parent)!r} is a value, not a section (--config.{shown(parent)}=VALUE)"
    sections = sorted({k.split(".")[0] for k in known if "." in k})
    if not parent:
        return f"; the top-level keys are {', '.join(sorted(siblings))} and the sections " + (
            ", ".join(sections)
        )
    if siblings:
        listed = sorted(shown(k) for k in siblings.values())
        more = f", ... ({len(listed)} keys)" if len(listed) > _MAX_LISTED else ""
        return (
            f"; the keys under '{shown(parent + '.')}' are {', '.join(listed[:_MAX_LISTED])}{more}"
        )
    return f"; the config's sections are {', '.join(sections)}"


# Phases may have any name (``phases.scratch`` for an ablation); each has the keys of the
# reference's ``phases.coarse``.
_PHASE_PREFIX, _PHASE_TEMPLATE = "phases.", "phases.coarse."


def _schema_key(key: str) -> str:
    """Maps ``phases.<any name>.<rest>`` onto the reference phase's ``phases.coarse.<rest>``."""
    if key.startswith(_PHASE_PREFIX) and key.count(".") >= 2:
        return _PHASE_TEMPLATE + key.split(".", 2)[2]
    return key


def _known_keys() -> list[str]:
    return list(_flatten(reference_config()))


def validate(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Raises ``ValueError`` naming the first key of ``cfg`` that the schema does not know."""
    known = set(_known_keys())
    for key in _flatten(cfg):
        if _schema_key(key) not in known:
            _unknown([key], sorted(known), "config")
    _check_image_size(cfg)
    return cfg


def _check_image_size(cfg: ml_collections.ConfigDict) -> None:
    """``image_size`` must survive G's scales and P's max-pools: one line naming the keys."""
    if "image_size" not in cfg or "model" not in cfg:
        return
    size, model = cfg.image_size, cfg.model
    needs = {}
    if "parsing_features" in model:
        needs["model.parsing_features"] = 2 ** (len(model.parsing_features) - 1)
    if "num_scales" in model:
        needs["model.num_scales"] = 2 ** (model.num_scales - 1)
    for key, factor in needs.items():
        if size % factor:
            raise ValueError(
                f"config key 'image_size' = {size} must be divisible by {factor} (set by {key}; "
                f"e.g. image_size = {max(factor, size // factor * factor)})"
            )


def _packaged(name: str):
    return importlib.import_module(f"facedeblur_jax.configs.{name}")


def _load_module(name_or_path: str):
    """The module of a built-in name, of ``configs/NAME.py`` (a built-in ``NAME`` unless
    that file exists), or of any other config file."""
    if name_or_path in BUILTIN:
        return _packaged(name_or_path)
    path = pathlib.Path(name_or_path)
    if path.suffix == ".py" and path.stem in BUILTIN:
        documented = path.parts == ("configs", path.name) and not path.is_file()
        if documented or (path.is_file() and path.resolve().parent == CONFIG_DIR):
            # The packaged module is imported, not executed from a file, so that
            # ``from facedeblur_jax.configs import paper`` inside it resolves identically.
            return _packaged(path.stem)
    if not path.is_file():
        raise FileNotFoundError(
            f"config file {name_or_path!r} not found (built-in configs: {', '.join(BUILTIN)})"
        )
    spec = importlib.util.spec_from_file_location(f"_facedeblur_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_value(text: str) -> Any:
    """``"1e-4" -> 1e-4``, ``"(1, 2)" -> (1, 2)``, ``"bfloat16" -> "bfloat16"``."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def split_overrides(rest: Sequence[str]) -> dict[str, object]:
    """``["--config.a.b=1", "--config.c", "x"]`` -> ``{"a.b": 1, "c": "x"}`` (big_vision's
    override form; each value read by :func:`parse_value`).

    Raises:
      ValueError: an argument of another form, or an override without a value (named).
    """
    out: dict[str, object] = {}
    items = list(rest)
    while items:
        arg = items.pop(0)
        if not arg.startswith("--config."):
            raise ValueError(f"unrecognised argument {arg!r}")
        key = arg[len("--config.") :]
        if "=" in key:
            key, value = key.split("=", 1)
        elif items:
            value = items.pop(0)
        else:
            raise ValueError(f"{arg} needs a value")
        out[key] = parse_value(value)
    return out


def apply_overrides(
    cfg: ml_collections.ConfigDict, overrides: Mapping[str, Any]
) -> ml_collections.ConfigDict:
    """Sets dotted keys (``{"model.features": 16}``); unknown keys raise ``ValueError``."""
    known = set(_known_keys())
    for key, value in overrides.items():
        if _schema_key(key) not in known:
            _unknown([key], sorted(known), "config override")
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            if p not in node:  # a new phase: start from the reference phase's defaults
                with cfg.unlocked():
                    node[p] = reference_config().phases.coarse
            node = node[p]
        value = _typed(key, node[leaf], value)
        with cfg.unlocked():
            node[leaf] = value
    return cfg


def _typed(key: str, current: Any, value: Any) -> Any:
    """``value`` as the type of the key's current value, or ``ValueError`` naming the key,
    the expected type and the value. ``None`` on either side is accepted (``None``-valued
    keys take any type, and some keys use ``None`` as a setting); an integer may set a
    float key; a list sets a tuple key."""
    if current is None or value is None:
        return value
    is_bool = isinstance(value, bool | np.bool_)
    if isinstance(current, bool):
        ok, value = is_bool, bool(value) if is_bool else value
    elif isinstance(current, int):
        ok = isinstance(value, int | np.integer) and not is_bool
        value = int(value) if ok else value
    elif isinstance(current, float):
        ok = isinstance(value, int | float | np.integer | np.floating) and not is_bool
        value = float(value) if ok else value
    elif isinstance(current, tuple):
        ok = isinstance(value, tuple | list)
        value = tuple(value) if ok else value
    else:
        ok = isinstance(value, type(current))
    if not ok:
        raise ValueError(
            f"config key {key!r} expects {type(current).__name__} (like {current!r}); "
            f"got {value!r} ({type(value).__name__})"
        )
    return value


def load_config(
    name_or_path: str, overrides: Mapping[str, Any] | None = None
) -> ml_collections.ConfigDict:
    """Loads a built-in config by name or a config file by path, applies and validates."""
    module = _load_module(name_or_path)
    if not hasattr(module, "get_config"):
        raise ValueError(f"config {name_or_path!r} defines no get_config()")
    cfg = module.get_config()
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    return validate(cfg)
