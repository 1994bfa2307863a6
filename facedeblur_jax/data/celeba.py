"""CelebA in its own layouts: annotation files, image lists and identity-disjoint splits.

The faces themselves are aligned by :mod:`facedeblur_jax.faces.celeba` (dlib); this module
needs no dlib.

CelebA (Liu et al., ICCV 2015) as released by its authors: the photos in one of two
layouts, plus annotation text files. ``facedeblur data prepare celeba``
(``facedeblur_jax/commands/prepare_celeba.py``) reads them with this module and writes an
aligned face folder that the ``"faces"`` source (``folders.py``) trains from.

Layouts (``find_tree``):

- ``img_celeba`` ("In-The-Wild Images"): photos of any size. Each photo's main face is
  found by :func:`facedeblur_jax.faces.celeba.align_wild`: dlib's HOG detector, on a copy shrunk to
  :data:`MAX_DETECT_SIDE` px if larger, at ``upsample_num_times`` 0 and, when that finds
  nothing and the photo is at most :data:`UPSAMPLE_BELOW` px, at 1; the main face is the
  largest box; dlib's 68 landmarks on the full-resolution photo give the five points
  (:func:`facedeblur_jax.faces.align.five_points`).
- ``img_align_celeba`` ("Align&Cropped Images"): 178 × 218 crops with five landmarks each
  in ``list_landmarks_align_celeba.txt`` (left eye, right eye, nose, left mouth corner,
  right mouth corner, in that frame; "left" is image-left, as in the five points of
  ``faces/align.py``). :func:`facedeblur_jax.faces.celeba.align_aligned` maps those points
  onto the same template.

Either way a similarity transform (least squares) maps the five points onto
:func:`facedeblur_jax.faces.align.template` at ``size`` px and the crop repeats the photo's
edge pixels where it runs off the photo (``faces/align.py``). Faces are skipped, with the
reason, when: no face is detected; the second-largest detection is at least
:data:`MAIN_FACE_RATIO` of the largest one's side (no clear main face); the transform is
degenerate (coincident points, non-finite); the crop enlarges the face more than
:data:`MAX_UPSCALE` times (too little detail for a sharp training target); less than
:data:`MIN_INSIDE` of the crop lies on the photo; or (``img_celeba``) the 68 landmarks in
the crop fail :func:`facedeblur_jax.faces.pseudo_labels.landmark_problems`.

Annotation files (found in the CelebA folder, its ``Anno/`` or its ``Eval/``):
``identity_CelebA.txt`` (``image identity``; required: the splits are by identity),
``list_eval_partition.txt`` (``image 0|1|2`` = train / val / test; optional),
``list_landmarks_align_celeba.txt`` (``img_align_celeba`` only). A first line with the
number of records and a line of column names are allowed, as in the release.

Splits (:func:`assign_splits`): the partition file when it lists every image being
prepared (identities it puts in more than one split are reported), else
:func:`seeded_split`: identities sorted, permuted by a seeded generator, and cut by
cumulative image count at the requested fractions, so no identity is in two splits and each
split's size is within one identity's image count of its fraction.

Paper reading. §3.6 aligns the CelebA, Helen and CMU PIE faces with the landmarks of Sun
et al. (2013), warped as in Kae et al. (2013), and uses 2,300 CelebA faces to train and 100
to test without saying how they were chosen; the authors' repository has test code and
aligned 128 × 128 test images, no aligner. Here the landmarks are dlib's (or CelebA's own
five) and the template is the one ``facedeblur deblur`` aligns photos with, so training
crops and the crops deblurred in photos agree. The paper's 100 test faces are 100
identities with 9 more clear images each as the recognition gallery (§5.2); it does not
say whether they were trained on. Recognition of identities the model has seen says
little, so the splits here are by identity, and the gallery of an identity-disjoint test
split is its own clear faces (``evaluators/face_analysis.py``).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from PIL import Image

LAYOUTS = ("img_celeba", "img_align_celeba")
SPLITS = ("train", "val", "test")  # list_eval_partition.txt codes 0, 1, 2
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
IDENTITY_FILE = "identity_CelebA.txt"
PARTITION_FILE = "list_eval_partition.txt"
ALIGNED_LANDMARKS_FILE = "list_landmarks_align_celeba.txt"
ANNOTATION_DIRS = (".", "Anno", "Eval")
IMAGE_DIRS = {layout: (layout, f"Img/{layout}") for layout in LAYOUTS}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ALIGNED_FRAME_HW = (218, 178)  # img_align_celeba: every image is 178 wide, 218 high


@dataclasses.dataclass(frozen=True)
class CelebaTree:
    """Where a CelebA release's parts are.

    Attributes:
      layout: ``"img_celeba"`` or ``"img_align_celeba"``.
      images: the image folder.
      identity_file: ``identity_CelebA.txt``.
      partition_file: ``list_eval_partition.txt`` or ``None``.
      landmark_file: ``list_landmarks_align_celeba.txt`` (``img_align_celeba``) or ``None``.
    """

    layout: str
    images: pathlib.Path
    identity_file: pathlib.Path
    partition_file: pathlib.Path | None
    landmark_file: pathlib.Path | None


# --- annotation files ----------------------------------------------------------------------


def read_annotation(path: str | os.PathLike, columns: int) -> dict[str, tuple[str, ...]]:
    """``{image name: (value, ...)}`` of a CelebA annotation file.

    Each record line is an image name and ``columns`` values separated by white space.
    Before the first record a line holding only the record count and a line of column
    names (any line whose first word is not an image name) are skipped.

    Raises:
      FileNotFoundError: the file is missing (named).
      ValueError: a line with another number of values, or an image listed twice (the file
        and line are named).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {str(path)!r} not found")
    records: dict[str, tuple[str, ...]] = {}
    with path.open(encoding="utf-8", errors="strict") as f:
        for number, line in enumerate(f, 1):
            words = line.split()
            if not words:
                continue
            is_record = words[0].lower().endswith(IMAGE_SUFFIXES)
            if not is_record:
                if records:
                    raise ValueError(
                        f"{str(path)!r} line {number}: expected an image name first, "
                        f"got {words[0]!r}"
                    )
                continue
            if len(words) != columns + 1:
                raise ValueError(
                    f"{str(path)!r} line {number}: expected an image name and {columns} "
                    f"value(s), got {len(words)} field(s)"
                )
            if words[0] in records:
                raise ValueError(f"{str(path)!r} line {number}: {words[0]!r} listed twice")
            records[words[0]] = tuple(words[1:])
    return records


