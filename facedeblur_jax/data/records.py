"""The record every face source serves, and the random-access source over checked files.

A record is a dict::

    {"image": uint8[H, W, 3],   # RGB, any size (the pipeline resizes / crops)
     "labels": uint8[H, W],     # parsing labels, docs/design.md §2 classes 0..10; absent if none
     "identity": int,           # index into ``source.identities``; absent if unknown
     "name": str}               # e.g. "train/id00_0000", unique within the source

Each dataset format (``folders.py``, ``helen.py``, ``celebamask.py``) scans its files into
:class:`Entry` records and hands :class:`ImageSource` the function that reads its label
files (a :data:`LabelReader`), so this module imports none of them.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from facedeblur_jax.core.imageio import ImageError
from facedeblur_jax.data import validate
from facedeblur_jax.data.labels import NUM_CLASSES


@dataclasses.dataclass(frozen=True)
class Entry:
    """One record before decoding: file paths and metadata, cheap to pickle."""

    name: str
    image: str
    labels: tuple[str, ...] = ()  # label file(s); their meaning depends on the source format
    identity: int | None = None


# A label reader turns an entry's label files into ``uint8[H, W]`` aligned with the image;
# it may resample the image to the label grid (CelebAMask-HQ's masks are half-size). It
# must be a module-level function so that sources pickle into grain's worker processes.
LabelReader = Callable[[tuple[str, ...], np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def read_index_labels(
    paths: tuple[str, ...], image: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """One single-channel index PNG per image, same size as the image."""
    (path,) = paths
    return image, validate.decode_label_map(path, image.shape[:2], num_classes)


class ImageSource:
    """A grain random-access source over checked :class:`Entry` records.

    Args:
      entries: the records, in the order the source serves them.
      label_reader: how an entry's label files read (default: one index PNG per image).
      identities: identity strings; ``record["identity"]`` indexes this tuple.
      num_classes: label values must be ``< num_classes``.
      description: for ``repr`` and messages.
    """

    def __init__(
        self,
        entries: Sequence[Entry],
        *,
        label_reader: LabelReader = read_index_labels,
        identities: Sequence[str] = (),
        num_classes: int = NUM_CLASSES,
        description: str = "",
    ):
        if not callable(label_reader):
            raise TypeError(f"label_reader must be a function; got {label_reader!r}")
        self.entries = tuple(entries)
        self.label_reader = label_reader
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
            try:
                image, labels = self.label_reader(entry.labels, image, self.num_classes)
            except (ImageError, FileNotFoundError) as e:
                validate.LOG.warning("ignoring labels of %s: %s", entry.image, e)
            else:
                record["image"], record["labels"] = image, labels
        return record


def scan_listed(
    what: str,
    listed: Iterable[tuple[str, pathlib.Path, tuple[str, ...]]],
    *,
    check_labels: Callable[[validate.Header, pathlib.Path, tuple[str, ...]], None],
    label_reader: Callable[[Sequence[str], np.ndarray, int], np.ndarray],
    num_classes: int,
    verify: str = "header",
) -> ImageSource:
    """The source of a data set that lists its records (Helen's split files, CelebAMask-HQ's
    split indices), each ``(name, image path, label paths)``.

    An image that is listed but missing or unreadable is skipped; a record whose label maps
    are missing, unreadable or do not fit its image (``check_labels(header, image,
    labels)`` raises ``FileNotFoundError`` or ``ImageError``) keeps its image without
    labels; a record listing no label maps counts as unlabelled. Each is one warning line and
    counts in the summary line (``validate.ScanReport``) for ``what``.
    """
    report = validate.ScanReport(what)
    entries = []
    for name, image, labels in listed:
        if not image.is_file():
            report.skip(image, "listed in the split but missing")
            continue
        try:
            header = validate.check_image(image, verify)
        except ImageError as e:
            report.skip(image, str(e))
            continue
        report.note_mode(header.mode)
        if not labels:
            report.labels_missing += 1
        else:
            try:
                check_labels(header, image, labels)
            except FileNotFoundError as e:
                report.drop_labels(image, f"label map missing: {e.filename or e}")
                labels = ()
            except ImageError as e:
                report.drop_labels(image, str(e))
                labels = ()
        entries.append(Entry(name=name, image=str(image), labels=labels))
    source = ImageSource(
        entries, label_reader=label_reader, num_classes=num_classes, description=report.what
    )
    report.summarize(len(source), source.num_labelled)
    return source
