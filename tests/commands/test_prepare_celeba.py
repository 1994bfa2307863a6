"""``facedeblur data prepare celeba`` on small CelebA trees in both layouts: outputs, manifest,
the "faces" source reading the result, determinism, resuming after an interruption,
refusals, one-line errors. dlib, PNG encoding and the file system are real."""

import hashlib
import json
import os
import pathlib
import sys

import numpy as np
import pytest

from facedeblur_jax import cli
from facedeblur_jax.commands import prepare_celeba
from facedeblur_jax.config import load_config
from facedeblur_jax.data import celeba, label_io
from facedeblur_jax.data.sources import make_source
from facedeblur_jax.faces import celeba as faces_celeba
from tests import processes
from tests.conftest import REPO_ROOT
from tests.data import celeba_tree

SIZE = 128  # the "face too small" photo enlarges past 2x only at this size


@pytest.fixture(scope="module")
def wild(tmp_path_factory):
    root = tmp_path_factory.mktemp("celeba")
    return root, celeba_tree.write_wild_tree(root)


def prepare(*args) -> int:
    return cli.main(["data", "prepare", "celeba", *map(str, args)])


def tree_bytes(out: pathlib.Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def prepared(wild, tmp_path_factory):
    """One uninterrupted run (seed 0, 0.5/0.25/0.25) shared by the tests that only read."""
    root, _ = wild
    out = tmp_path_factory.mktemp("prepared") / "out"
    args = ("--src", root, "--out", out, "--size", SIZE, "--split", "0.5,0.25,0.25")
    args = (*args, "--no-progress")
    assert prepare(*args) == 0
    return out, args


def test_prepare_writes_faces_labels_csv_and_manifest(wild, prepared, capsys):
    _, info = wild
    out, _ = prepared
    manifest = json.loads((out / "manifest.json").read_text())
    good, failing = info["good"], info["failing"]
    assert manifest["counts"]["images"] == len(good) + len(failing)
    assert manifest["counts"]["aligned"] == len(good)
    assert {n: d.split(":")[0] for n, d in manifest["failures"].items()} == failing
    assert manifest["counts"]["failed_by_reason"] == {
        r: 1 for r in faces_celeba.REASONS if r in failing.values()
    }
    assert manifest["settings"]["layout"] == "img_celeba"
    assert manifest["settings"]["size"] == SIZE and manifest["split_rule"].startswith("seeded")
    assert not (out / ".prepare").exists()

    # Every file written is listed with its sha256, and nothing else is there.
    files = manifest["files"]
    on_disk = {k for k in tree_bytes(out) if k != "manifest.json"}
    assert set(files) == on_disk
    for name, digest in files.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest

    # labels.csv: split,file,identity for each aligned face; identities in one split each.
    rows = [line.split(",") for line in (out / "labels.csv").read_text().splitlines()]
    assert rows[0] == ["split", "file", "identity"]
    by_file = {f: (s, i) for s, f, i in rows[1:]}
    assert len(by_file) == len(good)
    for name in good:
        (split,) = [s for s in celeba.SPLITS if f"{s}/{name[:-4]}.png" in by_file]
        assert by_file[f"{split}/{name[:-4]}.png"] == (split, info["identity"][name])
    splits_of = {}
    for split, _, identity in rows[1:]:
        splits_of.setdefault(identity, set()).add(split)
    assert all(len(s) == 1 for s in splits_of.values())
    summary = manifest["splits"]
    assert sum(v["images"] for v in summary.values()) == len(good)
    assert {v["identities"] for v in summary.values()} and all(
        summary[s]["images"] for s in ("train", "test")
    )

    # The "faces" source reads the folder: aligned images and their pseudo labels.
    config = load_config("tiny")
    with config.unlocked():
        config.data.source, config.data.root = "faces", str(out)
    for split in celeba.SPLITS:
        source = make_source(config.data, split)
        assert len(source) == summary[split]["images"]
        for i in range(len(source)):
            record = source[i]
            assert record["image"].shape == (SIZE, SIZE, 3)
            labels = record["labels"]
            assert labels.shape == (SIZE, SIZE) and {1, 4, 5, 6} <= set(np.unique(labels).tolist())
            assert source.identity_name(record["identity"]) == by_file[record["name"] + ".png"][1]


def test_a_finished_run_is_left_alone_and_other_settings_are_refused(wild, prepared, capsys):
    out, args = prepared
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert prepare(*args) == 0
    assert "already prepared" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert prepare(*args, "--seed", 1) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(out) in err and "(seed)" in err and "--overwrite" in err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_two_runs_give_byte_identical_outputs_with_one_or_two_workers(wild, prepared, tmp_path):
    out, args = prepared
    other = tmp_path / "again"
    swapped = [str(a) if a != out else other for a in args]
    assert prepare(*swapped, "--workers", 2) == 0
    first, second = tree_bytes(out), tree_bytes(other)
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []


def test_an_interrupted_run_resumes_to_the_same_result(wild, prepared, tmp_path, monkeypatch):
    _, info = wild
    out, args = prepared
    resumed = tmp_path / "resumed"
    swapped = [str(a) if a != out else resumed for a in args]
    # Writes: settings.json, crop and labels of faces 1 and 2, the crop of face 3, then
    # the run is interrupted before face 3's labels.
    real_write, writes = prepare_celeba.write_file, []

    def interrupted_write(path, data):
        writes.append(path)
        if len(writes) == 7:
            raise KeyboardInterrupt
        real_write(path, data)

    monkeypatch.setattr(prepare_celeba, "write_file", interrupted_write)
    assert prepare(*swapped) == 130
    state = resumed / ".prepare"
    assert (state / "journal.jsonl").is_file() and not (resumed / "manifest.json").exists()
    assert (resumed / "labels.csv").exists() is False
    # A run killed while appending to its journal leaves half a line.
    with open(state / "journal.jsonl", "a") as f:
        f.write('{"name": "000004.jp')
    monkeypatch.setattr(prepare_celeba, "write_file", real_write)
    real_prepare_one, redone = prepare_celeba.prepare_one, []
    monkeypatch.setattr(
        prepare_celeba, "prepare_one", lambda task: redone.append(task) or real_prepare_one(task)
    )
    assert prepare(*swapped) == 0
    tasks = len(info["good"]) + len(info["failing"]) - 1  # all but the unlisted image
    assert len(redone) == tasks - 2  # the two finished faces are not redone
    assert tree_bytes(resumed) == tree_bytes(out)


def test_img_align_celeba_with_its_partition_file(tmp_path, capsys):
    root = tmp_path / "CelebA"
    images = root / "Img" / "img_align_celeba"
    identities = {1: 5, 2: 5, 3: 8, 4: 8, 5: 9, 6: 9}
    landmarks = []
    for k in identities:
        image, points = celeba_tree.aligned_image(k)
        celeba_tree.write_jpg(images / f"{k:06d}.jpg", image)
        landmarks.append((f"{k:06d}.jpg", *np.round(points).astype(int).ravel()))
    celeba_tree.write_jpg(images / "000007.jpg", np.zeros((200, 178, 3), np.uint8))  # size
    celeba_tree.write_jpg(images / "000008.jpg", celeba_tree.aligned_image(1)[0])  # no points
    identities |= {7: 10, 8: 10}
    celeba_tree.write_annotation(
        root / "Anno" / "identity_CelebA.txt", [(f"{k:06d}.jpg", i) for k, i in identities.items()]
    )
    celeba_tree.write_annotation(
        root / "Anno" / "list_landmarks_align_celeba.txt",
        [*landmarks, ("000007.jpg", *landmarks[0][1:])],
        header="lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x "
        "leftmouth_y rightmouth_x rightmouth_y",
    )
    partition = {1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 2, 7: 0, 8: 2}
    celeba_tree.write_annotation(
        root / "Eval" / "list_eval_partition.txt",
        [(f"{k:06d}.jpg", p) for k, p in partition.items()],
    )
    out = tmp_path / "out"
    assert prepare("--src", root, "--out", out, "--size", 64, "--no-progress") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["layout"] == "img_align_celeba"
    assert manifest["split_rule"].startswith("list_eval_partition.txt")
    assert manifest["identities_in_several_splits"] == []
    assert manifest["failures"]["000007.jpg"].startswith("wrong image size: 178×200")
    assert manifest["failures"]["000008.jpg"].startswith("no landmarks")
    assert manifest["splits"] == {
        "train": {"identities": 1, "images": 2},
        "val": {"identities": 1, "images": 2},
        "test": {"identities": 1, "images": 2},
    }
    rows = (out / "labels.csv").read_text().splitlines()
    assert rows[1:] == [
        "train,train/000001.png,5",
        "train,train/000002.png,5",
        "val,val/000003.png,8",
        "val,val/000004.png,8",
        "test,test/000005.png,9",
        "test,test/000006.png,9",
    ]
    labels = label_io.load_labels(out / "labels" / "test" / "000005.png")
    assert labels.shape == (64, 64) and {1, 4, 5, 6} <= set(np.unique(labels).tolist())


def test_overwrite_replaces_a_previous_run_and_removes_its_files(wild, tmp_path, capsys):
    root, _ = wild
    out = tmp_path / "out"
    base = ("--src", root, "--out", out, "--size", 64, "--limit", 6, "--no-progress")
    assert prepare(*base, "--split", "0.4,0.3,0.3") == 0
    old = set(json.loads((out / "manifest.json").read_text())["files"])
    assert prepare(*base, "--split", "0.4,0.3,0.3", "--seed", 3) == 2
    assert "(seed)" in capsys.readouterr().err
    assert prepare(*base, "--split", "0.4,0.3,0.3", "--seed", 3, "--overwrite") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    new = set(manifest["files"])
    assert old != new and manifest["settings"]["seed"] == 3
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk == new | {"manifest.json"}  # no file of the old split is left


def test_an_out_folder_with_other_files_is_refused(wild, tmp_path, capsys):
    root, _ = wild
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert prepare("--src", root, "--out", out, "--limit", 2, "--no-progress") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "holds other files" in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    assert prepare("--src", root, "--out", tmp_path / "file", "--no-progress") == 2
    assert "is a file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("--split", "0.5,0.5"), "split fractions must be"),
        (("--size", "8"), "--size must be at least 16"),
        (("--workers", "0"), "--workers must be at least 1"),
        (("--limit", "0"), "--limit must be at least 1"),
        (("--layout", "img_align_celeba"), "no CelebA image folder"),
    ],
)
def test_bad_arguments_are_one_line(wild, tmp_path, capsys, args, match):
    root, _ = wild
    assert prepare("--src", root, "--out", tmp_path / "out", *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("facedeblur data prepare celeba: error: ") and match in err
    assert "\n" not in err and not (tmp_path / "out").exists()


def test_a_release_without_identities_is_one_line(tmp_path, capsys):
    celeba_tree.write_jpg(tmp_path / "img_celeba" / "000001.jpg", celeba_tree.good_photo(1))
    assert prepare("--src", tmp_path, "--out", tmp_path / "out") == 2
    assert "identity_CelebA.txt not found" in capsys.readouterr().err
    assert prepare("--src", tmp_path / "missing", "--out", tmp_path / "out") == 2
    assert "CelebA folder" in capsys.readouterr().err


def test_the_command_line_in_a_fresh_process_with_tfds(wild, tmp_path):
    """The installed entry point's module path, and the ArrayRecord copy that the "tfds"
    source reads back with the same records as the folder."""
    root, _ = wild
    out = tmp_path / "out"
    result = processes.run(
        [sys.executable, "-m", "facedeblur_jax.cli", "data", "prepare", "celeba",
         "--src", str(root), "--out", str(out), "--limit", "8", "--size", "64",
         "--split", "0.5,0.25,0.25", "--tfds"],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, watch=[out],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "aligned at 64 px" in result.stdout and "--config.data.source=tfds" in result.stdout
    config = load_config("tiny")
    with config.unlocked():
        config.data.source, config.data.root = "tfds", str(out / "tfds")
        folder = config.copy_and_resolve_references()
        folder.data.source, folder.data.root = "faces", str(out)
    for split in celeba.SPLITS:
        tfds_source, folder_source = (
            make_source(config.data, split),
            make_source(folder.data, split),
        )
        assert len(tfds_source) == len(folder_source) > 0
        a, b = tfds_source[0], folder_source[0]
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["labels"], b["labels"])


def test_two_images_with_one_stem_are_refused(tmp_path, capsys):
    celeba_tree.write_jpg(tmp_path / "img_celeba" / "000001.jpg", celeba_tree.good_photo(1))
    celeba_tree.write_jpg(tmp_path / "img_celeba" / "000001.png", celeba_tree.good_photo(2))
    rows = [("000001.jpg", 1), ("000001.png", 2)]
    celeba_tree.write_annotation(tmp_path / "identity_CelebA.txt", rows)
    assert prepare("--src", tmp_path, "--out", tmp_path / "out") == 2
    assert "would both be written as 000001.png" in capsys.readouterr().err
