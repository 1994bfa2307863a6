"""``facedeblur deblur``: deblur the faces in photos of any size, or aligned face crops.

Default (photos): dlib's HOG detector finds the frontal faces in each image; each face's 68
landmarks give a similarity transform onto the aligned-crop template
(:mod:`facedeblur_jax.faces.align`), the ``S × S`` crop (S = the model's input size) is
deblurred, and the result goes back into the full image through the inverse transform with
a feathered mask. Everything outside the faces' crops is left as it was; the output has the
input's size. The paper (and the authors' released test code) deblurs aligned crops only;
this photo path is the project's addition around the same model (docs/design.md §8).

The model is ``--checkpoint`` (a training workdir, a checkpoint folder or a weights file
from ``facedeblur export-weights``) or, without it, the model bundled with the package
(:func:`facedeblur_jax.serving.loading.bundled_model_path`), named with its training data and
step in one printed line; a package without one says to pass ``--checkpoint``.

Faces at the border. A crop that runs off the photo repeats the photo's edge pixels there,
and only crop pixels whose source lay inside the photo are pasted back
(:mod:`facedeblur_jax.faces.align`), so the photo's outermost rows and columns get the
restored face without a dark seam.

Large faces. The crop of a face larger than the model's input is shrunk to ``S`` px before
deblurring; pasted back, the result has only ``S`` px of detail across the crop, less than
the photo had. A face whose crop is shrunk more than ``--max-downscale`` times (default
:data:`MAX_DOWNSCALE` = 2: the pasted face would have at most half the photo's linear
resolution) is *large*: a warning names the file, the face (1 = largest) and the factor,
and ``--large-faces`` decides what becomes of it: ``crop`` (default) leaves it as it was in
the photo and writes its deblurred ``S``-px aligned crop as ``OUT/<stem>_face<k>.png``, so
nothing the photo had is lost and the model's result is still there to look at; ``keep``
leaves it as it was and writes nothing for it; ``paste`` pastes it back anyway (softer).
``--max-downscale inf`` treats no face as large. A photo whose faces are all large is not
written (it would be a copy of the input); with ``keep`` it counts as skipped.

Resolution of a shrunk face (``--resample``). The model sees a face larger than ``S`` px
shrunk to ``S``. ``output`` (default) brings the model's output back to the face's size
(bilinear through the inverse transform in photos, bicubic with ``--no-align``), so the face
has only ``S`` px of detail. ``residual`` adds the model's correction instead — its output
minus the shrunk crop it was given, enlarged by the same resampler — to the face's own
pixels, ``clip(face + up(y − x))`` (:func:`~facedeblur_jax.faces.align.add_correction`,
:func:`back_to_size`): detail finer than ``S`` px stays as the photo had it, noise included.
Measured with the bundled 64-px model on 100 held-out 128-px faces blurred with the paper's
128-px kernels and σ = 0.01 noise (docs/benchmarks/photo_resolution.md), ``residual`` is
0.06–0.07 dB PSNR and 0.023 SSIM below ``output`` (95 % intervals exclude zero): shrinking
the face also removes its fine-scale noise, which ``residual`` keeps (without noise it is
0.01–0.03 dB above). So ``output`` stays the default. A face not larger than ``S`` comes back
as with ``output`` either way.

``--no-align`` (aligned crops, like the training data): each image is resized to ``S × S``,
deblurred and resized back to its own size (with the same warning when it is shrunk more
than ``--max-downscale`` times; there is nothing to keep apart there).

Outputs are ``OUT/<stem>.png``. Inputs are the files named and the images directly inside
the folders named; images in their subfolders are not read, and one line says how many
there were. ``OUT`` is created and checked for writing before the model is loaded (a file
there, or a folder the user cannot write to, is one error line before any work). Unreadable
files are reported and skipped; an existing output (or an output that would replace an
input) is never overwritten unless ``--overwrite``; output names are resolved inside
``OUT``. Files are written atomically with the permissions of the user's umask.

Pixel formats (:mod:`facedeblur_jax.core.imageio`): 16-bit images are scaled to 8 bits;
an image with an alpha channel (RGBA, gray + alpha, a palette with transparency) is
deblurred on its colour channels as stored and written as RGBA with its own alpha channel,
unchanged (nothing is composited onto a background). Outputs are 8-bit PNGs.

A run that writes nothing ends with one error line (``facedeblur deblur: error: nothing
written: ...``; the reason of the one input, or a count) and exit status 2 when every input
was skipped for a reason the user can fix (unreadable, its output exists), else 1 (no face
found, every face left as it was); the output folder is then removed again when the run
created it (never a folder that existed before).
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax.numpy as jnp
import numpy as np

from facedeblur_jax.core import imageio
from facedeblur_jax.core.errors import WorkFailed
from facedeblur_jax.core.outputs import prepare_output_folder, remove_created
from facedeblur_jax.faces import align as face_align
from facedeblur_jax.faces import landmarks as lm
from facedeblur_jax.serving import loading as inference
from facedeblur_jax.serving.loading import deblur_array, describe, load_model, make_deblur_fn

# Photos are searched at most this large (longer side); larger ones on a shrunk copy.
MAX_DETECT_SIDE = 1600
# Up to this size (longer side) a photo is searched at the detector's own scale and once
# more upsampled ×2 (faces from ~40 px instead of ~80 px).
UPSAMPLE_BELOW = 1000
# Boxes from the two searches overlapping this much (IoU) are the same face.
SAME_FACE_IOU = 0.3
# A face whose crop is shrunk more than this many times to the model's input is "large".
MAX_DOWNSCALE = 2.0
# What becomes of a large face: its deblurred crop written beside the photo ("crop"), left
# as it was ("keep"), or pasted back anyway ("paste").
LARGE_FACE_POLICIES = ("crop", "keep", "paste")
LARGE_FACES = "crop"
# How a face shrunk to the model's input comes back (--resample): the model's output
# enlarged to the face's size ("output"), or the face as it was plus the model's correction
# (its output minus its input) enlarged ("residual"). A face not shrunk comes back as
# "output" either way. "output" is the default: "residual" measured 0.07 dB and 0.023 SSIM
# worse on blurred, noisy 128-px faces with the 64-px model (docs/benchmarks/photo_resolution.md).
RESAMPLE_MODES = ("output", "residual")
RESAMPLE = "output"


def _is_image_name(p: pathlib.Path) -> bool:
    return p.suffix.lower() in imageio.IMAGE_SUFFIXES and not p.name.startswith(".")


def collect_inputs(inputs: list[str]) -> tuple[list[pathlib.Path], int]:
    """Image files named directly or found (sorted, non-recursive, hidden names skipped) in
    named folders, and how many images lie in those folders' subfolders (not read).

    Raises:
      FileNotFoundError: an input does not exist.
      ValueError: a folder that cannot be listed (permissions).
    """
    files, in_subfolders = [], 0
    for item in inputs:
        path = pathlib.Path(item)
        if path.is_dir():
            try:
                entries = sorted(path.iterdir())
                files += [p for p in entries if p.is_file() and _is_image_name(p)]
                for sub in (p for p in entries if p.is_dir() and not p.name.startswith(".")):
                    in_subfolders += sum(1 for q in sub.rglob("*") if _is_image_name(q))
            except PermissionError as e:
                raise ValueError(f"cannot list the input folder {item!r}: permission denied") from e
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"input {item!r} does not exist")
    return files, in_subfolders


class _Skips:
    """The inputs a run passes over: one printed ``skip`` line each, and what the run says
    when it wrote nothing (:meth:`nothing_written`)."""

    def __init__(self):
        self.items: list[tuple[str, bool]] = []  # (reason, the user can fix it)

    def add(self, path: pathlib.Path, why: str, *, fixable: bool, named: bool = False) -> None:
        """``why`` the input ``path`` is passed over (``named``: ``why`` names it already);
        ``fixable``: by the user (an unreadable file, an output that exists)."""
        print(f"skip {path}: {why}")
        self.items.append((why if named else f"{path}: {why}", fixable))

    def __len__(self) -> int:
        return len(self.items)

    def nothing_written(self) -> Exception:
        """The error of a run that wrote nothing: a ``ValueError`` (bad input, status 2)
        when every input was skipped for a reason the user can fix, else
        :class:`~facedeblur_jax.core.errors.WorkFailed` (status 1)."""
        if len(self.items) == 1:
            text = f"nothing written: {self.items[0][0]}"
        else:
            text = (
                f"nothing written: all {len(self.items)} inputs were skipped (the 'skip' lines "
                "above say why)"
            )
        return ValueError(text) if all(f for _, f in self.items) else WorkFailed(text)


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
class _Face:
    m: np.ndarray  # f64[2, 3] from the photo to the model-sized crop
    crop: np.ndarray | None  # uint8[S, S, 3], None when the face is left as it was
    paste: bool  # paste the deblurred crop back into the photo
    crop_target: pathlib.Path | None  # write the deblurred crop here instead
    model_input: np.ndarray | None = None  # uint8[S, S, 3], the crop the model saw


@dataclasses.dataclass
class _Photo:
    path: pathlib.Path
    target: pathlib.Path
    image: np.ndarray  # uint8[H, W, 3]
    alpha: np.ndarray | None  # uint8[H, W], written back unchanged
    faces: list[_Face]


def _with_alpha(image: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    return image if alpha is None else np.dstack([image, alpha])


def _plan(files, out_root: pathlib.Path, overwrite: bool, skips: _Skips):
    """``(path, target)`` of each input to process (the others go to ``skips``)."""
    resolved_inputs = {p.resolve() for p in files}
    jobs, seen = [], set()
    for path in files:
        target = imageio.safe_output_path(out_root, path.stem + ".png")
        if target in seen:
            skips.add(path, f"another input already writes {target.name}", fixable=True)
            continue
        if target.exists() and not overwrite:
            why = "it is an input" if target in resolved_inputs else "it exists"
            skips.add(path, f"would overwrite {target} ({why}; use --overwrite)", fixable=True)
            continue
        seen.add(target)
        jobs.append((path, target))
    return jobs


def model_inputs(images: list[np.ndarray], size: int) -> np.ndarray:
    """``--no-align``: each ``uint8[h, w, 3]`` image resized whole to the model's input,
    ``uint8[N, size, size, 3]`` (:func:`facedeblur_jax.core.imageio.resize`)."""
    return np.stack([imageio.resize(image, size) for image in images])


def back_to_size(image: np.ndarray, x: np.ndarray, y: np.ndarray, resample: str) -> np.ndarray:
    """``--no-align``: the model's result for ``image`` at ``image``'s own size.

    Args:
      image: ``uint8[h, w, 3]``, the input as it was.
      x: ``uint8[S, S, 3]``, what the model saw (:func:`model_inputs`).
      y: ``f32[S, S, 3]`` in [0, 1], the model's output.
      resample: ``"output"``: ``y`` resized to ``h × w`` (bicubic); ``"residual"``, for an
        image larger than ``S``: ``clip(image + up(y − x), 0, 1)`` with ``up`` the same
        bicubic filter in float, so what the model changed is added to the input's own
        pixels. An image not larger than ``S`` comes back as with ``"output"``.
    Returns:
      ``uint8[h, w, 3]``.
    """
    size = x.shape[0]
    h, w = image.shape[:2]
    if resample == "residual" and max(h, w) > size:
        correction = np.asarray(y, np.float32) - x.astype(np.float32) / 255.0
        enlarged = imageio.resize_hw_float(correction, h, w)
        return imageio.to_uint8(image.astype(np.float32) / 255.0 + enlarged)
    y8 = imageio.to_uint8(y)
    return y8 if (h, w) == (size, size) else imageio.resize_hw(y8, h, w)


def _paste(photo: np.ndarray, face: _Face, mask: np.ndarray, resample: str) -> np.ndarray:
    """One deblurred face into the photo: :func:`~facedeblur_jax.faces.align.paste_back` of
    the model's output, or with ``"residual"`` for a face shrunk to fit the model the photo
    plus the model's correction (:func:`~facedeblur_jax.faces.align.add_correction`)."""
    if resample == "residual" and downscale_factor(face.m) > 1.0:
        correction = face.crop - face.model_input.astype(np.float32) / 255.0
        return face_align.add_correction(photo, correction, face.m, mask)
    return face_align.paste_back(photo, face.crop, face.m, mask)


