"""``facedeblur data prepare celeba``: CelebA in its own layout → an aligned face folder.

    facedeblur data prepare celeba --src DIR --out OUT [--images DIR]
        [--layout auto|img_celeba|img_align_celeba] [--size 128] [--seed 0]
        [--split 0.8,0.1,0.1] [--limit N] [--workers N] [--tfds] [--overwrite]

Reads a CelebA release (``facedeblur_jax/data/celeba.py``: layouts, annotation files,
alignment, splits) and writes::

    OUT/train/<stem>.png  OUT/val/<stem>.png  OUT/test/<stem>.png    aligned S × S faces
    OUT/labels/<split>/<stem>.png     pseudo parsing labels (faces/pseudo_labels.py)
    OUT/labels.csv                    split,file,identity (the "faces" source's index)
    OUT/manifest.json                 settings, versions, counts, splits, failures with
                                      their reasons, the sha256 of every file written
    OUT/tfds/                         with --tfds: the same as TFDS ArrayRecord

so that ``--config.data.source=faces --config.data.root=OUT`` trains from it and
``facedeblur eval --data OUT`` scores its test split. The labels are drawn from the 68
dlib landmarks in the crop (``img_celeba``: the photo's landmarks mapped into the crop;
``img_align_celeba``: found on the crop, from dlib's fixed box when its detector misses).

Resumable: progress is journalled in ``OUT/.prepare/`` (one line per finished image, after
its files are written atomically); the same command run again after an interruption skips
the finished images and ends with the same files and manifest as an uninterrupted run. A
run on a finished ``OUT`` with the same settings does nothing. Deterministic: the outputs
depend on the settings and the files only (not on ``--workers`` or timing; the manifest
holds no times). ``OUT`` holding anything else (another run's settings, other files) is
refused unless ``--overwrite``, which first removes the files a previous prepare run there
listed.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import importlib.metadata
import io
import json
import multiprocessing
import pathlib
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import tqdm
from PIL import Image

from facedeblur_jax import commands
from facedeblur_jax.core import imageio
from facedeblur_jax.core.atomic import atomic_write
from facedeblur_jax.core.digest import sha256_bytes, sha256_file
from facedeblur_jax.data import celeba
from facedeblur_jax.faces import celeba as face_celeba
from facedeblur_jax.faces.pseudo_labels import labels_from_landmarks, landmark_problems

PROG = "data prepare celeba"
FORMAT = 1
STATE_DIR = ".prepare"
SETTINGS_FILE = "settings.json"
JOURNAL_FILE = "journal.jsonl"
MANIFEST = "manifest.json"
LABELS_CSV = "labels.csv"
TFDS_DIR = "tfds"
VERSIONED = ("facedeblur_jax", "dlib-bin", "face_recognition_models", "numpy", "scipy", "pillow")


def build_parser():
    p = commands.parser(
        PROG,
        "Aligns the faces of a CelebA release (img_celeba: dlib's detector and landmarks; "
        "img_align_celeba: its landmark file) onto the training crops' 5-point template "
        "and writes OUT/<split>/<stem>.png, pseudo parsing labels in OUT/labels/, "
        "OUT/labels.csv and OUT/manifest.json (sha256 of every file, failures with "
        "reasons). Splits are identity-disjoint: CelebA's list_eval_partition.txt when it "
        "lists every image, else a seeded split of the identities. An interrupted run "
        "resumes when started again. Needs the [faces] extra (dlib).\n\n"
        "Train and evaluate on the result:\n"
        "  facedeblur train --config paper --workdir runs/paper --config.data.root=OUT\n"
        "  facedeblur eval --checkpoint runs/paper --data OUT --kernels BANK --out EVAL",
    )
    p.add_argument(
        "--src",
        required=True,
        type=pathlib.Path,
        help="the CelebA folder: identity_CelebA.txt (and the other annotation files) in "
        "it or in its Anno/ and Eval/, the images in img_celeba/, img_align_celeba/ or "
        "Img/<layout>/",
    )
    p.add_argument("--out", required=True, type=pathlib.Path, help="output folder")
    p.add_argument(
        "--images",
        type=pathlib.Path,
        default=None,
        help="the image folder when it is not one of those under --src",
    )
    p.add_argument(
        "--layout",
        default="auto",
        choices=("auto", *celeba.LAYOUTS),
        help="auto: from the image folder's name; for another name img_align_celeba when "
        "its landmark file exists and the first image is 178×218, else img_celeba",
    )
    p.add_argument("--size", type=int, default=128, help="side of the aligned crops (px)")
    p.add_argument("--seed", type=int, default=0, help="seed of the identity split")
    p.add_argument(
        "--split",
        default=",".join(f"{f:g}" for f in celeba.DEFAULT_FRACTIONS),
        help="train,val,test fractions of the images for the seeded identity split",
    )
    p.add_argument("--limit", type=int, default=None, help="only the first N images by name")
    p.add_argument("--workers", type=int, default=1, help="processes aligning faces")
    p.add_argument("--tfds", action="store_true", help="also write OUT/tfds (TFDS ArrayRecord)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace what another run left in --out"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


# --- files -----------------------------------------------------------------------------------


def png_bytes(array: np.ndarray) -> bytes:
    """``uint8[H, W, 3]`` (RGB) or ``uint8[H, W]`` (mode L, optimised) as PNG bytes."""
    buffer = io.BytesIO()
    array = np.ascontiguousarray(array, np.uint8)
    if array.ndim == 2:
        Image.fromarray(array, mode="L").save(buffer, format="PNG", optimize=True)
    else:
        Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_file(path: pathlib.Path, data: bytes) -> None:
    """``data`` to ``path`` atomically (our own output: replaced if a killed run left it)."""
    atomic_write(path, lambda tmp: pathlib.Path(tmp).write_bytes(data))


def write_json(path: pathlib.Path, obj: Any) -> None:
    text = json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    write_file(path, text.encode("utf-8"))


# --- one image -------------------------------------------------------------------------------


def output_names(stem: str, split: str) -> tuple[str, str]:
    """``(image, labels)`` paths of a face relative to OUT."""
    return f"{split}/{stem}.png", f"labels/{split}/{stem}.png"


def prepare_one(task: dict) -> dict:
    """Aligns one image and writes its crop and labels; returns its journal record.

    ``task``: ``name``, ``path``, ``split``, ``layout``, ``size``, ``out``, and ``points``
    (``img_align_celeba``: the five annotated points). The record has ``name``, ``split``
    and either ``files`` (``{relative path: sha256}``), ``detected`` and ``problems``, or
    ``reason`` and ``detail``.
    """

    record: dict[str, Any] = {"name": task["name"], "split": task["split"]}
    size = task["size"]
    try:
        try:
            image = imageio.load_image(task["path"])
        except (imageio.ImageError, OSError) as e:
            raise face_celeba.AlignmentError("unreadable image", str(e)) from e
        if task["layout"] == "img_celeba":
            face = face_celeba.align_wild(image, size)
        else:
            face = face_celeba.align_aligned(image, np.asarray(task["points"]), size)
    except face_celeba.AlignmentError as e:
        record.update(reason=e.reason, detail=str(e))
        return record
    labels = labels_from_landmarks(face.landmarks, (size, size), image=face.crop)
    out = pathlib.Path(task["out"])
    files = {}
    for name, array in zip(
        output_names(pathlib.Path(task["name"]).stem, task["split"]),
        (face.crop, labels),
        strict=True,
    ):
        data = png_bytes(array)
        write_file(imageio.safe_output_path(out, name), data)
        files[name] = sha256_bytes(data)
    record.update(
        files=files,
        detected=bool(face.detected),
        problems=landmark_problems(face.landmarks, (size, size)),
    )
    return record


# --- the run ---------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


@dataclasses.dataclass
class Plan:
    """What a run is to do, known before any image is aligned.

    Attributes:
      settings: what the outputs depend on (compared with a previous run's in ``OUT``).
      tasks: one :func:`prepare_one` task per image with an identity (and landmarks).
      failures: ``{image name: {"reason", "detail"}}`` of images skipped before aligning.
      identity_of: ``{image name: identity}`` of the tasks' images.
      splits: the split of each task's image and the rule that chose it.
      found: images found (after ``--limit``).
    """

    settings: dict
    tasks: list[dict]
    failures: dict[str, dict]
    identity_of: dict[str, str]
    splits: celeba.SplitPlan
    found: int


def make_plan(args) -> Plan:
    """Reads the release's file list and annotations; raises on bad arguments or files."""
    if args.size < 16:
        raise ValueError(f"--size must be at least 16; got {args.size}")
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1; got {args.workers}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1; got {args.limit}")
    fractions = celeba.parse_fractions(args.split)
    tree = celeba.find_tree(args.src, args.layout, args.images)
    names = celeba.list_images(tree.images)
    if args.limit is not None:
        names = names[: args.limit]
    if not names:
        raise FileNotFoundError(f"no .jpg or .png images in {str(tree.images)!r}")
    stems: dict[str, str] = {}
    for name in names:
        other = stems.setdefault(pathlib.Path(name).stem, name)
        if other != name:
            raise ValueError(
                f"{other!r} and {name!r} in {str(tree.images)!r} would both be written as "
                f"{pathlib.Path(name).stem}.png"
            )
    identities = celeba.read_identities(tree.identity_file)
    landmarks = celeba.read_aligned_landmarks(tree.landmark_file) if tree.landmark_file else {}
    partition = celeba.read_partition(tree.partition_file) if tree.partition_file else None
    failures = {}
    for name in names:
        if name not in identities:
            failures[name] = _failure("no identity", f"not listed in {celeba.IDENTITY_FILE}")
        elif tree.layout == "img_align_celeba" and name not in landmarks:
            failures[name] = _failure(
                "no landmarks", f"not listed in {celeba.ALIGNED_LANDMARKS_FILE}"
            )
    identity_of = {n: identities[n] for n in names if n not in failures}
    if not identity_of:
        raise ValueError(f"none of the {len(names)} images is listed in {celeba.IDENTITY_FILE}")
    splits = celeba.assign_splits(
        identity_of, partition=partition, fractions=fractions, seed=args.seed
    )
    out = args.out.resolve()
    tasks = [
        {
            "name": name,
            "path": str(tree.images / name),
            "split": splits.split_of[name],
            "layout": tree.layout,
            "size": args.size,
            "out": str(out),
            "points": landmarks[name].tolist() if name in landmarks else None,
        }
        for name in identity_of
    ]
    annotations = [tree.identity_file, tree.partition_file, tree.landmark_file]
    settings = {
        "format": FORMAT,
        "dataset": "celeba",
        "layout": tree.layout,
        "src": str(args.src.resolve()),
        "images": str(tree.images.resolve()),
        "annotations_sha256": {p.name: sha256_file(p) for p in annotations if p is not None},
        "size": args.size,
        "seed": args.seed,
        "fractions": list(fractions),
        "limit": args.limit,
    }
    return Plan(settings, tasks, failures, identity_of, splits, len(names))


def _failure(reason: str, detail: str) -> dict:
    return {"reason": reason, "detail": f"{reason}: {detail}"}


# --- the output folder -------------------------------------------------------------------------


def _load_json(path: pathlib.Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_journal(path: pathlib.Path) -> dict[str, dict]:
    """``{image name: record}`` of a journal; a torn last line (a killed run) is ignored."""
    records = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("name"), str):
                records[record["name"]] = record
    return records


def _finished(out: pathlib.Path, record: dict) -> bool:
    """The record is a failure, or all its files are there."""
    files = record.get("files")
    if files is None:
        return "reason" in record
    return all((out / name).is_file() for name in files)


def _previous_outputs(out: pathlib.Path) -> set[str]:
    """Files (relative to ``out``) a previous prepare run there wrote or listed."""
    names = set()
    manifest = _load_json(out / MANIFEST)
    if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict):
        names |= set(manifest["files"])
    for record in read_journal(out / STATE_DIR / JOURNAL_FILE).values():
        names |= set(record.get("files") or ())
    return names | {MANIFEST, LABELS_CSV}


