"""CelebAMask-HQ (Lee et al., CVPR 2020): per-part binary masks merged into 11 classes.

Layout::

    root/CelebA-HQ-img/<i>.jpg                                  # 1024×1024, i = 0…29999
    root/CelebAMask-HQ-mask-anno/<i // 2000>/<i:05d>_<part>.png  # 512×512, one per part
    root/CelebA-HQ-to-CelebA-mapping.txt                        # idx orig_idx orig_file
    root/list_eval_partition.txt                                # CelebA's: <orig_file> 0|1|2

Splits ``"train"``/``"val"``/``"test"`` follow CelebA's partition (0/1/2) of each image's
original CelebA file; the last file is CelebA's own and has to be placed in ``root`` by
hand. ``"all"`` needs neither file.

Merging follows the dataset's own ``g_mask.py``: parts are painted in its order, later
parts over earlier ones, mapped onto docs/design.md §2 — skin 1, l_brow 2, r_brow 3, l_eye 4,
r_eye 5, nose 6, u_lip 7, mouth 8, l_lip 9, hair 10; hat, ears, neck and cloth paint
background 0 (Helen's skin is the face only); eye glasses, earrings and necklaces are not
painted (the face under them keeps its class). A mask pixel is set where it is > 127.

The masks are half the image size by design, so the image is downsampled (Lanczos) to the
mask grid when it is an exact integer multiple of it; any other size mismatch drops the
labels with a warning.
"""

from __future__ import annotations

import collections
import os
import pathlib
import re

import numpy as np
from PIL import Image

from facedeblur_jax.core.imageio import ImageError
from facedeblur_jax.data import records, validate
from facedeblur_jax.data.labels import NUM_CLASSES

IMAGE_DIR = "CelebA-HQ-img"
MASK_DIR = "CelebAMask-HQ-mask-anno"
MAPPING_FILE = "CelebA-HQ-to-CelebA-mapping.txt"
PARTITION_FILE = "list_eval_partition.txt"
IMAGES_PER_MASK_FOLDER = 2000
SPLITS = {"train": 0, "val": 1, "test": 2}

# (part, class) in the paint order of CelebAMask-HQ's g_mask.py; None = not painted.
PAINT_ORDER = (
    ("skin", 1),
    ("nose", 6),
    ("eye_g", None),
    ("l_eye", 4),
    ("r_eye", 5),
    ("l_brow", 2),
    ("r_brow", 3),
    ("l_ear", 0),
    ("r_ear", 0),
    ("mouth", 8),
    ("u_lip", 7),
    ("l_lip", 9),
    ("hair", 10),
    ("hat", 0),
    ("ear_r", None),
    ("neck_l", None),
    ("neck", 0),
    ("cloth", 0),
)
PART_CLASS = dict(PAINT_ORDER)
_MASK_NAME = re.compile(r"^(\d{5})_([a-z_]+)\.png$")


def _read_table(path: pathlib.Path, columns: int, skip_header: bool) -> list[list[str]]:
    if not path.is_file():
        raise FileNotFoundError(
            f"CelebAMask-HQ split file {str(path)!r} not found (split='all' needs none)"
        )
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    rows = rows[1:] if skip_header else rows
    for lineno, row in enumerate(rows, 2 if skip_header else 1):
        if len(row) < columns:
            raise ValueError(f"{str(path)!r} line {lineno}: expected {columns} columns")
    return rows


def split_indices(root: pathlib.Path, split: str) -> list[int]:
    """CelebA-HQ indices of ``split`` via the mapping and CelebA's partition file."""
    mapping = _read_table(root / MAPPING_FILE, 3, skip_header=True)
    partition = {
        row[0]: int(row[1]) for row in _read_table(root / PARTITION_FILE, 2, skip_header=False)
    }
    wanted = SPLITS[split]
    return sorted(int(idx) for idx, _, orig in mapping if partition.get(orig) == wanted)