def _run_aligned(
    loaded,
    jobs,
    skips: _Skips,
    *,
    overwrite: bool,
    batch_size: int,
    max_downscale: float,
    resample: str = RESAMPLE,
) -> int:
    """``--no-align``: resize each crop to the model's size and back. -> images written."""
    size = loaded.image_size
    loaded_jobs = []
    for path, target in jobs:
        try:
            image, alpha = imageio.load_image_and_alpha(path)
        except imageio.ImageError as e:
            skips.add(path, str(e), fixable=True, named=True)
            continue
        factor = max(image.shape[:2]) / size
        if factor > max_downscale:
            print(
                f"warning: {path}: shrunk {factor:.1f}× to the model's {size} px and resized "
                "back: the result is softer than the input"
            )
        loaded_jobs.append((target, image, alpha))
    if loaded_jobs:
        batch = model_inputs([image for _, image, _ in loaded_jobs], size)
        restored = deblur_array(loaded, batch, batch_size=batch_size)
        for (target, image, alpha), x, y in zip(loaded_jobs, batch, restored, strict=True):
            y8 = back_to_size(image, x, y, resample)
            imageio.save_image(target, _with_alpha(y8, alpha), overwrite=overwrite)
    return len(loaded_jobs)


def downscale_factor(m: np.ndarray) -> float:
    """How many times the alignment ``m`` (photo -> crop) shrinks the face: ``1 / scale``."""
    return 1.0 / face_align.affine_scale(m)