def check_out(out: pathlib.Path, settings: dict, overwrite: bool) -> str:
    """``"fresh"``, ``"resume"`` or ``"done"`` for a run with ``settings`` into ``out``.

    Raises:
      FileExistsError: ``out`` holds another run's outputs or other files (and not
        ``overwrite``), or is a file.
    """
    if not out.exists():
        return "fresh"
    if not out.is_dir():
        raise FileExistsError(f"--out {str(out)!r} is a file, not a folder")
    state = out / STATE_DIR / SETTINGS_FILE
    previous, what = None, None
    if state.is_file():
        previous, what = _load_json(state), "an unfinished prepare run"
    elif (out / MANIFEST).is_file():
        manifest = _load_json(out / MANIFEST)
        previous = manifest.get("settings") if isinstance(manifest, dict) else None
        what = "a prepared data set"
    if previous == settings:
        return "resume" if state.is_file() else "done"
    if what is None and not any(out.iterdir()):
        return "fresh"
    if not overwrite:
        if isinstance(previous, dict):
            keys = sorted(k for k in {*previous, *settings} if previous.get(k) != settings.get(k))
            why = f"{what} with other settings ({', '.join(keys)})"
        else:
            why = what or "other files"
        raise FileExistsError(
            f"--out {str(out)!r} holds {why}; choose another --out, or --overwrite to replace it"
        )
    if what is not None:  # a previous prepare run: remove what it wrote
        for name in sorted(_previous_outputs(out)):
            with contextlib.suppress(ValueError):
                imageio.safe_output_path(out, name).unlink(missing_ok=True)
        shutil.rmtree(out / STATE_DIR, ignore_errors=True)
        shutil.rmtree(out / TFDS_DIR, ignore_errors=True)
    return "fresh"


