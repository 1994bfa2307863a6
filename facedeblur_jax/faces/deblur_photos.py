"""``facedeblur deblur``: deblur the faces in photos of any size, or aligned face crops.

Default (photos): dlib's HOG detector finds the frontal faces in each image; each face's 68
landmarks give a similarity transform onto the aligned-crop template
(:mod:`facedeblur_jax.faces.align`), the ``S × S`` crop (S = the model's input size) is
deblurred, and the result goes back into the full image through the inverse transform with
a feathered mask. Everything outside the faces' crops is left as it was; the output has the
input's size. An image in which no face is found is reported and skipped (nothing written).

``--no-align`` (aligned crops, like the training data): each image is resized to ``S × S``,
deblurred and resized back to its own size.

Outputs are ``OUT/<stem>.png``. Unreadable files are reported and skipped; an existing
output (or an output that would replace an input) is never overwritten unless
``--overwrite``; output names are resolved inside ``OUT``.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax.numpy as jnp
import numpy as np

from facedeblur_jax import imageio
from facedeblur_jax.faces import align as face_align
from facedeblur_jax.inference import deblur_array, load_model, make_deblur_fn

# Photos are searched at most this large (longer side); larger ones on a shrunk copy.
MAX_DETECT_SIDE = 1600
# Up to this size (longer side) a photo is searched at the detector's own scale and once
# more upsampled ×2 (faces from ~40 px instead of ~80 px).
UPSAMPLE_BELOW = 1000
# Boxes from the two searches overlapping this much (IoU) are the same face.
SAME_FACE_IOU = 0.3


def collect_inputs(inputs: list[str]) -> list[pathlib.Path]:
    """Image files named directly or found (sorted, non-recursive) in named folders."""
    files = []
    for item in inputs:
        path = pathlib.Path(item)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in imageio.IMAGE_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"input {item!r} does not exist")
    return files


def find_faces(image: np.ndarray, *, upsample: int | None = None) -> list[np.ndarray]:
    """dlib's 68 landmarks of every frontal face in a photo, largest face first.

    The HOG detector runs on the photo (shrunk to :data:`MAX_DETECT_SIDE` on its longer side
    if larger) at ``upsample_num_times=upsample``; by default at 0 and, for photos of at most
    :data:`UPSAMPLE_BELOW` px, also at 1, keeping the union of the boxes. Landmarks are
    predicted on the full-resolution photo.

    Args:
      image: ``uint8[H, W, 3]``.
    Returns:
      ``[f32[68, 2]]`` (x, y) pixel coordinates, one per face.
    """
    from facedeblur_jax.faces import landmarks as lm

    dlib = lm.dlib_module()
    detector, predictor = lm.detector(), lm.shape_predictor()
    image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    scale = min(1.0, MAX_DETECT_SIDE / max(h, w))
    small = image
    if scale < 1.0:
        small = imageio.resize_hw(image, max(round(h * scale), 1), max(round(w * scale), 1))
    tries = [upsample] if upsample is not None else [0, 1] if max(h, w) <= UPSAMPLE_BELOW else [0]
    boxes = []
    for times in tries:  # union over the levels: a face found at both is kept once
        for r in detector(small, times):
            box = [round(v / scale) for v in (r.left(), r.top(), r.right(), r.bottom())]
            if all(lm.box_iou(box, other) < SAME_FACE_IOU for other in boxes):
                boxes.append(box)
    boxes.sort(key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)
    faces = []
    for box in boxes:
        shape = predictor(image, dlib.rectangle(*box))
        faces.append(np.array([[p.x, p.y] for p in shape.parts()], np.float32))
    return faces


def alignment(landmarks68: np.ndarray, size: int) -> np.ndarray:
    """``f64[2, 3]`` similarity from photo to ``size × size`` aligned-crop coordinates."""
    return face_align.estimate_similarity(
        face_align.five_points(landmarks68), face_align.template(size)
    )


class _Deblurrer:
    """The model's jitted forward pass (compiled once) over padded batches of crops."""

    def __init__(self, loaded, batch_size: int):
        self.fn = make_deblur_fn(loaded)
        self.batch_size = batch_size

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """``uint8[N, S, S, 3]`` -> ``f32[N, S, S, 3]`` in [0, 1]."""
        x = crops.astype(np.float32) / 255.0
        out = []
        for i in range(0, len(x), self.batch_size):
            chunk = x[i : i + self.batch_size]
            n = len(chunk)
            if n < self.batch_size:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch_size - n, 0)])
            y = self.fn(jnp.asarray(chunk)).y
            out.append(np.asarray(jnp.clip(y, 0.0, 1.0))[:n])
        return np.concatenate(out)


@dataclasses.dataclass
class _Photo:
    target: pathlib.Path
    image: np.ndarray  # uint8[H, W, 3]
    transforms: list[np.ndarray]  # f64[2, 3] per face
    crops: list[np.ndarray]  # uint8[S, S, 3] per face


