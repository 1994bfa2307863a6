"""``facedeblur deblur``: deblur aligned face crops given as files or folders.

Each image is resized to the model's input size, deblurred and resized back to its own
size, then written as ``OUT/<stem>.png``. Unreadable files are reported and skipped; an
existing output (or an output that would replace an input) is never overwritten unless
``--overwrite``; output names are resolved inside ``OUT``.
"""

from __future__ import annotations

import pathlib

import numpy as np

from facedeblur_jax import imageio
from facedeblur_jax.inference import deblur_array, load_model


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


def run(
    checkpoint: str,
    inputs: list[str],
    out_dir: str,
    *,
    overwrite: bool = False,
    batch_size: int = 32,
) -> int:
    files = collect_inputs(inputs)
    if not files:
        raise ValueError(f"no images found in {inputs}")
    loaded = load_model(checkpoint)
    size = loaded.image_size
    out_root = pathlib.Path(out_dir)
    out_root.mkdir(parents=True, exist_ok=True)
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
        try:
            image = imageio.load_image(path)
        except imageio.ImageError as e:
            print(f"skip {path}: {e}")
            skipped += 1
            continue
        seen.add(target)
        jobs.append((path, target, image))
    if jobs:
        batch = np.stack([imageio.resize(image, size) for _, _, image in jobs])
        restored = deblur_array(loaded, batch, batch_size=batch_size)
        for (_, target, image), y in zip(jobs, restored, strict=True):
            y8 = imageio.to_uint8(y)
            if image.shape[:2] != (size, size):
                y8 = imageio.resize_hw(y8, image.shape[0], image.shape[1])
            imageio.save_image(target, y8, overwrite=overwrite)
    print(f"deblurred {len(jobs)} image(s) into {out_root}; skipped {skipped}")
    return 0 if jobs or not skipped else 1