def build_manifest(plan: Plan, records: dict[str, dict], out: pathlib.Path) -> tuple[dict, bytes]:
    """``(manifest, labels.csv bytes)`` once every task has a record."""
    ordered = [records[t["name"]] for t in plan.tasks]
    ok = [r for r in ordered if "files" in r]
    failures = dict(plan.failures)
    failures.update(
        {
            r["name"]: {"reason": r["reason"], "detail": r["detail"]}
            for r in ordered
            if "files" not in r
        }
    )
    files = {}
    rows = []
    for r in ok:
        image, labels = output_names(pathlib.Path(r["name"]).stem, r["split"])
        for name in (image, labels):
            files[name] = sha256_file(out / name)
        rows.append((celeba.SPLITS.index(r["split"]), image, plan.identity_of[r["name"]]))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["split", "file", "identity"])
    for split, image, identity in sorted(rows):
        writer.writerow([celeba.SPLITS[split], image, identity])
    labels_csv = text.getvalue().encode("utf-8")
    files[LABELS_CSV] = sha256_bytes(labels_csv)
    by_reason = {}
    for f in failures.values():
        by_reason[f["reason"]] = by_reason.get(f["reason"], 0) + 1
    aligned = {r["name"]: r["split"] for r in ok}
    fixed_box = sorted(output_names(pathlib.Path(r["name"]).stem, r["split"])[0]
                       for r in ok if not r["detected"])  # fmt: skip
    manifest = {
        "format": FORMAT,
        "tool": f"facedeblur {PROG}",
        "versions": _versions(),
        "settings": plan.settings,
        "split_rule": (
            f"{celeba.PARTITION_FILE} (lists every image)"
            if plan.splits.rule == "partition"
            else "seeded: identities sorted, permuted with the seed, cut by cumulative image "
            "count at the fractions"
        ),
        "identities_in_several_splits": list(plan.splits.shared_identities),
        "counts": {
            "images": plan.found,
            "aligned": len(ok),
            "failed": len(failures),
            "failed_by_reason": {k: by_reason[k] for k in face_celeba.REASONS if k in by_reason},
            "labels_from_fixed_box": len(fixed_box),
            "labels_failing_sanity_check": sum(bool(r["problems"]) for r in ok),
        },
        "splits": celeba.split_summary(aligned, plan.identity_of),
        "planned_splits": celeba.split_summary(plan.splits.split_of, plan.identity_of),
        "failures": {name: failures[name]["detail"] for name in sorted(failures)},
        "labels_from_fixed_box": fixed_box,
        "label_problems": {
            output_names(pathlib.Path(r["name"]).stem, r["split"])[1]: r["problems"]
            for r in ok
            if r["problems"]
        },
        "files": dict(sorted(files.items())),
    }
    return manifest, labels_csv