def _plan_faces(
    path: pathlib.Path,
    image: np.ndarray,
    transforms: list[np.ndarray],
    size: int,
    *,
    max_downscale: float,
    large_faces: str,
    claimed: set[pathlib.Path],
    out_root: pathlib.Path,
    overwrite: bool,
) -> list[_Face]:
    """What happens to each face of a photo (warnings printed for large faces)."""
    faces = []
    for k, m in enumerate(transforms, start=1):
        factor = downscale_factor(m)
        if factor <= max_downscale or large_faces == "paste":
            if factor > max_downscale:
                print(
                    f"warning: {path}: face {k} is shrunk {factor:.1f}× (a {size * factor:.0f}"
                    f"-px crop to the model's {size} px, more than --max-downscale "
                    f"{max_downscale:g}); pasted back anyway, softer than the photo "
                    "(--large-faces paste)"
                )
            faces.append(_Face(m, face_align.align_crop(image, m, size), True, None))
            continue
        head = (
            f"warning: {path}: face {k} is shrunk {factor:.1f}× (a {size * factor:.0f}-px crop "
            f"to the model's {size} px, more than --max-downscale {max_downscale:g}); pasted "
            "back it would be softer than the photo, so the photo keeps it as it was"
        )
        target = None
        if large_faces == "crop":
            target = imageio.safe_output_path(out_root, f"{path.stem}_face{k}.png")
            if target in claimed:
                print(f"{head}; its crop is not written: another output is {target.name}")
                target = None
            elif target.exists() and not overwrite:
                print(f"{head}; its crop is not written: {target} exists (use --overwrite)")
                target = None
            else:
                print(f"{head}; its deblurred {size}-px crop goes to {target.name}")
                claimed.add(target)
        else:
            print(f"{head} (--large-faces keep)")
        crop = face_align.align_crop(image, m, size) if target is not None else None
        faces.append(_Face(m, crop, False, target))
    return faces