def _plan(files, out_root: pathlib.Path, overwrite: bool):
    """``(path, target)`` of each input to process, and the number skipped (with messages)."""
    resolved_inputs = {p.resolve() for p in files}
    jobs, skipped, seen = [], 0, set()
    for path in files:
        target = imageio.safe_output_path(out_root, path.stem + ".png")
        if target in seen:
            print(f"skip {path}: another input already writes {target.name}")
            skipped += 1
            continue
        if target.exists() and not overwrite:
            why = "it is an input" if target in resolved_inputs else "it exists"
            print(f"skip {path}: would overwrite {target} ({why}; use --overwrite)")
            skipped += 1
            continue
        seen.add(target)
        jobs.append((path, target))
    return jobs, skipped


def _run_aligned(loaded, jobs, *, overwrite: bool, batch_size: int) -> tuple[int, int]:
    """``--no-align``: resize each crop to the model's size and back. -> (written, skipped)."""
    size = loaded.image_size
    loaded_jobs, skipped = [], 0
    for path, target in jobs:
        try:
            loaded_jobs.append((target, imageio.load_image(path)))
        except imageio.ImageError as e:
            print(f"skip {path}: {e}")
            skipped += 1
    if loaded_jobs:
        batch = np.stack([imageio.resize(image, size) for _, image in loaded_jobs])
        restored = deblur_array(loaded, batch, batch_size=batch_size)
        for (target, image), y in zip(loaded_jobs, restored, strict=True):
            y8 = imageio.to_uint8(y)
            if image.shape[:2] != (size, size):
                y8 = imageio.resize_hw(y8, image.shape[0], image.shape[1])
            imageio.save_image(target, y8, overwrite=overwrite)
    return len(loaded_jobs), skipped


def _run_photos(
    loaded, jobs, *, overwrite: bool, batch_size: int, upsample: int | None
) -> tuple[int, int, int]:
    """Detect, align, deblur, paste back. -> (images written, faces, images skipped)."""
    size = loaded.image_size
    deblur = _Deblurrer(loaded, batch_size)
    mask = face_align.feather_mask(size)
    pending: list[_Photo] = []
    written = faces = skipped = 0

    def flush():
        nonlocal written, faces
        if not pending:
            return
        restored = deblur(np.stack([c for photo in pending for c in photo.crops]))
        k = 0
        for photo in pending:
            out = photo.image
            for m in photo.transforms:
                out = face_align.paste_back(out, restored[k], m, mask)
                k += 1
            imageio.save_image(photo.target, out, overwrite=overwrite)
            written += 1
            faces += len(photo.transforms)
        pending.clear()

    for path, target in jobs:
        try:
            image = imageio.load_image(path)
        except imageio.ImageError as e:
            print(f"skip {path}: {e}")
            skipped += 1
            continue
        found = find_faces(image, upsample=upsample)
        if not found:
            print(
                f"skip {path}: no face found (dlib HOG frontal detector); "
                "for an already aligned face crop use --no-align"
            )
            skipped += 1
            continue
        transforms = [alignment(points, size) for points in found]
        crops = [face_align.align_crop(image, m, size) for m in transforms]
        pending.append(_Photo(target, image, transforms, crops))
        if sum(len(p.crops) for p in pending) >= batch_size:
            flush()
    flush()
    return written, faces, skipped


def run(
    checkpoint: str,
    inputs: list[str],
    out_dir: str,
    *,
    overwrite: bool = False,
    batch_size: int = 32,
    align: bool = True,
    upsample: int | None = None,
) -> int:
    """Deblurs ``inputs`` into ``out_dir``; 0 if anything was written (or nothing skipped).

    ``align=False`` is ``--no-align`` (aligned crops); ``upsample`` overrides the face
    detector's ``upsample_num_times`` (see :func:`find_faces`).
    """
    files = collect_inputs(inputs)
    if not files:
        raise ValueError(f"no images found in {inputs}")
    if align:
        from facedeblur_jax.faces import landmarks as lm

        try:
            # dlib and its models, before the checkpoint is loaded.
            lm.detector()
            lm.shape_predictor()
        except ModuleNotFoundError as e:
            raise ValueError(f"{e}; aligned face crops need no detector: --no-align") from e
    loaded = load_model(checkpoint)
    out_root = pathlib.Path(out_dir)
    out_root.mkdir(parents=True, exist_ok=True)
    jobs, skipped = _plan(files, out_root, overwrite)
    if align:
        written, faces, more = _run_photos(
            loaded, jobs, overwrite=overwrite, batch_size=batch_size, upsample=upsample
        )
        print(
            f"deblurred {faces} face(s) in {written} image(s) into {out_root}; "
            f"skipped {skipped + more}"
        )
    else:
        written, more = _run_aligned(loaded, jobs, overwrite=overwrite, batch_size=batch_size)
        print(f"deblurred {written} image(s) into {out_root}; skipped {skipped + more}")
    return 0 if written or not (skipped + more) else 1
