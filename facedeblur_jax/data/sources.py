"""Random-access face sources for grain: ``len(source)`` and ``source[i] -> record``.

A record is a dict::

    {"image": uint8[H, W, 3],   # RGB, any size (the pipeline resizes / crops)
     "labels": uint8[H, W],     # parsing labels, DESIGN.md §2 classes 0..10; absent if none
     "identity": int,           # index into ``source.identities``; absent if unknown
     "name": str}               # e.g. "train/id00_0000", unique within the source

Sources (``config.data.source``):

- ``"folder"``: every image under ``root/<split>`` (``split="all"``: under ``root``), in
  sorted path order; labels from ``label_root/<same relative path>.png`` when that file
  exists; identities from ``root/labels.csv`` (``split,file,identity``) when present.
- ``"faces"``: the project's face set (``../shared/data/faces`` beside the checkout by
  default): the files ``labels.csv`` lists for the split, with their identities.
- ``"sample"``: the 200 faces bundled in ``facedeblur_jax/assets/faces``.
- ``"helen"``: Helen in the SmithCVPR2013 layout (``helen.py``).
- ``"celebamask"``: CelebAMask-HQ (``celebamask.py``).
- ``"tfds"``: an ArrayRecord dataset written by ``tfds_builder.py``.

Parsing labels mirror the image tree: for ``root/train/id00_0000.png`` the label map is
``label_root/train/id00_0000.png``; ``label_root=""`` uses ``root/labels`` if it exists.
Files are checked once when the source is built (``validate.py`` describes the policy);
``source[i]`` decodes on demand and raises :class:`ImageError` naming a file that fails.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from facedeblur_jax import sample_data
from facedeblur_jax.data import validate
from facedeblur_jax.data.labels import NUM_CLASSES
from facedeblur_jax.imageio import IMAGE_SUFFIXES, ImageError

SOURCES = ("sample", "faces", "folder", "helen", "celebamask", "tfds")
# The checkout's parent holds shared/data/faces (…/wt-data/facedeblur_jax/data/sources.py).
DEFAULT_FACES_ROOT = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "faces"
METADATA_FILES = frozenset({"labels.csv", "README.md", "README.txt"})


@dataclasses.dataclass(frozen=True)
class Entry:
    """One record before decoding: file paths and metadata, cheap to pickle."""

    name: str
    image: str
    labels: tuple[str, ...] = ()  # label file(s); their meaning depends on the source format
    identity: int | None = None


# A label reader turns an entry's label files into ``uint8[H, W]`` aligned with the image;
# it may resample the image to the label grid (CelebAMask-HQ's masks are half-size).
LabelReader = Callable[[tuple[str, ...], np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def read_index_labels(
    paths: tuple[str, ...], image: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """One single-channel index PNG per image, same size as the image."""
    (path,) = paths
    return image, validate.decode_label_map(path, image.shape[:2], num_classes)


@functools.cache
def _label_readers() -> dict[str, LabelReader]:
    from facedeblur_jax.data import celebamask, helen

    return {
        "index": read_index_labels,
        "helen": helen.read_labels,
        "celebamask": celebamask.read_labels,
    }


class ImageSource:
    """A grain random-access source over checked :class:`Entry` records.

    Args:
      entries: the records, in the order the source serves them.
      label_format: ``"index"`` | ``"helen"`` | ``"celebamask"`` (how label files read).
      identities: identity strings; ``record["identity"]`` indexes this tuple.
      num_classes: label values must be ``< num_classes``.
      description: for ``repr`` and messages.
    """

    def __init__(
        self,
        entries: Sequence[Entry],
        *,
        label_format: str = "index",
        identities: Sequence[str] = (),
        num_classes: int = NUM_CLASSES,
        description: str = "",
    ):
        if label_format not in ("index", "helen", "celebamask"):
            raise ValueError(f"unknown label_format {label_format!r}")
        self.entries = tuple(entries)
        self.label_format = label_format
        self.identities = tuple(identities)
        self.num_classes = int(num_classes)
        self.description = description

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"ImageSource({self.description!r}, {len(self)} records)"

    @property
    def num_labelled(self) -> int:
        return sum(bool(e.labels) for e in self.entries)

    def identity_name(self, identity: int) -> str:
        """The original identity string (``"id07"``) of ``record["identity"]``."""
        return self.identities[identity]

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Decodes record ``index``.

        Raises:
          IndexError: out of range.
          ImageError: the image file cannot be decoded (the message names it). A label
            file that cannot be used only drops ``labels`` from the record, with a warning.
        """
        index = int(index)
        if not 0 <= index < len(self.entries):
            raise IndexError(f"index {index} out of range for {len(self.entries)} records")
        entry = self.entries[index]
        image = validate.decode_image(entry.image)
        record: dict[str, Any] = {"image": image, "name": entry.name}
        if entry.identity is not None:
            record["identity"] = entry.identity
        if entry.labels:
            reader = _label_readers()[self.label_format]
            try:
                image, labels = reader(entry.labels, image, self.num_classes)
            except (ImageError, FileNotFoundError) as e:
                validate.LOG.warning("ignoring labels of %s: %s", entry.image, e)
            else:
                record["image"], record["labels"] = image, labels
        return record


