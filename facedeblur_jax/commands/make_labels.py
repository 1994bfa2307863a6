"""``facedeblur make-labels``: pseudo face-parsing labels (11 Helen classes) for a folder of
aligned face crops.

    facedeblur make-labels --data DIR --out LABEL_DIR [--overlay grid.png]
        [--limit N] [--workers N] [--overwrite]

Walks DIR for images (.png, .jpg, …; LABEL_DIR itself is skipped when it lies inside DIR),
finds dlib's 68 landmarks (the fixed aligned-crop box when the detector finds no face) and
writes ``LABEL_DIR/<relative path>.png`` (mode "L", pixel = class 0..10; see
facedeblur_jax/faces/pseudo_labels.py for the classes and how each is drawn). Existing label
files are never overwritten unless --overwrite. Unreadable images are skipped with a warning
naming the file. LABEL_DIR/report.json gets the counts: total, labelled, detected, fallback
(no detection), failed_sanity (landmarks failing the sanity check — labelled anyway, listed
with their problems), unreadable (with names). --overlay writes a grid of 32 evenly spaced
results (image | labels over it | label colours), ×2 nearest-neighbour, to look at.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import pathlib
import sys
import time

import numpy as np
from PIL import Image

from facedeblur_jax import commands
from facedeblur_jax.core import imageio
from facedeblur_jax.core.imageio import IMAGE_SUFFIXES, ImageError, load_image, safe_output_path
from facedeblur_jax.data.label_io import save_labels
from facedeblur_jax.data.parsing_palette import colorize, overlay
from facedeblur_jax.faces.landmarks import landmarks
from facedeblur_jax.faces.pseudo_labels import labels_from_landmarks, landmark_problems

GRID_TILES = 32


def find_images(data: pathlib.Path, exclude: pathlib.Path | None = None) -> list[pathlib.Path]:
    """Image files under ``data`` (sorted, relative), skipping hidden names and ``exclude``."""
    data = data.resolve()
    exclude = exclude.resolve() if exclude is not None else None
    found = []
    for root, dirs, files in os.walk(data):
        root_path = pathlib.Path(root)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".") and (exclude is None or (root_path / d).resolve() != exclude)
        )
        for name in files:
            if not name.startswith(".") and pathlib.Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append((root_path / name).relative_to(data))
    return sorted(found)


def label_one(task: tuple[str, str, bool, bool]) -> dict:
    """Worker: labels one image. ``task = (image path, label path, overwrite, keep arrays)``."""
    src, dst, overwrite, keep = task
    record = {"file": src}
    try:
        image = load_image(src)
    except (ImageError, OSError) as e:
        record["error"] = str(e)
        return record
    points, detected = landmarks(image)
    labels = labels_from_landmarks(points, image.shape[:2], image=image)
    save_labels(dst, labels, overwrite=overwrite)
    record.update(detected=detected, problems=landmark_problems(points, image.shape[:2]))
    if keep:
        record.update(image=image, labels=labels)
    return record


def overlay_grid(records: list[dict], scale: int = 2) -> np.ndarray:
    """``uint8`` grid of (image | overlay | label colours) triples, upscaled ``scale``×."""
    tiles = []
    for r in records:
        image, labels = r["image"], r["labels"]
        triple = np.concatenate([image, overlay(image, labels, 0.5), colorize(labels)], axis=1)
        tiles.append(triple.repeat(scale, 0).repeat(scale, 1))
    return imageio.grid(tiles, columns=4, pad=4)


def _error(message: str) -> None:
    print(f"facedeblur make-labels: error: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = commands.parser(
        "make-labels",
        "Writes pseudo parsing labels (the 11 Helen classes, drawn from dlib's 68 landmarks) "
        "for every image under --data as --out/<relative path>.png, plus --out/report.json "
        "(counts: detected, fallback box, failed sanity check, unreadable). Needs the "
        "[faces] extra (dlib). Existing labels are never replaced without --overwrite.",
    )
    parser.add_argument("--data", required=True, type=pathlib.Path, help="image folder")
    parser.add_argument("--out", required=True, type=pathlib.Path, help="label folder")
    parser.add_argument("--overlay", type=pathlib.Path, help="write an overlay grid PNG here")
    parser.add_argument("--limit", type=int, help="only the first N images (sorted by path)")
    parser.add_argument("--workers", type=int, default=1, help="processes")
    parser.add_argument("--overwrite", action="store_true", help="replace existing labels")
    args = parser.parse_args(argv)

    if not args.data.is_dir():
        print(
            f"facedeblur make-labels: error: --data {str(args.data)!r} is not a folder",
            file=sys.stderr,
        )
        return 2
    files = find_images(args.data, exclude=args.out)
    if args.limit is not None:
        files = files[: max(0, args.limit)]
    if not files:
        print(
            f"facedeblur make-labels: error: no images found under {str(args.data)!r}",
            file=sys.stderr,
        )
        return 2
    out = args.out.resolve()
    targets = [safe_output_path(out, str(f.with_suffix(".png"))) for f in files]
    clashes = len(targets) - len(set(targets))
    if clashes:
        _error(f"{clashes} image(s) map to the same label file (e.g. a.png and a.jpg)")
        return 2
    report_path = safe_output_path(out, "report.json")
    existing = [t for t in [*targets, report_path] if t.exists()]
    if existing and not args.overwrite:
        _error(
            f"{len(existing)} output file(s) already exist in {str(out)!r} "
            f"(e.g. {str(existing[0])!r}); refusing to overwrite without --overwrite"
        )
        return 2
    if args.overlay is not None and args.overlay.exists() and not args.overwrite:
        print(
            f"facedeblur make-labels: error: overlay {str(args.overlay)!r} exists; use --overwrite",
            file=sys.stderr,
        )
        return 2

    show = set(np.linspace(0, len(files) - 1, min(GRID_TILES, len(files))).round().astype(int))
    show = show if args.overlay is not None else set()
    data = args.data.resolve()
    tasks = [
        (str(data / f), str(t), args.overwrite, i in show)
        for i, (f, t) in enumerate(zip(files, targets, strict=True))
    ]
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if args.workers > 1:
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(args.workers))
            results = pool.imap(label_one, tasks, chunksize=16)
        else:
            results = map(label_one, tasks)
        records = []
        for r in results:
            if "error" in r:
                print(
                    f"warning: skipped unreadable image {r['file']!r}: {r['error']}",
                    file=sys.stderr,
                )
            records.append(r)
    seconds = time.perf_counter() - start

    unreadable = [{"file": r["file"], "error": r["error"]} for r in records if "error" in r]
    done = [r for r in records if "error" not in r]
    rel = {str(data / f): str(f) for f in files}
    report = {
        "data": str(args.data),
        "out": str(args.out),
        "total": len(records),
        "labelled": len(done),
        "detected": sum(r["detected"] for r in done),
        "fallback": sum(not r["detected"] for r in done),
        "failed_sanity": sum(bool(r["problems"]) for r in done),
        "unreadable": len(unreadable),
        "seconds": round(seconds, 2),
        "workers": args.workers,
        "unreadable_files": [{"file": rel[u["file"]], "error": u["error"]} for u in unreadable],
        "fallback_files": [rel[r["file"]] for r in done if not r["detected"]],
        "failed_sanity_files": {rel[r["file"]]: r["problems"] for r in done if r["problems"]},
    }
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=2) + "\n")

    if args.overlay is not None:
        shown = [r for r in records if "image" in r]
        if shown:
            args.overlay.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(overlay_grid(shown)).save(args.overlay)
    print(
        f"{report['labelled']} of {report['total']} images labelled in {seconds:.1f} s: "
        f"{report['detected']} detected, {report['fallback']} fallback box, "
        f"{report['failed_sanity']} failed the sanity check, {report['unreadable']} unreadable "
        f"-> {str(report_path)!r}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