def read_identities(path: str | os.PathLike) -> dict[str, str]:
    """``identity_CelebA.txt`` → ``{image name: identity}`` (identities as strings)."""
    return {name: values[0] for name, values in read_annotation(path, 1).items()}


def read_partition(path: str | os.PathLike) -> dict[str, str]:
    """``list_eval_partition.txt`` → ``{image name: "train" | "val" | "test"}`` (0, 1, 2)."""
    out = {}
    for name, (code,) in read_annotation(path, 1).items():
        if code not in ("0", "1", "2"):
            raise ValueError(f"{str(path)!r}: {name!r} has partition {code!r}, not 0, 1 or 2")
        out[name] = SPLITS[int(code)]
    return out


def read_aligned_landmarks(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``list_landmarks_align_celeba.txt`` → ``{image name: f64[5, 2]}`` (x, y) points in
    the 178 × 218 frame: left eye, right eye, nose, left and right mouth corner."""
    out = {}
    for name, values in read_annotation(path, 10).items():
        try:
            out[name] = np.asarray([float(v) for v in values], np.float64).reshape(5, 2)
        except ValueError as e:
            raise ValueError(f"{str(path)!r}: landmarks of {name!r} are not numbers") from e
    return out


# --- where things are ------------------------------------------------------------------------


def _annotation(src: pathlib.Path, name: str) -> pathlib.Path | None:
    for folder in ANNOTATION_DIRS:
        path = src / folder / name
        if path.is_file():
            return path
    return None


def list_images(folder: str | os.PathLike) -> list[str]:
    """Image file names (``.jpg``/``.jpeg``/``.png``) directly in ``folder``, sorted; hidden
    names skipped."""
    folder = pathlib.Path(folder)
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _guess_layout(images: pathlib.Path, landmark_file: pathlib.Path | None) -> str:
    """The layout of an image folder with a name of its own: ``img_align_celeba`` when the
    aligned landmark file exists and the first image is 178 × 218, else ``img_celeba``."""
    if images.name in LAYOUTS:
        return images.name
    names = list_images(images)
    if landmark_file is None or not names:
        return "img_celeba"
    try:
        with Image.open(images / names[0]) as im:
            aligned = im.size == ALIGNED_FRAME_HW[::-1]
    except OSError:
        aligned = False
    return "img_align_celeba" if aligned else "img_celeba"


def find_tree(
    src: str | os.PathLike, layout: str = "auto", images: str | os.PathLike | None = None
) -> CelebaTree:
    """Finds the parts of a CelebA release under ``src``.

    Args:
      src: the CelebA folder (holding the annotation files directly or in ``Anno/`` and
        ``Eval/``, and the image folder).
      layout: ``"auto"``, ``"img_celeba"`` or ``"img_align_celeba"``.
      images: the image folder, when it is not ``src/<layout>`` or ``src/Img/<layout>``.
    Raises:
      FileNotFoundError: ``src``, the image folder or a needed annotation file is missing.
      ValueError: an unknown layout, or both layouts found with ``layout="auto"``.
    """
    src = pathlib.Path(src)
    if layout not in ("auto", *LAYOUTS):
        raise ValueError(f"layout must be 'auto' or one of {LAYOUTS}; got {layout!r}")
    if not src.is_dir():
        raise FileNotFoundError(f"CelebA folder {str(src)!r} not found")
    landmark_file = _annotation(src, ALIGNED_LANDMARKS_FILE)
    if images is not None:
        folder = pathlib.Path(images)
        if not folder.is_dir():
            raise FileNotFoundError(f"image folder {str(folder)!r} not found")
        if layout == "auto":
            layout = _guess_layout(folder, landmark_file)
    else:
        wanted = LAYOUTS if layout == "auto" else (layout,)
        found = {
            name: src / sub for name in wanted for sub in IMAGE_DIRS[name] if (src / sub).is_dir()
        }
        if not found:
            places = " or ".join(repr(s) for name in wanted for s in IMAGE_DIRS[name])
            raise FileNotFoundError(
                f"no CelebA image folder ({places}) in {str(src)!r}; name it with --images"
            )
        if len(found) > 1:
            raise ValueError(
                f"{str(src)!r} holds both img_celeba and img_align_celeba; choose one with --layout"
            )
        ((layout, folder),) = found.items()
    identity_file = _annotation(src, IDENTITY_FILE)
    if identity_file is None:
        raise FileNotFoundError(
            f"{IDENTITY_FILE} not found in {str(src)!r} (nor in its Anno/): the splits are "
            "by identity"
        )
    if layout == "img_align_celeba" and landmark_file is None:
        raise FileNotFoundError(
            f"{ALIGNED_LANDMARKS_FILE} not found in {str(src)!r} (nor in its Anno/): the "
            "img_align_celeba layout is aligned by its landmarks"
        )
    return CelebaTree(
        layout=layout,
        images=folder,
        identity_file=identity_file,
        partition_file=_annotation(src, PARTITION_FILE),
        landmark_file=landmark_file if layout == "img_align_celeba" else None,
    )


# --- splits ----------------------------------------------------------------------------------


def parse_fractions(text: str | Sequence[float]) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` → ``(0.8, 0.1, 0.1)``: three non-negative train / val / test
    fractions summing to 1, train and test above 0."""
    try:
        values = (
            tuple(float(v) for v in text.split(","))
            if isinstance(text, str)
            else tuple(float(v) for v in text)
        )
    except ValueError as e:
        raise ValueError(f"split fractions must be numbers, like 0.8,0.1,0.1; got {text!r}") from e
    if (
        len(values) != 3
        or not all(np.isfinite(values))
        or min(values) < 0
        or abs(sum(values) - 1) > 1e-6
        or values[0] <= 0
        or values[2] <= 0
    ):
        raise ValueError(
            "split fractions must be three non-negative numbers train,val,test that sum to "
            f"1 with train and test above 0, like 0.8,0.1,0.1; got {text!r}"
        )
    return values


def _identity_key(identity: str):
    return (0, int(identity), "") if identity.isdigit() else (1, 0, identity)


def seeded_split(
    counts: Mapping[str, int], fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0
) -> dict[str, str]:
    """Identity → split, identity-disjoint by construction.

    Identities are sorted (numerically where they are numbers), permuted by
    ``np.random.default_rng(seed)`` and laid end to end, each taking ``counts[identity]``
    images; an identity goes to the split whose share of the cumulative image count (the
    boundaries ``total · cumsum(fractions)``) holds the middle of its run. Each split thus
    holds its fraction of the images to within the largest identity's count, and the result
    depends only on ``counts``, ``fractions`` and ``seed`` (not on any file order).

    Args:
      counts: images per identity (``> 0``).
      fractions: train, val, test (:func:`parse_fractions`).
      seed: the permutation's seed.
    """
    fractions = parse_fractions(fractions)
    identities = sorted(counts, key=_identity_key)
    order = np.random.default_rng(seed).permutation(len(identities))
    total = sum(counts.values())
    bounds = total * np.cumsum(fractions)
    out, start = {}, 0
    for i in order:
        identity = identities[i]
        middle = start + counts[identity] / 2
        k = min(int(np.searchsorted(bounds, middle, side="right")), len(SPLITS) - 1)
        out[identity] = SPLITS[k]
        start += counts[identity]
    return out


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """Which split each image goes to, and by which rule.

    Attributes:
      split_of: ``{image name: split}`` for every image with an identity.
      rule: ``"partition"`` (``list_eval_partition.txt``) or ``"seeded"``.
      shared_identities: identities found in more than one split (only possible with the
        partition file).
    """

    split_of: dict[str, str]
    rule: str
    shared_identities: tuple[str, ...] = ()


def assign_splits(
    identity_of: Mapping[str, str],
    *,
    partition: Mapping[str, str] | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> SplitPlan:
    """Splits for the images of ``identity_of`` (``{image name: identity}``).

    The partition is used when given and it lists every image; otherwise
    :func:`seeded_split` over the images' identities.
    """
    if partition is not None and all(name in partition for name in identity_of):
        split_of = {name: partition[name] for name in identity_of}
        splits_of_identity: dict[str, set[str]] = {}
        for name, identity in identity_of.items():
            splits_of_identity.setdefault(identity, set()).add(split_of[name])
        shared = sorted((i for i, s in splits_of_identity.items() if len(s) > 1), key=_identity_key)
        return SplitPlan(split_of, "partition", tuple(shared))
    by_identity = seeded_split(identity_counts(identity_of.values()), fractions, seed)
    return SplitPlan({n: by_identity[i] for n, i in identity_of.items()}, "seeded")


def split_summary(split_of: Mapping[str, str], identity_of: Mapping[str, str]) -> dict:
    """``{split: {"identities": n, "images": m}}`` over :data:`SPLITS`."""
    out = {}
    for split in SPLITS:
        names = [n for n, s in split_of.items() if s == split]
        out[split] = {"identities": len({identity_of[n] for n in names}), "images": len(names)}
    return out


# --- alignment -------------------------------------------------------------------------------


def identity_counts(identities: Iterable[str]) -> dict[str, int]:
    """``{identity: number of images}``."""
    counts: dict[str, int] = {}
    for identity in identities:
        counts[identity] = counts.get(identity, 0) + 1
    return counts