def _run_photos(
    loaded,
    jobs,
    out_root: pathlib.Path,
    skips: _Skips,
    *,
    overwrite: bool,
    batch_size: int,
    upsample: int | None,
    max_downscale: float,
    large_faces: str,
    resample: str = RESAMPLE,
) -> dict[str, int]:
    """Detect, align, deblur, paste back. -> counts: images, faces (pasted), crops (written
    instead of pasted), crop_names (their file names)."""
    size = loaded.image_size
    deblur = _Deblurrer(loaded, batch_size)
    mask = face_align.feather_mask(size)
    pending: list[_Photo] = []
    counts = dict(images=0, faces=0, crops=0, crop_names=[])
    claimed = {target for _, target in jobs}

    def flush():
        todo = [face for photo in pending for face in photo.faces if face.crop is not None]
        if todo:
            restored = deblur(np.stack([face.crop for face in todo]))
            for face, y in zip(todo, restored, strict=True):
                face.model_input, face.crop = face.crop, y
        for photo in pending:
            out = photo.image
            for face in photo.faces:
                if face.paste:
                    out = _paste(out, face, mask, resample)
                elif face.crop_target is not None:
                    imageio.save_image(face.crop_target, face.crop, overwrite=overwrite)
                    counts["crops"] += 1
                    counts["crop_names"].append(face.crop_target.name)
            pasted = sum(face.paste for face in photo.faces)
            if pasted:
                imageio.save_image(photo.target, _with_alpha(out, photo.alpha), overwrite=overwrite)
                counts["images"] += 1
                counts["faces"] += pasted
        pending.clear()

    for path, target in jobs:
        try:
            image, alpha = imageio.load_image_and_alpha(path)
        except imageio.ImageError as e:
            skips.add(path, str(e), fixable=True, named=True)
            continue
        found = find_faces(image, upsample=upsample)
        if not found:
            skips.add(
                path,
                "no face found (dlib HOG frontal detector); for an already aligned face crop "
                "use --no-align",
                fixable=False,
            )
            continue
        faces = _plan_faces(
            path,
            image,
            [alignment(points, size) for points in found],
            size,
            max_downscale=max_downscale,
            large_faces=large_faces,
            claimed=claimed,
            out_root=out_root,
            overwrite=overwrite,
        )
        if not any(face.paste or face.crop_target is not None for face in faces):
            skips.add(
                path, "every face in it is left as it was (large faces, see above)", fixable=False
            )
            continue
        pending.append(_Photo(path, target, image, alpha, faces))
        if sum(face.crop is not None for p in pending for face in p.faces) >= batch_size:
            flush()
    flush()
    return counts


