"""Bad input, tried as a new user would: the real command line over a table of cases.

Every case of :data:`CASES` runs ``facedeblur ARGS`` in its own process (forked from a
server that has imported the package once, ``tests/forked_cli.py``: the same code path as
``python -m facedeblur_jax.cli ARGS``, without ~5 s of imports per case) in its own folder,
with the permissions an ordinary user has (also under root), and asserts:

* the exit status (2: input the user can fix; 1: a failure during the work; 0);
* stderr: exactly one non-empty line, ``facedeblur CMD: error: ...`` matching the case's
  pattern, for a failure; nothing for a success; never a ``Traceback``;
* every file that existed before is byte-identical after, and nothing new appears (no
  empty output folder, no temporary file) but the outputs the case names.

The fixtures (a tiny Orbax checkpoint, a weights file, a kernel bank, a photo) are built once
for the module; cases copy and damage what they need. A new command or a new kind of bad
input joins the table. ``test_the_forked_runs_are_the_real_cli`` runs one case both ways.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from facedeblur_jax import cli
from facedeblur_jax.core import imageio, sample_data
from facedeblur_jax.degrade import kernel_bank
from tests import processes, zero_model
from tests.faces.synthetic_photo import photo_with_face
from tests.zero_model import zero_array_data

FACE = "face.png"
RO = 0o555  # a folder the user cannot write to


@dataclasses.dataclass(frozen=True)
class Fixtures:
    root: pathlib.Path  # shared, read-only for the cases
    ckpt: pathlib.Path  # a workdir of the 32-px model, one checkpoint (step 2)
    ckpt2: pathlib.Path  # the same with checkpoints at steps 2 and 4
    npz: pathlib.Path  # its generator as a weights file
    bank: pathlib.Path  # a 1-kernel bank
    face: pathlib.Path  # a bundled 112-px face
    photo: pathlib.Path  # a 320×240 photo with one face (large for the 32-px model)


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[pathlib.Path, Fixtures], list[str]]  # makes the case's files; -> argv
    rc: int
    err: str | None = None  # pattern of the one stderr line after "facedeblur CMD: error: "
    out: str | None = None  # pattern searched in stdout
    changes: tuple[str, ...] = ()  # globs (relative to the case folder) allowed to appear
    check: Callable[[pathlib.Path, str], None] | None = None  # more checks (folder, stdout)


# --- helpers that make the cases' files ----------------------------------------------------


def _copy(src: pathlib.Path, d: pathlib.Path, name: str | None = None) -> pathlib.Path:
    dst = d / (name or src.name)
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy(src, dst)
    return dst


def _read_only(folder: pathlib.Path) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(RO)
    return folder


def _garble(folder: pathlib.Path, seed: int = 0) -> None:
    """Overwrites every file under ``folder`` but Orbax's commit markers with random bytes."""
    rng = np.random.default_rng(seed)
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "commit_success.txt":
            p.write_bytes(rng.integers(0, 256, 100, dtype=np.uint8).tobytes())


def _corrupt_arrays(step_dir: pathlib.Path) -> None:
    """Zeroes the middle half of each array data file Orbax's process wrote (a disk error,
    not a missing file): the state's metadata still reads, its arrays do not."""
    zero_array_data(step_dir)


def _png(path: pathlib.Path, array: np.ndarray, **kw) -> pathlib.Path:
    Image.fromarray(array).save(path, **kw)
    return path


def _face(fx: Fixtures) -> np.ndarray:
    return np.asarray(Image.open(fx.face).convert("RGB"))


def _deblur(fx: Fixtures, *args: str, ckpt: str | None = None) -> list[str]:
    return ["deblur", "--checkpoint", ckpt or str(fx.ckpt), *args]


def _bad_file(name: str, content: bytes):
    def build(d, fx):
        (d / name).write_bytes(content)
        return _deblur(fx, name, "--out", "out", "--no-align")

    return build


