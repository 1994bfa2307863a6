"""Helen face parsing in the SmithCVPR2013 layout (Smith et al., CVPR 2013).

Layout (``SmithCVPR2013_dataset_resized``)::

    root/images/<name>.jpg
    root/labels/<name>/<name>_lbl00.png … <name>_lbl10.png   # one soft map per class
    root/exemplars.txt  (train, 2000)   tuning.txt (val, 230)   testing.txt (test, 100)

Split files hold lines ``"<index> , <name>"``. The eleven grayscale maps are per-class
memberships in the order of docs/design.md §2 (00 background, 01 skin, 02 left brow, 03 right
brow, 04 left eye, 05 right eye, 06 nose, 07 upper lip, 08 inner mouth, 09 lower lip,
10 hair), so the label map is their per-pixel argmax; ties go to the lower class
(all-zero pixels are background). Helen images vary in size; the pipeline crops them.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
from PIL import Image

from facedeblur_jax.core.imageio import ImageError
from facedeblur_jax.data import records, validate
from facedeblur_jax.data.labels import NUM_CLASSES

NUM_PARTS = 11
SPLIT_FILES = {"train": "exemplars.txt", "val": "tuning.txt", "test": "testing.txt"}


def read_split_file(path: pathlib.Path) -> list[str]:
    """Names in a Helen split file (lines ``"<index> , <name>"``; blank lines ignored)."""
    if not path.is_file():
        raise FileNotFoundError(f"Helen split file {str(path)!r} not found")
    names = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 2 or not fields[1] or "/" in fields[1] or fields[1].startswith("."):
            raise ValueError(f"{str(path)!r} line {lineno}: expected '<index> , <name>'")
        names.append(fields[1])
    return names


def part_paths(root: pathlib.Path, name: str) -> tuple[str, ...]:
    """The eleven per-class label files of image ``name``, class order."""
    return tuple(str(root / "labels" / name / f"{name}_lbl{k:02d}.png") for k in range(NUM_PARTS))


def read_labels(
    paths: tuple[str, ...], image: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Argmax of the eleven soft maps -> ``uint8[H, W]``; each map must match the image."""
    maps = []
    for path in paths:
        try:
            with Image.open(path) as im:
                im.load()
                maps.append(np.asarray(im.convert("L"), dtype=np.uint8))
        except FileNotFoundError:
            raise
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageError(f"cannot read Helen label map {path!r}: {e}") from e
        if maps[-1].shape != image.shape[:2]:
            raise validate.LabelError(
                f"Helen label map {path!r} is {maps[-1].shape} but its image is "
                f"{image.shape[:2]} (label maps are never resized to fit)"
            )
    labels = np.argmax(np.stack(maps), axis=0).astype(np.uint8)
    validate.check_labels_array(labels, image.shape[:2], num_classes, paths[0])
    return image, labels


def helen_source(
    root: str | os.PathLike,
    split: str,
    *,
    verify: str = "header",
    num_classes: int = NUM_CLASSES,
) -> records.ImageSource:
    """Helen ``split`` (``"train"``, ``"val"``, ``"test"`` or ``"all"``) in split-file order.

    Images listed but missing or unreadable are skipped with a warning; an image whose
    label maps are missing, unreadable or a different size keeps its image, without
    labels, also with a warning.
    """
    root = pathlib.Path(root)
    if not (root / "images").is_dir():
        raise FileNotFoundError(f"Helen image folder {str(root / 'images')!r} not found")
    if split == "all":
        files = [read_split_file(root / s) for s in SPLIT_FILES.values()]
        names = list(dict.fromkeys(n for names in files for n in names))
    elif split in SPLIT_FILES:
        names = read_split_file(root / SPLIT_FILES[split])
    else:
        raise ValueError(f"Helen has splits {(*SPLIT_FILES, 'all')}; got {split!r}")

    def check_labels(header, image, labels):
        for path in labels:
            part = validate.read_header(path)
            if part.hw != header.hw:
                raise validate.LabelError(
                    f"label map {path!r} is {part.height}×{part.width} but its image "
                    f"is {header.height}×{header.width}"
                )
        if verify == "decode":
            read_labels(labels, np.zeros((*header.hw, 3), np.uint8), num_classes)

    listed = ((name, root / "images" / f"{name}.jpg", part_paths(root, name)) for name in names)
    return records.scan_listed(
        f"Helen {str(root)!r} split {split!r}",
        listed,
        check_labels=check_labels,
        label_reader=read_labels,
        num_classes=num_classes,
        verify=verify,
    )
