"""Face sources over plain image folders: every image under a folder, or the files a
``labels.csv`` lists (the layout of the bundled sample faces).

Parsing labels mirror the image tree: for ``root/train/id00_0000.png`` the label map is
``label_root/train/id00_0000.png`` (one index PNG, :func:`records.read_index_labels`).
Identities come from ``root/labels.csv`` (``split,file,identity``). Files are checked once
when the source is built (``validate.py`` describes the policy).
"""

from __future__ import annotations

import os
import pathlib

from facedeblur_jax.core import sample_data
from facedeblur_jax.core.imageio import IMAGE_SUFFIXES, ImageError
from facedeblur_jax.data import records, validate
from facedeblur_jax.data.labels import NUM_CLASSES

METADATA_FILES = frozenset({"labels.csv", "README.md", "README.txt"})


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


def identity_table(root: pathlib.Path) -> tuple[tuple[str, ...], dict[str, int]]:
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
) -> records.ImageSource:
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
        identities, identity_of = identity_table(root)
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
    source = records.ImageSource(
        entries, identities=identities, num_classes=num_classes, description=report.what
    )
    report.summarize(len(source), source.num_labelled)
    return source


def _scanned_entry(
    path, root, labels, verify, num_classes, report, identity
) -> records.Entry | None:
    """The :class:`records.Entry` of an image file whose header (or decode) checks out, or ``None``
    after reporting why it is skipped."""
    try:
        header = validate.check_image(path, verify)
    except ImageError as e:
        report.skip(path, str(e))
        return None
    report.note_mode(header.mode)
    return records.Entry(
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
) -> records.ImageSource:
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
    source = records.ImageSource(
        entries, identities=identities, num_classes=num_classes, description=report.what
    )
    report.summarize(len(source), source.num_labelled)
    return source