def _relative_name(path: pathlib.Path, root: pathlib.Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def _inside(path: pathlib.Path, root: pathlib.Path) -> bool:
    path, root = path.resolve(), root.resolve()
    return path == root or root in path.parents


def find_index_labels(
    image: pathlib.Path,
    root: pathlib.Path,
    label_root: pathlib.Path | None,
    header: validate.Header,
    verify: str,
    num_classes: int,
    report: validate.ScanReport,
) -> tuple[str, ...]:
    """``(label_path,)`` if ``label_root`` mirrors ``image`` with a usable map, else ``()``."""
    if label_root is None:
        return ()
    path = label_root / image.relative_to(root).with_suffix(".png")
    if not path.is_file():
        report.labels_missing += 1
        return ()
    try:
        validate.check_label_map(path, header.hw, verify, num_classes)
    except (ImageError, FileNotFoundError) as e:
        report.drop_labels(image, str(e))
        return ()
    return (str(path),)


def _identity_table(root: pathlib.Path) -> tuple[tuple[str, ...], dict[str, int]]:
    """(identity names, ``{relative file: identity index}``) from ``root/labels.csv``."""
    rows = sample_data.read_labels_csv(root)
    names = tuple(sorted({r.identity for r in rows}))
    index = {n: i for i, n in enumerate(names)}
    return names, {r.path.relative_to(root).as_posix(): index[r.identity] for r in rows}


def _check_dir(path: pathlib.Path, what: str) -> pathlib.Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{what} {str(path)!r} not found")
    return path


def folder_source(
    root: str | os.PathLike,
    split: str = "all",
    *,
    label_root: str | os.PathLike | None = None,
    verify: str = "header",
    num_classes: int = NUM_CLASSES,
) -> ImageSource:
    """Every image under ``root/split`` (``"all"``: under ``root``), recursively, sorted.

    Non-image and unreadable files are skipped with one warning each; ``labels.csv`` and
    ``README`` files are metadata and skipped silently, as is anything under
    ``label_root`` when that lies inside ``root``.
    """
    root = _check_dir(pathlib.Path(root), "image folder")
    base = root if split in ("", "all") else _check_dir(root / split, f"split {split!r} folder")
    labels = None if label_root is None else _check_dir(pathlib.Path(label_root), "label folder")
    identities, identity_of = (), {}
    if (root / "labels.csv").is_file():
        identities, identity_of = _identity_table(root)
    report = validate.ScanReport(f"folder {str(base)!r}")
    entries = []
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        if labels is not None and _inside(path, labels):
            continue
        if path.name in METADATA_FILES:
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            report.skip(path, f"not an image file (suffix {path.suffix!r})")
            continue
        entry = _scanned_entry(
            path, root, labels, verify, num_classes, report,
            identity_of.get(path.relative_to(root).as_posix()),
        )  # fmt: skip
        if entry is not None:
            entries.append(entry)
    source = ImageSource(
        entries, identities=identities, num_classes=num_classes, description=report.what
    )
    report.summarize(len(source), source.num_labelled)
    return source


def _scanned_entry(path, root, labels, verify, num_classes, report, identity) -> Entry | None:
    """The :class:`Entry` of an image file whose header (or decode) checks out, or ``None``
    after reporting why it is skipped."""
    try:
        header = validate.check_image(path, verify)
    except ImageError as e:
        report.skip(path, str(e))
        return None
    report.note_mode(header.mode)
    return Entry(
        name=_relative_name(path, root),
        image=str(path),
        labels=find_index_labels(path, root, labels, header, verify, num_classes, report),
        identity=identity,
    )


def faces_source(
    root: str | os.PathLike,
    split: str,
    *,
    label_root: str | os.PathLike | None = None,
    verify: str = "header",
    num_classes: int = NUM_CLASSES,
) -> ImageSource:
    """The files ``root/labels.csv`` lists for ``split`` (``"all"``: every row), sorted.

    Identities are indices into the sorted identity strings of the whole CSV, so train
    and test share one numbering. Listed files that are missing, outside ``root`` or
    unreadable are skipped with one warning each.
    """
    root = _check_dir(pathlib.Path(root), "face set root")
    labels = None if label_root is None else _check_dir(pathlib.Path(label_root), "label folder")
    rows = sample_data.read_labels_csv(root)  # FileNotFoundError names labels.csv
    identities = tuple(sorted({r.identity for r in rows}))
    identity_index = {n: i for i, n in enumerate(identities)}
    rows = [r for r in rows if split in ("", "all") or r.split == split]
    if not rows:
        raise ValueError(f"{str(root / 'labels.csv')!r} lists no files for split {split!r}")
    report = validate.ScanReport(f"faces {str(root)!r} split {split!r}")
    entries = []
    for row in rows:
        path = row.path
        if not _inside(path, root):
            report.skip(path, "labels.csv points outside the dataset root")
            continue
        if not path.is_file():
            report.skip(path, "listed in labels.csv but missing")
            continue
        entry = _scanned_entry(
            path, root, labels, verify, num_classes, report, identity_index[row.identity]
        )
        if entry is not None:
            entries.append(entry)
    source = ImageSource(
        entries, identities=identities, num_classes=num_classes, description=report.what
    )
    report.summarize(len(source), source.num_labelled)
    return source


def _default_label_root(root: pathlib.Path) -> pathlib.Path | None:
    return root / "labels" if (root / "labels").is_dir() else None


def make_source(data_cfg, split: str, *, num_classes: int = NUM_CLASSES):
    """The source ``data_cfg.source`` names, for ``split``.

    Args:
      data_cfg: the config's ``data`` section (``configs/paper.py``).
      split: ``"train"``, ``"test"``, ``"val"`` (Helen, CelebAMask-HQ) or ``"all"``.
      num_classes: label values must be ``< num_classes`` (``config.model.num_classes``).

    Returns:
      A grain random-access source (``__len__``, ``__getitem__`` -> record dict).

    Raises:
      FileNotFoundError: the root, a split folder or an index file is missing (named).
      ValueError: an unknown source or a key the source cannot use.
    """
    kind = data_cfg.source
    if kind not in SOURCES:
        raise ValueError(f"unknown data source {kind!r}; expected one of {SOURCES}")
    if data_cfg.verify not in validate.VERIFY_MODES:
        raise ValueError(
            f"data.verify must be one of {validate.VERIFY_MODES}; got {data_cfg.verify!r}"
        )
    root = pathlib.Path(data_cfg.root) if data_cfg.root else None
    label_root = pathlib.Path(data_cfg.label_root) if data_cfg.label_root else None
    common = dict(verify=data_cfg.verify, num_classes=num_classes)
    if kind in ("helen", "celebamask", "tfds") and label_root is not None:
        raise ValueError(f"data.label_root is not used by the {kind!r} source; leave it ''")
    if kind == "sample":
        if root is not None:
            raise ValueError("the 'sample' source has a fixed root; use source='faces' with root")
        root = sample_data.SAMPLE_FACES
        return faces_source(
            root, split, label_root=label_root or _default_label_root(root), **common
        )
    if kind == "faces":
        root = root or DEFAULT_FACES_ROOT
        if not root.is_dir():
            raise FileNotFoundError(
                f"face set root {str(root)!r} not found (set config.data.root to the folder "
                "holding labels.csv, train/ and test/)"
            )
        return faces_source(
            root, split, label_root=label_root or _default_label_root(root), **common
        )
    if root is None:
        raise ValueError(f"data.root must name the dataset folder for source {kind!r}")
    if kind == "folder":
        return folder_source(root, split, label_root=label_root, **common)
    if kind == "helen":
        from facedeblur_jax.data import helen

        return helen.helen_source(root, split, **common)
    if kind == "celebamask":
        from facedeblur_jax.data import celebamask

        return celebamask.celebamask_source(root, split, **common)
    from facedeblur_jax.data import tfds_builder

    return tfds_builder.TfdsSource(root, data_cfg.tfds_name, split, num_classes=num_classes)