def run(
    checkpoint: str | None,
    inputs: list[str],
    out_dir: str,
    *,
    overwrite: bool = False,
    batch_size: int = 32,
    align: bool = True,
    upsample: int | None = None,
    max_downscale: float = MAX_DOWNSCALE,
    large_faces: str = LARGE_FACES,
    resample: str = RESAMPLE,
) -> int:
    """Deblurs ``inputs`` into ``out_dir``; returns 0 (something was written).

    ``checkpoint``: a workdir, checkpoint folder or weights file (``.npz``); ``None`` is the
    model bundled with the package (:func:`facedeblur_jax.serving.loading.bundled_model_path`),
    named in one printed line, or a ``ValueError`` when the package has none.
    ``align=False`` is ``--no-align`` (aligned crops); ``upsample`` overrides the face
    detector's ``upsample_num_times`` (see :func:`find_faces`); ``max_downscale`` and
    ``large_faces`` say which faces are large and what becomes of them, ``resample`` how a
    face shrunk to the model's input comes back (module docstring).
    ``out_dir`` is created and checked for writing before the model is loaded; a folder
    this call creates is removed again if nothing was written.

    Raises:
      ValueError: bad arguments or input, caught before any work (one line naming it); or
        nothing was written and every input was skipped for a reason the user can fix.
      WorkFailed: nothing was written, an input skipped for another reason (no face).
    """
    if not max_downscale >= 1.0:  # also refuses NaN
        raise ValueError(
            f"--max-downscale must be at least 1 (a face is large when its crop is shrunk "
            f"more than this), got {max_downscale}"
        )
    if large_faces not in LARGE_FACE_POLICIES:
        raise ValueError(f"--large-faces must be one of {LARGE_FACE_POLICIES}, got {large_faces!r}")
    if resample not in RESAMPLE_MODES:
        raise ValueError(f"--resample must be one of {RESAMPLE_MODES}, got {resample!r}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1 (faces per call), got {batch_size}")
    if upsample is not None and upsample < 0:
        raise ValueError(f"--upsample must be 0 or more, got {upsample}")
    bundled = checkpoint is None
    if bundled:
        checkpoint = inference.bundled_model_path()
        if checkpoint is None:
            raise ValueError(
                f"no model is bundled with this package ({inference.BUNDLED_MODEL} is "
                "missing): pass "
                "--checkpoint WORKDIR, a checkpoint folder or a weights file from "
                "'facedeblur export-weights'"
            )
    files, in_subfolders = collect_inputs(inputs)
    ignored = (
        f"{in_subfolders} image(s) in subfolders of the input folders are not read (name "
        "those subfolders to deblur them)"
        if in_subfolders
        else ""
    )
    if not files:
        raise ValueError(f"no images found in {inputs}" + (f"; {ignored}" if ignored else ""))
    if ignored:
        print(f"note: {ignored}")
    # Files that are not images at all are known from their headers: before any work.
    skips, readable = _Skips(), []
    for path in files:
        try:
            imageio.check_image_file(path)
            readable.append(path)
        except imageio.ImageError as e:
            skips.add(path, str(e), fixable=True, named=True)
    if not readable:
        raise skips.nothing_written()
    if align:
        try:
            # dlib and its models, before the checkpoint is loaded.
            lm.detector()
            lm.shape_predictor()
        except ModuleNotFoundError as e:
            raise ValueError(f"{e}; aligned face crops need no detector: --no-align") from e
    # The output folder before the model: a place that cannot be written fails at once.
    out_root, created = prepare_output_folder(out_dir)
    written = 0
    try:
        jobs = _plan(readable, out_root, overwrite, skips)
        if not jobs:  # every output exists (or is claimed twice): before the model
            raise skips.nothing_written()
        loaded = load_model(checkpoint)
        if bundled:
            card = inference.PRETRAINED_DIR / "README.md"
            print(f"using the bundled model {describe(loaded)}; see {card}")
        elif "card" in loaded.meta:  # a weights file: say which model it holds
            print(f"using the model {describe(loaded)}")
        if align:
            counts = _run_photos(
                loaded,
                jobs,
                out_root,
                skips,
                overwrite=overwrite,
                batch_size=batch_size,
                upsample=upsample,
                max_downscale=max_downscale,
                large_faces=large_faces,
                resample=resample,
            )
            written = counts["images"] + counts["crops"]
            crops = ""
            if counts["crops"]:
                names = counts["crop_names"]
                shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
                crops = (
                    f"; {counts['crops']} large face(s) left as they were in the photo, only "
                    f"the deblurred {loaded.image_size}-px crop written for each ({shown})"
                )
            print(
                f"deblurred {counts['faces']} face(s) in {counts['images']} image(s) into "
                f"{out_dir}{crops}; skipped {len(skips)}"
            )
        else:
            written = _run_aligned(
                loaded,
                jobs,
                skips,
                overwrite=overwrite,
                batch_size=batch_size,
                max_downscale=max_downscale,
                resample=resample,
            )
            print(f"deblurred {written} image(s) into {out_dir}; skipped {len(skips)}")
        if not written and len(skips):
            raise skips.nothing_written()
    finally:
        if not written:  # only the folders this call created, and only if empty
            remove_created(created)
    return 0