def mask_files(root: pathlib.Path) -> dict[int, list[pathlib.Path]]:
    """``{image index: [mask paths]}`` from one listing of each mask folder."""
    masks = collections.defaultdict(list)
    for folder in sorted((root / MASK_DIR).iterdir()):
        if not folder.is_dir():
            continue
        for name in sorted(os.listdir(folder)):
            match = _MASK_NAME.match(name)
            if match and match.group(2) in PART_CLASS:
                masks[int(match.group(1))].append(folder / name)
    return masks


def read_labels(
    paths: tuple[str, ...], image: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Paints the part masks into ``uint8[h, w]`` and resamples the image to ``[h, w]``."""
    by_part = {_MASK_NAME.match(pathlib.Path(p).name).group(2): p for p in paths}
    labels = None
    for part, cls in PAINT_ORDER:
        if part not in by_part:
            continue
        path = by_part[part]
        try:
            with Image.open(path) as im:
                im.load()
                mask = np.asarray(im.convert("L"), dtype=np.uint8) > 127
        except FileNotFoundError:
            raise
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageError(f"cannot read CelebAMask-HQ mask {path!r}: {e}") from e
        if labels is None:
            labels = np.zeros(mask.shape, np.uint8)
        if mask.shape != labels.shape:
            raise validate.LabelError(f"mask {path!r} is {mask.shape}; others are {labels.shape}")
        if cls is not None:
            labels[mask] = cls
    if labels is None:
        raise validate.LabelError(f"no usable part masks among {paths}")
    image = fit_image_to_masks(image, labels.shape, paths[0])
    validate.check_labels_array(labels, image.shape[:2], num_classes, paths[0])
    return image, labels


def check_multiple(image_hw: tuple[int, int], mask_hw: tuple[int, int], what: str) -> None:
    """:class:`LabelError` unless ``image_hw`` is ``k * mask_hw`` for one integer ``k``."""
    (h, w), (mh, mw) = image_hw, mask_hw
    if h % mh or w % mw or h // mh != w // mw:
        raise validate.LabelError(
            f"masks {what!r} are {mh}×{mw} but the image is {h}×{w}, not an integer multiple "
            "(label maps are never resized to fit)"
        )


def fit_image_to_masks(image: np.ndarray, mask_hw: tuple[int, int], what: str) -> np.ndarray:
    """Downsamples ``uint8[H, W, 3]`` to ``mask_hw`` if ``H, W`` are the same multiple of it."""
    check_multiple(image.shape[:2], mask_hw, what)
    if image.shape[:2] == tuple(mask_hw):
        return image
    mh, mw = mask_hw
    return np.asarray(Image.fromarray(image).resize((mw, mh), Image.LANCZOS))


def celebamask_source(
    root: str | os.PathLike,
    split: str,
    *,
    verify: str = "header",
    num_classes: int = NUM_CLASSES,
) -> records.ImageSource:
    """CelebAMask-HQ ``split`` in index order (records are at the mask resolution)."""
    root = pathlib.Path(root)
    for d in (IMAGE_DIR, MASK_DIR):
        if not (root / d).is_dir():
            raise FileNotFoundError(f"CelebAMask-HQ folder {str(root / d)!r} not found")
    if split == "all":
        indices = sorted(int(p.stem) for p in (root / IMAGE_DIR).glob("*.jpg") if p.stem.isdigit())
    elif split in SPLITS:
        indices = split_indices(root, split)
    else:
        raise ValueError(f"CelebAMask-HQ has splits {(*SPLITS, 'all')}; got {split!r}")
    masks = mask_files(root)

    def check_labels(header, image, labels):
        check_multiple(header.hw, validate.read_header(labels[0]).hw, labels[0])
        if verify == "decode":
            read_labels(labels, validate.decode_image(image), num_classes)

    listed = (
        (f"{idx:05d}", root / IMAGE_DIR / f"{idx}.jpg", tuple(str(p) for p in masks.get(idx, ())))
        for idx in indices
    )
    return records.scan_listed(
        f"CelebAMask-HQ {str(root)!r} split {split!r}",
        listed,
        check_labels=check_labels,
        label_reader=read_labels,
        num_classes=num_classes,
        verify=verify,
    )
