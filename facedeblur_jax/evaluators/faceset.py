"""The faces an evaluation scores: a split of a data source, read once, at the model's size.

``facedeblur eval --data SPEC`` names the faces (:func:`data_spec`); during training the
``config.evals`` entries name a split of the training config's own source. Either way
:func:`load_faces` reads the records in source order through
``data.pipeline.make_eval_batches`` (the model's ``image_size`` and ``data.resize``
policy), optionally ``max_faces`` of them spread evenly over the split
(:func:`spread_indices`), and returns a :class:`FaceSet`. Records that fail to decode are
dropped with a warning.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping, Sequence

import ml_collections
import numpy as np

from facedeblur_jax.core import imageio
from facedeblur_jax.data.pipeline import make_eval_batches
from facedeblur_jax.data.sources import make_source


class NoFacesError(ValueError):
    """A split holds no faces (of the identities asked for)."""


@dataclasses.dataclass
class FaceSet:
    """Faces at the model's size.

    Attributes:
      images: ``uint8[N, S, S, 3]``.
      identities: ``i32[N]`` (``-1`` unknown).
      names: N record names (``"test/id00_0000"``).
      index: ``i32[N]`` position of each face in its whole split (the noise key uses it, so
        a face gets the same blurred input in a ``--max-faces`` run as in the full run).
      split_identities: the identities of the whole split (not only of these faces).
      split_size: number of records in the whole split.
      labels: ``uint8[N, S, S]`` parsing labels (zeros where a face has none).
      has_labels: ``bool[N]``: the face has a parsing label map.
    """

    images: np.ndarray
    identities: np.ndarray
    names: list[str]
    index: np.ndarray
    split_identities: tuple[int, ...] = ()
    split_size: int = 0
    labels: np.ndarray | None = None
    has_labels: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


def data_spec(spec: str) -> tuple[dict[str, str], str, str | None]:
    """``--data`` → (``data`` config overrides, test split, gallery split or ``None``).

    ``"sample"``: the bundled faces; ``"faces"``: the ``faces`` data source at its default
    root; anything else: an image folder — its ``test/`` and ``train/`` subfolders when it
    has a ``test/`` folder, else every image under it (and no gallery). Identities come
    from ``labels.csv`` where there is one, parsing labels from ``<folder>/labels``.
    """
    if spec in ("sample", "faces"):
        return {"source": spec, "root": "", "label_root": ""}, "test", "train"
    root = pathlib.Path(spec).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"--data {spec!r} is neither 'sample', 'faces' nor an existing folder"
        )
    root = root.resolve()
    labels = root / "labels"
    cfg = {
        "source": "folder",
        "root": str(root),
        "label_root": str(labels) if labels.is_dir() else "",
    }
    if (root / "test").is_dir():
        return cfg, "test", "train" if (root / "train").is_dir() else None
    return cfg, "all", None


def data_config(
    config: ml_collections.ConfigDict, overrides: Mapping[str, str]
) -> ml_collections.ConfigDict:
    """A copy of ``config`` with ``data`` keys overridden, decoding in this process."""
    cfg = config.copy_and_resolve_references()
    with cfg.unlocked():
        for k, v in overrides.items():
            cfg.data[k] = v
        cfg.data.num_workers = 0
    return cfg


def spread_indices(total: int, count: int | None) -> np.ndarray:
    """``count`` indices spread evenly over ``range(total)`` (all of them if ``count`` is
    ``None`` or ``>= total``): ``⌊i · total / count⌋``, so every identity of a split sorted by
    identity is represented, not only the first few."""
    if count is None or count >= total:
        return np.arange(total)
    return np.arange(count) * total // count


class _Subset:
    """``source`` restricted to ``indices``; remembers which of them failed to decode."""

    def __init__(self, source, indices: np.ndarray):
        self.source, self.indices, self.failed = source, [int(i) for i in indices], set()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        try:
            return self.source[self.indices[i]]
        except imageio.ImageError:
            self.failed.add(self.indices[i])
            raise


def load_faces(
    config: ml_collections.ConfigDict,
    overrides: Mapping[str, str],
    split: str,
    *,
    max_faces: int | None = None,
    identities: Sequence[int] | None = None,
    batch_size: int = 64,
) -> FaceSet:
    """The records of ``split`` at ``config.image_size``, in source order.

    Args:
      config: the model's config (``image_size``, ``data.*``, ``model.num_classes``).
      overrides: ``data`` keys from :func:`data_spec` (``{}``: the config's own source).
      split: split to read.
      max_faces: ``max_faces`` records spread evenly over the split
        (:func:`spread_indices`); ``None``: all.
      identities: keep only records of these identities (the recognition gallery).
      batch_size: records per decoding batch.

    Records that fail to decode are dropped with a warning (``make_eval_batches``).
    """

    if max_faces is not None and max_faces < 1:
        raise ValueError(f"max_faces must be >= 1; got {max_faces}")
    cfg = data_config(config, overrides)
    source = make_source(cfg.data, split, num_classes=int(cfg.model.num_classes))
    subset = _Subset(source, spread_indices(len(source), max_faces))
    wanted = None if identities is None else {int(i) for i in identities}
    images, labels, has_labels, ids, names = [], [], [], [], []
    for batch in make_eval_batches(cfg, split, batch_size, source=subset):
        for i in np.flatnonzero(batch["valid"]):
            images.append(batch["image"][i])
            labels.append(batch["labels"][i])
            has_labels.append(bool(batch["has_labels"][i]))
            ids.append(int(batch["identity"][i]))
            names.append(str(batch["name"][i]))
    index = [j for j in subset.indices if j not in subset.failed]
    if len(index) != len(images):
        raise RuntimeError(f"read {len(images)} records but expected {len(index)}")
    entries = getattr(source, "entries", None)
    if entries is not None:
        every = {e.identity for e in entries if e.identity is not None}
    else:
        every = {i for i in ids if i >= 0}
    keep = [t for t, i in enumerate(ids) if wanted is None or i in wanted]
    if not keep:
        raise NoFacesError(f"no faces in split {split!r} of {dict(overrides) or 'the config'}")
    return FaceSet(
        images=np.stack([images[t] for t in keep]),
        identities=np.asarray([ids[t] for t in keep], np.int32),
        names=[names[t] for t in keep],
        index=np.asarray([index[t] for t in keep], np.int32),
        split_identities=tuple(sorted(int(i) for i in every)),
        split_size=len(source),
        labels=np.stack([labels[t] for t in keep]),
        has_labels=np.asarray([has_labels[t] for t in keep], bool),
    )