def _summary(manifest: dict, seconds: float | None, out: pathlib.Path) -> str:
    counts = manifest["counts"]
    by_reason = counts["failed_by_reason"]
    reasons = ", ".join(f"{k} {by_reason[k]}" for k in face_celeba.REASONS if k in by_reason)
    splits = "; ".join(
        f"{s} {manifest['splits'][s]['identities']} identities / "
        f"{manifest['splits'][s]['images']} images"
        for s in celeba.SPLITS
    )
    took = "" if seconds is None else f" (this run {seconds:.1f} s)"
    return (
        f"{counts['aligned']} of {counts['images']} images aligned at "
        f"{manifest['settings']['size']} px{took}; failed {counts['failed']}: {reasons or 'none'}. "
        f"Splits ({manifest['split_rule'].split(':')[0]}): {splits} -> {str(out)!r}"
    )


def _results(tasks: list[dict], workers: int, stack: contextlib.ExitStack) -> Iterable[dict]:
    if workers > 1 and len(tasks) > 1:
        pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(workers))
        return pool.imap_unordered(prepare_one, tasks, chunksize=4)
    return map(prepare_one, tasks)


def run(args) -> int:
    plan = make_plan(args)
    out = args.out.resolve()
    status = check_out(out, plan.settings, args.overwrite)
    if status == "done":
        manifest = _load_json(out / MANIFEST)
        print(
            f"already prepared with these settings; nothing to do. {_summary(manifest, None, out)}"
        )
        return _tfds(out, manifest) if args.tfds else 0
    state = out / STATE_DIR
    if status == "fresh":
        write_json(state / SETTINGS_FILE, plan.settings)
    journal_path = state / JOURNAL_FILE
    records = {
        name: r
        for name, r in read_journal(journal_path).items()
        if name in plan.identity_of and _finished(out, r)
    }
    todo = [t for t in plan.tasks if t["name"] not in records]
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        journal = stack.enter_context(journal_path.open("a+", encoding="utf-8"))
        journal.seek(0, 2)
        if journal.tell():  # a killed run may have left half a line: start a new one
            journal.seek(journal.tell() - 1)
            if journal.read(1) != "\n":
                journal.write("\n")
        bar = stack.enter_context(
            tqdm.tqdm(
                total=len(plan.tasks),
                initial=len(plan.tasks) - len(todo),
                unit="image",
                desc="aligning",
                disable=args.no_progress,
            )
        )
        for record in _results(todo, args.workers, stack):
            journal.write(json.dumps(record, sort_keys=True) + "\n")
            journal.flush()
            records[record["name"]] = record
            bar.update()
    seconds = time.perf_counter() - start
    manifest, labels_csv = build_manifest(plan, records, out)
    write_file(out / LABELS_CSV, labels_csv)
    write_json(out / MANIFEST, manifest)
    shutil.rmtree(state)
    print(_summary(manifest, seconds, out))
    return _tfds(out, manifest) if args.tfds else 0


def _tfds(out: pathlib.Path, manifest: dict) -> int:
    """Writes OUT/tfds from the prepared folder (kept when it is there already)."""
    from facedeblur_jax.data import tfds_builder  # deferred: imports tensorflow_datasets

    splits = [s for s, v in manifest["splits"].items() if v["images"]]
    path = tfds_builder.build(out, out / TFDS_DIR, label_root=out / "labels", splits=splits)
    print(
        f"TFDS ArrayRecord data set in {str(path)!r}: train from it with "
        f"--config.data.source=tfds --config.data.root={out / TFDS_DIR}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as e:
        print(f"facedeblur {PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"facedeblur {PROG}: interrupted; the same command resumes where it stopped",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