def _truncated_png(d, fx):
    raw = fx.face.read_bytes()
    (d / "cut.png").write_bytes(raw[: len(raw) // 2])
    return _deblur(fx, "cut.png", "--out", "out", "--no-align")


def _sixteen_bit(d, fx):
    gray = _face(fx).mean(-1)
    _png(d / "g16.png", (gray * 257).astype(np.uint16))
    return _deblur(fx, "g16.png", "--out", "out", "--no-align")


def _sixteen_bit_check(d, out):
    expected = np.asarray(Image.open(d / "g16.png")).astype(float) / 257
    got = np.asarray(Image.open(d / "out" / "g16.png").convert("L")).astype(float)
    assert got.shape == expected.shape
    assert abs(got.mean() - expected.mean()) < 6, (got.mean(), expected.mean())  # not white


def _rgba(d, fx):
    rgba = np.dstack([_face(fx), np.full(_face(fx).shape[:2], 200, np.uint8)])
    rgba[:20, :20, 3] = 0  # a transparent corner
    _png(d / "rgba.png", rgba)
    return _deblur(fx, "rgba.png", "--out", "out", "--no-align")


def _rgba_check(d, out):
    before = np.asarray(Image.open(d / "rgba.png"))
    after = Image.open(d / "out" / "rgba.png")
    assert after.mode == "RGBA"
    after = np.asarray(after)
    np.testing.assert_array_equal(after[..., 3], before[..., 3])  # alpha written back
    # Not composited onto black (which made it 22 % darker): the colours keep their level.
    assert abs(after[..., :3].mean() - before[..., :3].mean()) < 6


def _cmyk(d, fx):
    Image.fromarray(_face(fx)).convert("CMYK").save(d / "cmyk.jpg", quality=95)
    return _deblur(fx, "cmyk.jpg", "--out", "out", "--no-align")


def _float_tiff(d, fx):
    Image.fromarray(_face(fx).mean(-1).astype(np.float32) / 255).save(d / "float.tif")
    return _deblur(fx, "float.tif", "--out", "out", "--no-align")


def _one_pixel(align: bool):
    def build(d, fx):
        _png(d / "one.png", np.full((1, 1, 3), 128, np.uint8))
        return _deblur(fx, "one.png", "--out", "out", *([] if align else ["--no-align"]))

    return build


def _one_pixel_check(d, out):
    assert Image.open(d / "out" / "one.png").size == (1, 1)


def _subfolders(d, fx):
    (d / "in" / "sub" / "deeper").mkdir(parents=True)
    _copy(fx.face, d / "in", "a.png")
    _copy(fx.face, d / "in" / "sub", "b.png")
    _copy(fx.face, d / "in" / "sub" / "deeper", "c.jpg")
    return _deblur(fx, "in", "--out", "out", "--no-align")


def _several_bad(d, fx):
    (d / "in").mkdir()
    (d / "in" / "zero.png").write_bytes(b"")
    (d / "in" / "text.png").write_text("not an image\n")
    return _deblur(fx, "in", "--out", "out", "--no-align")


def _mixed(d, fx):
    (d / "in").mkdir()
    _copy(fx.face, d / "in", "good.png")
    (d / "in" / "zero.png").write_bytes(b"")
    return _deblur(fx, "in", "--out", "out", "--no-align")


def _collision(overwrite: bool):
    def build(d, fx):
        _copy(fx.face, d)
        (d / "out").mkdir()
        (d / "out" / FACE).write_bytes(b"an older result")
        extra = ["--overwrite"] if overwrite else []
        return _deblur(fx, FACE, "--out", "out", "--no-align", *extra)

    return build


def _into_inputs(d, fx):
    (d / "in").mkdir()
    _copy(fx.face, d / "in")
    return _deblur(fx, "in", "--out", "in", "--no-align")


def _unicode(d, fx):
    (d / "my phötos").mkdir()
    _copy(fx.face, d / "my phötos", "fäce 1.png")
    return _deblur(fx, "my phötos", "--out", "out dír", "--no-align")


def _unicode_check(d, out):
    assert Image.open(d / "out dír" / "fäce 1.png").size == (112, 112)


def _with_face(build):
    def wrapped(d, fx):
        _copy(fx.face, d)
        return build(d, fx)

    return wrapped


def _ckpt_case(prepare: Callable[[pathlib.Path], None], source: str = "ckpt", *args: str):
    """deblur with a copy of a fixture workdir that ``prepare`` damages."""

    @_with_face
    def build(d, fx):
        workdir = _copy(getattr(fx, source), d, "w")
        prepare(workdir)
        return _deblur(fx, FACE, "--out", "out", "--no-align", *args, ckpt="w")

    return build


def _items_deleted(w):
    for item in ("state", "meta"):
        shutil.rmtree(w / "checkpoints" / "2" / item)


def _truncate_metadata(w):
    meta = w / "checkpoints" / "2" / "state" / "_METADATA"
    meta.write_bytes(meta.read_bytes()[:50])


def _empty_checkpoints(w):
    shutil.rmtree(w / "checkpoints")
    (w / "checkpoints").mkdir()


def _pickled_npz(d, fx):
    np.savez(d / "bad.npz", params=np.array([{"x": 1}], dtype=object))
    _copy(fx.face, d)
    return _deblur(fx, FACE, "--out", "out", "--no-align", ckpt="bad.npz")


def _truncated_npz(d, fx):
    raw = fx.npz.read_bytes()
    (d / "cut.npz").write_bytes(raw[: len(raw) // 2])
    _copy(fx.face, d)
    return _deblur(fx, FACE, "--out", "out", "--no-align", ckpt="cut.npz")


def _foreign_npz(d, fx):
    np.savez(d / "vgg.npz", __format__=np.asarray("facedeblur_jax.vgg_face.v1"), a=np.zeros(3))
    _copy(fx.face, d)
    return _deblur(fx, FACE, "--out", "out", "--no-align", ckpt="vgg.npz")


def _train(d, fx, *args: str, workdir: str = "w") -> list[str]:
    return ["train", "--config", "tiny", "--workdir", workdir, "--no-progress", *args]


def _train_other_model(d, fx):
    _copy(fx.ckpt, d, "w")  # the micro layout; the run builds the tiny config's
    return _train(d, fx)


def _eval(fx, *args: str, ckpt: str | None = None, kernels: str | None = None) -> list[str]:
    return [
        "eval",
        "--checkpoint",
        ckpt or str(fx.ckpt),
        "--data",
        "sample",
        "--kernels",
        kernels or str(fx.bank),
        "--no-progress",
        *args,
    ]


def _eval_corrupt(d, fx):
    w = _copy(fx.ckpt, d, "w")
    _corrupt_arrays(w / "checkpoints" / "2")
    return _eval(fx, "--out", "out", ckpt="w")


def _export_weights_corrupt(d, fx):
    w = _copy(fx.ckpt, d, "w")
    _garble(w / "checkpoints" / "2" / "state")
    return ["export-weights", "--checkpoint", "w", "--out", "w.npz"]


def _obj_npy(d, fx):
    np.save(d / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return ["make-kernels", "--sizes", "3", "--per-size", "1", "--extra", "k=obj.npy"]


def _file(name: str, content: bytes = b"x"):
    """A build step that makes a file ``name`` in the case folder, then returns ``argv``."""

    def wrap(argv_of: Callable[[pathlib.Path, Fixtures], list[str]]):
        def build(d, fx):
            (d / name).write_bytes(content)
            return argv_of(d, fx)

        return build

    return wrap


def _ro_then(argv_of):
    def build(d, fx):
        _read_only(d / "ro")
        return argv_of(d, fx)

    return build


OUT = ("out", "out/*")
MK = ["make-kernels", "--sizes", "3", "--per-size", "1"]

CASES = [
    # --- the table ----------------------------------------------------------------
    Case(
        "ckpt_item_folders_deleted",
        _ckpt_case(_items_deleted),
        2,
        r"checkpoint '.*/w/checkpoints/2' cannot be read: its 'meta' item is missing or "
        r"corrupt .*; it is the only checkpoint in .*: restore it from a copy, or train anew",
    ),
    Case(
        "ckpt_arrays_garbage",
        _ckpt_case(lambda w: _garble(w / "checkpoints" / "2" / "state")),
        2,
        r"checkpoint '.*/w/checkpoints/2' cannot be read: its 'state' item is missing or corrupt",
    ),
    Case(
        "ckpt_arrays_corrupt",
        _ckpt_case(lambda w: _corrupt_arrays(w / "checkpoints" / "2")),
        2,
        r"checkpoint '.*/w/checkpoints/2' cannot be read: its arrays are corrupt or truncated",
    ),
    Case(
        "out_in_read_only_folder",
        _ro_then(_with_face(lambda d, fx: _deblur(fx, FACE, "--out", "ro/new", "--no-align"))),
        2,
        r"cannot create the output folder .*/ro/new: .*/ro is not writable \(Permission "
        r"denied\); choose another --out",
    ),
    Case(
        "out_is_read_only",
        _ro_then(_with_face(lambda d, fx: _deblur(fx, FACE, "--out", "ro", "--no-align"))),
        2,
        r"cannot write into .*/ro: .*/ro is not writable \(Permission denied\); choose another",
        check=lambda d, out: None if "deblurred" not in out else pytest.fail(out),
    ),
    Case(
        "out_is_a_file",
        _file("out.png")(_with_face(lambda d, fx: _deblur(fx, FACE, "--out", "out.png"))),
        2,
        r"--out .*/out\.png is a file, not a folder: name a folder \(it is created if missing\)",
    ),
    Case(
        "batch_size_0",
        _with_face(lambda d, fx: _deblur(fx, FACE, "--out", "out", "--batch-size", "0")),
        2,
        r"--batch-size must be at least 1",
    ),
    Case(
        "pickled_weights_file",
        _pickled_npz,
        2,
        r"bad\.npz is not a generator weights file written by facedeblur export-weights: it "
        r"holds pickled Python objects, which are never loaded(?!.*allow_pickle)",
    ),
    Case(
        "train_unknown_key_steps",
        lambda d, fx: _train(d, fx, "--config.train.steps=100"),
        2,
        r"unknown config override key 'train\.steps' \(did you mean 'phases\.<name>\.steps', "
        r"one per phase, e\.g\. 'phases\.coarse\.steps'\?\)",
    ),
    Case(
        "large_face_only_a_crop",
        lambda d, fx: _deblur(fx, str(fx.photo), "--out", "out"),
        0,
        out=r"deblurred 0 face\(s\) in 0 image\(s\) into out; 1 large face\(s\) left as they "
        r"were in the photo, only the deblurred 32-px crop written for each "
        r"\(photo_face1\.png\); skipped 0",
        changes=OUT,
    ),
    Case("png_16_bit", _sixteen_bit, 0, changes=OUT, check=_sixteen_bit_check),
    Case("rgba_keeps_alpha", _rgba, 0, changes=OUT, check=_rgba_check),
    Case(
        "images_in_subfolders",
        _subfolders,
        0,
        out=r"(?s)note: 2 image\(s\) in subfolders of the input folders are not read \(name "
        r"those subfolders to deblur them\)\n.*deblurred 1 image\(s\)",
        changes=("out", "out/a.png"),
    ),
    Case(
        "corrupt_newest_checkpoint_falls_back",
        _ckpt_case(lambda w: _corrupt_arrays(w / "checkpoints" / "4"), "ckpt2"),
        0,
        out=r"warning: checkpoint '.*/w/checkpoints/4' cannot be read: its arrays are corrupt "
        r"or truncated \(.*\); using step 2, the newest one that can be read\n",
        changes=OUT,
    ),
    Case(
        "every_checkpoint_unreadable",
        _ckpt_case(
            lambda w: [_garble(w / "checkpoints" / s / "state") for s in ("2", "4")], "ckpt2"
        ),
        2,
        r"no checkpoint in '.*/w/checkpoints' can be read \(step 4: its 'state' item .*; "
        r"step 2: its 'state' item .*\): restore them from a copy, or train anew",
    ),
    Case(
        "truncated_state_metadata",
        _ckpt_case(_truncate_metadata),
        2,
        r"checkpoint '.*/w/checkpoints/2' cannot be read: its 'state' item is missing or "
        r"corrupt \(JSONDecodeError(?!.*does not match)",
    ),
    # --- inputs -------------------------------------------------------------------------------
    Case(
        "input_missing",
        lambda d, fx: _deblur(fx, "nope.png", "--out", "out"),
        2,
        r"input 'nope\.png' does not exist",
    ),
    Case(
        "input_folder_empty",
        lambda d, fx: (d / "in").mkdir() or _deblur(fx, "in", "--out", "out"),
        2,
        r"no images found in \['in'\]",
    ),
    Case(
        "input_zero_bytes",
        _bad_file("zero.png", b""),
        2,
        r"nothing written: cannot read image 'zero\.png': the file is empty \(0 bytes\)",
    ),
    Case(
        "input_truncated",
        _truncated_png,
        2,
        r"nothing written: cannot read image 'cut\.png': truncated or corrupt",
    ),
    Case(
        "input_text_as_image",
        _bad_file("notes.jpg", b"shopping list\n- milk\n"),
        2,
        r"nothing written: cannot read image 'notes\.jpg': not an image file of a known format",
    ),
    Case("input_1x1", _one_pixel(align=False), 0, changes=OUT, check=_one_pixel_check),
    Case(
        "input_1x1_no_face",
        _one_pixel(align=True),
        1,
        r"nothing written: one\.png: no face found \(dlib HOG frontal detector\); for an "
        r"already aligned face crop use --no-align",
    ),
    Case("input_cmyk", _cmyk, 0, changes=OUT),
    Case(
        "input_float_tiff",
        _float_tiff,
        2,
        r"cannot use image 'float\.tif': 32-bit float pixels \(mode 'F'\)",
    ),
    Case(
        "inputs_all_bad",
        _several_bad,
        2,
        r"nothing written: all 2 inputs were skipped \(the 'skip' lines above say why\)",
        out=r"skip in/text\.png: cannot read image .*\nskip in/zero\.png: cannot read image",
    ),
    Case(
        "inputs_one_bad",
        _mixed,
        0,
        out=r"(?s)skip in/zero\.png: cannot read image .*\ndeblurred 1 image\(s\) into out; "
        r"skipped 1",
        changes=("out", "out/good.png"),
    ),
    Case(
        "out_exists",
        _collision(overwrite=False),
        2,
        r"nothing written: face\.png: would overwrite .*/out/face\.png \(it exists; use "
        r"--overwrite\)",
    ),
    Case("out_exists_overwrite", _collision(overwrite=True), 0, changes=("out/face.png",)),
    Case(
        "out_is_the_input_folder",
        _into_inputs,
        2,
        r"would overwrite .*/in/face\.png \(it is an input; use --overwrite\)",
    ),
    Case(
        "paths_with_spaces_and_accents",
        _unicode,
        0,
        changes=("out dír", "out dír/*"),
        check=_unicode_check,
    ),
    Case(
        "input_missing_accented",
        lambda d, fx: _deblur(fx, "nö such fïle.png", "--out", "out"),
        2,
        r"input 'nö such fïle\.png' does not exist",
    ),
    Case(
        "upsample_negative",
        _with_face(lambda d, fx: _deblur(fx, FACE, "--out", "out", "--upsample", "-1")),
        2,
        r"--upsample must be 0 or more",
    ),
    Case(
        "deblur_no_arguments",
        lambda d, fx: ["deblur"],
        2,
        r"the following arguments are required: inputs, --out \(see 'facedeblur deblur --help'\)",
    ),
    Case(
        "deblur_config_override",
        _with_face(lambda d, fx: _deblur(fx, FACE, "--out", "out", "--config.model.features=3")),
        2,
        r"deblur takes its config from the checkpoint; drop the --config\.\* args",
    ),
    Case(
        "unknown_command",
        lambda d, fx: ["deblurr", "x"],
        2,
        r"argument COMMAND: invalid choice: 'deblurr'",
    ),
    # --- checkpoints and weights files -----------------------------------------------------
    Case(
        "ckpt_empty_folder",
        _with_face(
            lambda d, fx: (d / "empty").mkdir() or _deblur(fx, FACE, "--out", "out", ckpt="empty")
        ),
        2,
        r"'.*/empty' is not a training workdir \(no checkpoints/ inside\)",
    ),
    Case(
        "ckpt_no_checkpoint",
        _ckpt_case(_empty_checkpoints),
        2,
        r"no checkpoint in '.*/w/checkpoints'",
    ),
    Case(
        "ckpt_an_image",
        _with_face(lambda d, fx: _deblur(fx, FACE, "--out", "out", ckpt=FACE)),
        2,
        r"is not a training workdir .* or a weights file \(\.npz, facedeblur export-weights\)",
    ),
    Case(
        "weights_file_truncated",
        _truncated_npz,
        2,
        r"cut\.npz is not a generator weights file written by facedeblur export-weights: not "
        r"a complete \.npz archive: truncated or corrupt",
    ),
    Case(
        "weights_file_of_another_network",
        _foreign_npz,
        2,
        r"vgg\.npz is not a generator weights file .*format tag 'facedeblur_jax\.vgg_face\.v1'",
    ),
    # --- train ----------------------------------------------------------------------------------
    Case(
        "train_mistyped_key",
        lambda d, fx: _train(d, fx, "--config.model.featurs=3"),
        2,
        r"unknown config override key 'model\.featurs' \(did you mean 'model\.features'\?\)",
    ),
    Case(
        "train_unknown_section_key",
        lambda d, fx: _train(d, fx, "--config.train.xyz=3"),
        2,
        r"unknown config override key 'train\.xyz'; the keys under 'train\.' are "
        r"train\.checkpoint_every, .*train\.process_id$",
    ),
    Case(
        "train_wrong_type",
        lambda d, fx: _train(d, fx, "--config.train.global_batch_size=abc"),
        2,
        r"config key 'train\.global_batch_size' expects int \(like 8\); got 'abc' \(str\)",
    ),
    Case(
        "train_missing_config_file",
        lambda d, fx: ["train", "--config", "nope.py", "--workdir", "w"],
        2,
        r"config file 'nope\.py' not found",
    ),
    Case(
        "train_checkpoint_of_another_model",
        _train_other_model,
        2,
        r"checkpoint '.*/w/checkpoints/2' was trained with another model: "
        r"model\.disc_features = \(4,\) in the checkpoint, \(8, 16, 16\) here; "
        r"model\.features = 4 in the checkpoint, 8 here; .*; resume with the config it was "
        r"trained with \(stored in its meta\) or use another --workdir$",
    ),
    Case(
        "train_workdir_is_a_file",
        _file("w")(lambda d, fx: _train(d, fx)),
        2,
        r"--workdir .*/w is a file, not a folder",
    ),
    Case(
        "train_workdir_read_only",
        _ro_then(lambda d, fx: _train(d, fx, workdir="ro/w")),
        2,
        r"cannot write into .*/ro/w: .*/ro is not writable \(Permission denied\); choose "
        r"another --workdir",
    ),
    # --- eval -----------------------------------------------------------------------------------
    Case(
        "eval_data_missing",
        lambda d, fx: [*_eval(fx, "--out", "out"), "--data", "my_faces"],
        2,
        r"--data 'my_faces' is neither 'sample', 'faces' nor an existing folder",
    ),
    Case(
        "eval_kernels_missing",
        lambda d, fx: _eval(fx, "--out", "out", kernels="nope.npz"),
        2,
        r"kernel bank '.*nope\.npz' not found",
    ),
    Case(
        "eval_kernels_not_a_bank",
        _file("bank.npz", b"PK\x03\x04 truncated")(
            lambda d, fx: _eval(fx, "--out", "out", kernels="bank.npz")
        ),
        2,
        r"bank\.npz' is not a kernel bank \.npz: not a complete \.npz archive",
    ),
    Case(
        "eval_max_faces_0",
        lambda d, fx: _eval(fx, "--out", "out", "--max-faces", "0"),
        2,
        r"--max-faces must be >= 1; got 0",
    ),
    Case(
        "eval_batch_size_0",
        lambda d, fx: _eval(fx, "--out", "out", "--batch-size", "0"),
        2,
        r"--batch-size must be at least 1",
    ),
    Case(
        "eval_out_is_a_file",
        _file("out")(lambda d, fx: _eval(fx, "--out", "out")),
        2,
        r"--out out is a file, not a folder",
    ),
    Case(
        "eval_corrupt_checkpoint",
        _eval_corrupt,
        2,
        r"checkpoint '.*/w/checkpoints/2' cannot be read: its arrays are corrupt or truncated",
    ),
    # --- make-kernels ---------------------------------------------------------------------
    Case(
        "make_kernels_out_exists",
        _file("bank.npz")(lambda d, fx: [*MK, "--out", "bank.npz"]),
        2,
        r"/bank\.npz exists; pass --overwrite to replace it",
    ),
    Case(
        "make_kernels_out_read_only",
        _ro_then(lambda d, fx: [*MK, "--out", "ro/bank.npz"]),
        2,
        r"cannot write .*/ro/bank\.npz: .*/ro is not writable \(Permission denied\)",
    ),
    Case(
        "make_kernels_out_is_a_folder",
        lambda d, fx: (d / "bank").mkdir() or [*MK, "--out", "bank"],
        2,
        r"--out .*/bank is a folder; name the file to write",
    ),
    Case(
        "make_kernels_extra_missing",
        lambda d, fx: [*MK, "--out", "bank.npz", "--extra", "k=nope.npy"],
        2,
        r"extra kernel 'nope\.npy' not found",
    ),
    Case(
        "make_kernels_extra_pickled",
        lambda d, fx: [*_obj_npy(d, fx), "--out", "bank.npz"],
        2,
        r"extra kernel 'obj\.npy' is not a \.npy array: it holds pickled Python objects",
    ),
    Case(
        "make_kernels_bad_sizes",
        lambda d, fx: ["make-kernels", "--sizes", "3,x", "--out", "bank.npz"],
        2,
        r"argument --sizes: expected comma-separated ints, got '3,x'",
    ),
    Case(
        "make_kernels_per_size_0",
        lambda d, fx: ["make-kernels", "--sizes", "3", "--per-size", "0", "--out", "bank.npz"],
        2,
        r"per_size must be an int >= 1; got 0",
    ),
    # --- demo -----------------------------------------------------------------------------------
    Case(
        "demo_unknown_key",
        lambda d, fx: ["demo", "--config", "tiny", "--config.model.featurs=3"],
        2,
        r"unknown config override key 'model\.featurs' \(did you mean 'model\.features'\?\)",
    ),
    Case(
        "demo_out_is_a_file",
        _file("strips")(lambda d, fx: ["demo", "--config", "tiny", "--out", "strips"]),
        2,
        r"--out .*/strips is a file, not a folder",
    ),
    Case(
        "demo_missing_config",
        lambda d, fx: ["demo", "--config", "nope"],
        2,
        r"config file 'nope' not found",
    ),
    # --- export-weights, export, params ---------------------------------------------------------
    Case(
        "export_weights_out_not_npz",
        lambda d, fx: ["export-weights", "--checkpoint", str(fx.ckpt), "--out", "w.bin"],
        2,
        r"--out must end in \.npz",
    ),
    Case(
        "export_weights_out_exists",
        _file("w.npz")(
            lambda d, fx: ["export-weights", "--checkpoint", str(fx.ckpt), "--out", "w.npz"]
        ),
        2,
        r"/w\.npz exists; pass --overwrite to replace it",
    ),
    Case(
        "export_weights_corrupt_checkpoint",
        _export_weights_corrupt,
        2,
        r"checkpoint '.*/w/checkpoints/2' cannot be read",
    ),
    Case(
        "export_weights_bad_card",
        _file("card.json", b"{not json")(
            lambda d, fx: [
                *["export-weights", "--checkpoint", str(fx.ckpt), "--out", "w.npz"],
                *["--card-json", "card.json"],
            ]
        ),
        2,
        r"card file card\.json is not valid JSON",
    ),
    Case(
        "export_out_exists",
        _file("m.bin")(lambda d, fx: ["export", "--checkpoint", str(fx.npz), "--out", "m.bin"]),
        2,
        r"refusing to overwrite existing file '.*/m\.bin'",
    ),
    Case(
        "export_pickled_weights",
        lambda d, fx: _pickled_npz(d, fx) and ["export", "--checkpoint", "bad.npz", "--out", "m"],
        2,
        r"bad\.npz is not a generator weights file .*: it holds pickled Python objects",
    ),
    Case(
        "build_tfds_root_missing",
        lambda d, fx: ["build-tfds", "--root", "my_faces", "--data-dir", "tfds"],
        2,
        r"--root 'my_faces' is not a folder",
    ),
    Case(
        "compare_spec_missing",
        lambda d, fx: ["compare", "--spec", "nope.json", "--out", "out"],
        2,
        r"spec file '.*/nope\.json' does not exist",
    ),
    Case(
        "compare_spec_not_json",
        _file("spec.json", b"{rows: [")(
            lambda d, fx: ["compare", "--spec", "spec.json", "--out", "out"]
        ),
        2,
        r"spec file '.*/spec\.json' is not JSON",
    ),
    Case(
        "data_prepare_celeba_src_missing",
        lambda d, fx: ["data", "prepare", "celeba", "--src", "nope", "--out", "out"],
        2,
        r"CelebA folder 'nope' not found",
    ),
    Case(
        "convert_vgg_out_not_npz",
        lambda d, fx: ["convert-vgg", "--input", "vgg.pth", "--out", "vgg.bin"],
        2,
        r"--out must end in \.npz; got .*/vgg\.bin",
    ),
    Case(
        "convert_mobilefacenet_input_missing",
        lambda d, fx: ["convert-mobilefacenet", "--input", "068.ckpt", "--out", "m.npz"],
        2,
        r"MobileFaceNet checkpoint not found: .*/068\.ckpt",
    ),
    Case(
        "make_labels_data_not_a_folder",
        lambda d, fx: ["make-labels", "--data", "faces", "--out", "labels"],
        2,
        r"--data 'faces' is not a folder",
    ),
    Case(
        "params_unknown_key",
        lambda d, fx: ["params", "--config", "tiny", "--config.model.featurs=3"],
        2,
        r"unknown config override key 'model\.featurs'",
    ),
]
NOT_TEMPORARY = re.compile(r"(^|/)\.(tmp-|facedeblur-write-test-)")


# --- fixtures ---------------------------------------------------------------------------------


def _make_fixtures(root: pathlib.Path) -> Fixtures:
    """A tiny checkpoint written through the real Orbax path, its weights file, a kernel
    bank, a face and a photo. The model is the zero one of ``tests/zero_model.py`` (nothing
    compiled; the identity, so a deblurred image is its input resampled) in its smallest
    layout (``MICRO``: each case loads and traces it in about a second)."""
    root.mkdir()
    config = zero_model.tiny_config(**zero_model.MICRO)
    zero_model.zero_checkpoint(root / "ckpt", steps=(2,), config=config)
    zero_model.zero_checkpoint(root / "ckpt2", steps=(2, 4), config=config)
    npz = zero_model.zero_weights(root / "tiny.npz", config=config)
    delta = np.zeros((1, 7, 7), np.float32)
    delta[0, 3, 3] = 1.0
    bank = kernel_bank.KernelBank(delta, np.asarray([3], np.int32), np.asarray([0], np.int32))
    kernel_bank.save_bank(root / "bank.npz", bank)
    face = root / FACE
    shutil.copy(sample_data.sample_faces("test")[0].path, face)
    photo, _ = photo_with_face(240, 320, scale=1.2, angle_deg=0.0, centre=(160.0, 120.0))
    imageio.save_image(root / "photo.png", photo)
    return Fixtures(
        root, root / "ckpt", root / "ckpt2", npz, root / "bank.npz", face, root / "photo.png"
    )


def _snapshot(folder: pathlib.Path) -> dict[str, str]:
    """``{relative path: sha256 of a file, or "dir"}`` of everything under ``folder``."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@dataclasses.dataclass
class Ran:
    argv: list[str]
    rc: int
    stdout: str
    stderr: str
    seconds: float
    before: dict[str, str]
    after: dict[str, str]
    folder: pathlib.Path


@pytest.fixture(scope="module")
def battery(tmp_path_factory):
    """Every case run once (in parallel, forked from one server); ``{id: Ran}``."""
    t0 = time.monotonic()
    root = tmp_path_factory.mktemp("bad_input")
    env = processes.child_env(1)
    for key in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        if key in os.environ:  # the session's compilation cache (tests/conftest.py)
            env[key] = os.environ[key]
    server = subprocess.Popen(  # its imports overlap with building the fixtures
        [sys.executable, "-m", "tests.forked_cli", "--jobs", str(os.cpu_count() or 2)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=processes.REPO_ROOT,
        text=True,
    )
    try:
        fx = _make_fixtures(root / "shared")
        jobs, folders = [], {}
        for case in CASES:
            d = root / case.id
            d.mkdir()
            argv = case.build(d, fx)
            folders[case.id] = (d, _snapshot(d))
            logs = root / "logs" / case.id
            logs.mkdir(parents=True)
            jobs.append(
                {
                    "argv": argv,
                    "cwd": str(d),
                    "stdout": str(logs / "out"),
                    "stderr": str(logs / "err"),
                }
            )
        shared = _snapshot(fx.root)
        out, err = server.communicate(json.dumps(jobs), timeout=600)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, err[-3000:]
    (root / "results.jsonl").write_text(out)
    results = [None] * len(jobs)
    for line in out.splitlines():
        result = json.loads(line)
        results[result["index"]] = result
    ran = {}
    for case, job, result in zip(CASES, jobs, results, strict=True):
        d, before = folders[case.id]
        for p in [d, *d.rglob("*")]:  # read-only folders back to normal for the cleanup
            if p.is_dir() and not p.stat().st_mode & stat.S_IWUSR:
                p.chmod(0o755)
        ran[case.id] = Ran(
            job["argv"],
            result["rc"],
            pathlib.Path(job["stdout"]).read_text(),
            pathlib.Path(job["stderr"]).read_text(),
            result["seconds"],
            before,
            _snapshot(d),
            d,
        )
    ran["__shared__"] = (shared, _snapshot(fx.root), fx)
    ran["__wall__"] = time.monotonic() - t0
    ran["__cpu__"] = cpu = sum(r["cpu"] for r in results)
    costly = sorted(zip(results, CASES, strict=True), key=lambda rc: -rc[0]["cpu"])[:8]
    print(
        f"bad-input battery: {len(CASES)} cases in {ran['__wall__']:.1f} s (their processes: "
        f"{cpu:.1f} s of CPU; most: " + ", ".join(f"{c.id} {r['cpu']:.1f}" for r, c in costly) + ")"
    )
    return ran


# --- the tests ----------------------------------------------------------------------------


def _command(argv: list[str]) -> str:
    """The command's name as its error lines give it (``data prepare celeba``: all three)."""
    if argv[:3] == ["data", "prepare", "celeba"]:
        return "data prepare celeba"
    return argv[0] if argv and argv[0] in cli.COMMANDS else ""


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(battery, case):
    ran = battery[case.id]
    report = (
        f"{ran.argv}\nrc {ran.rc}\n--- stdout\n{ran.stdout[-2000:]}\n"
        f"--- stderr\n{ran.stderr[-4000:]}"
    )
    assert "Traceback" not in ran.stderr, report
    assert ran.rc == case.rc, report
    lines = [line for line in ran.stderr.splitlines() if line.strip()]
    if case.err is None:
        assert not lines, report
    else:
        assert len(lines) == 1, report
        command = _command(ran.argv)
        prefix = f"facedeblur {command}: error: " if command else "facedeblur: error: "
        assert lines[0].startswith(prefix), report
        assert re.search(case.err, lines[0][len(prefix) :]), report
    if case.out is not None:
        assert re.search(case.out, ran.stdout), report
    # Files: what existed is unchanged (but the outputs a case may replace); nothing new
    # but the case's outputs; never a temporary file.
    allowed = [re.compile(_glob_to_regex(g)) for g in case.changes]
    for path, digest in ran.before.items():
        if not any(a.fullmatch(path) for a in allowed):
            assert ran.after.get(path) == digest, f"{path} changed or vanished\n{report}"
    new = sorted(set(ran.after) - set(ran.before))
    unexpected = [p for p in new if not any(a.fullmatch(p) for a in allowed)]
    assert not unexpected, f"left behind: {unexpected}\n{report}"
    assert not [p for p in ran.after if NOT_TEMPORARY.search(p)], report
    if case.check is not None:
        case.check(ran.folder, ran.stdout)


def _glob_to_regex(glob: str) -> str:
    return "".join("[^/]*" if ch == "*" else re.escape(ch) for ch in glob)


def test_shared_fixtures_are_untouched(battery):
    before, after, _ = battery["__shared__"]
    assert after == before


def test_the_battery_is_cheap(battery):
    """The cases' processes use under 70 s of CPU together (48 s measured): with the
    fixtures and the server's imports (~8 s), under a minute on an idle 2-core machine.
    Wall time is printed, not asserted: it depends on what else the machine runs."""
    assert battery["__cpu__"] < 70, battery["__cpu__"]


def test_the_forked_runs_are_the_real_cli(battery, tmp_path):
    """One case again through ``python -m facedeblur_jax.cli`` (a fresh interpreter): the
    same exit status and the same stderr and stdout as its forked run (a case whose message
    is deterministic: which of several damaged array files Orbax reads first is not)."""
    case = next(c for c in CASES if c.id == "truncated_state_metadata")
    _, _, fx = battery["__shared__"]
    argv = case.build(tmp_path, fx)
    proc = processes.run([*processes.CLI, *argv], cwd=tmp_path, env=processes.child_env(1))
    forked = battery[case.id]
    assert proc.returncode == forked.rc
    for real, fork in ((proc.stderr, forked.stderr), (proc.stdout, forked.stdout)):
        assert real.replace(str(tmp_path), "D") == fork.replace(str(forked.folder), "D")
