"""Sources: folder / faces / sample records, label mirroring, identities, missing paths."""

import pickle

import ml_collections
import numpy as np
import pytest

from facedeblur_jax.config import load_config
from facedeblur_jax.core.sample_data import SAMPLE_FACES
from facedeblur_jax.data import sources
from tests.data.conftest import face_value, label_value, write_face_tree


def data_cfg(**kw) -> ml_collections.ConfigDict:
    cfg = load_config("tiny").data
    for k, v in kw.items():
        cfg[k] = v
    return cfg


def test_folder_source_records_labels_and_identities(face_tree):
    root, labels, names = face_tree
    src = sources.folder_source(root, "train", label_root=labels)
    assert len(src) == 12 and src.num_labelled == 12
    assert [src.entries[i].name for i in range(len(src))] == names[:12]  # sorted order
    rec = src[5]
    assert set(rec) == {"image", "labels", "identity", "name"}
    assert rec["name"] == "train/f005"
    assert rec["image"].dtype == np.uint8 and rec["image"].shape == (24, 20, 3)
    assert rec["labels"].dtype == np.uint8 and rec["labels"].shape == (24, 20)
    assert (rec["image"] == face_value(5)).all() and (rec["labels"] == label_value(5)).all()
    assert src.identity_name(rec["identity"]) == "id02"  # 5 % 3
    assert src.identities == ("id00", "id01", "id02")


def test_folder_source_without_labels_or_csv_lacks_the_keys(tmp_path):
    write_face_tree(tmp_path / "f", None)
    (tmp_path / "f" / "labels.csv").unlink()
    rec = sources.folder_source(tmp_path / "f", "test")[0]
    assert set(rec) == {"image", "name"}


def test_folder_source_all_splits_skips_metadata_and_inner_label_tree(tmp_path):
    root = tmp_path / "faces"
    write_face_tree(root, root / "labels")  # labels inside the image root
    src = sources.folder_source(root, "all", label_root=root / "labels")
    assert len(src) == 16 and src.num_labelled == 16
    assert src.entries[0].name == "test/f012"


def test_partial_labels_are_counted(face_tree, data_caplog):
    root, labels, _ = face_tree
    (labels / "train" / "f003.png").unlink()
    src = sources.folder_source(root, "train", label_root=labels)
    assert src.num_labelled == 11 and "labels" not in src[3] and "labels" in src[4]
    assert any("1 image(s) have no label file" in m for m in data_caplog.messages)


def test_index_out_of_range(face_tree):
    src = sources.folder_source(face_tree[0], "test")
    with pytest.raises(IndexError):
        src[len(src)]


def test_source_pickles_for_grain_workers(face_tree):
    src = sources.folder_source(face_tree[0], "train", label_root=face_tree[1])
    clone = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(clone[2]["labels"], src[2]["labels"])


def test_faces_source_uses_labels_csv(face_tree):
    root, labels, _ = face_tree
    (root / "train" / "stray.png").write_bytes((root / "train" / "f000.png").read_bytes())
    src = sources.faces_source(root, "train", label_root=labels)
    assert len(src) == 12  # the stray file is not listed in labels.csv
    assert [src[i]["identity"] for i in range(4)] == [0, 1, 2, 0]


def test_faces_source_refuses_paths_outside_root(face_tree, data_caplog):
    root = face_tree[0]
    with (root / "labels.csv").open("a") as f:
        f.write("train,../escape.png,id00\n")
    (root.parent / "escape.png").write_bytes((root / "train" / "f000.png").read_bytes())
    src = sources.faces_source(root, "train")
    assert len(src) == 12
    assert any("outside the dataset root" in m for m in data_caplog.messages)


def test_sample_source_and_identity_mapping():
    src = sources.make_source(data_cfg(source="sample"), "test")
    assert len(src) == 40 and len(src.identities) == 20
    rec = src[0]
    assert rec["image"].shape == (112, 112, 3) and rec["name"] == "test/id00_0000"
    assert src.identity_name(rec["identity"]) == "id00"
    train = sources.make_source(data_cfg(source="sample"), "train")
    assert train.identities == src.identities  # one numbering for all splits


def test_full_face_set(shared_faces_dir):
    cfg = data_cfg(source="faces", root=str(shared_faces_dir))
    train, test = sources.make_source(cfg, "train"), sources.make_source(cfg, "test")
    assert (len(train), len(test)) == (2728, 543)
    assert len(train.identities) == 20
    rec = test[len(test) - 1]
    assert rec["image"].shape == (112, 112, 3)
    assert test.identity_name(rec["identity"]) == rec["name"].split("/")[1].split("_")[0]


def test_faces_source_needs_an_explicit_root():
    """No default location: the paper config names data.root as missing."""
    with pytest.raises(ValueError, match=r"data\.root must name .*'faces'.*labels\.csv"):
        sources.make_source(load_config("paper").data, "train")
    with pytest.raises(ValueError, match=r"data\.root must name .*'folder'"):
        sources.make_source(data_cfg(source="folder"), "train")


def test_data_modules_import_each_other_one_way():
    """No module of facedeblur_jax.data imports (even lazily, inside a function) a module
    that imports it back: sources -> formats -> records."""
    import ast
    import pathlib

    import facedeblur_jax.data as package

    folder = pathlib.Path(package.__file__).parent
    names = {p.stem for p in folder.glob("*.py")} - {"__init__"}
    graph = {}
    for name in names:
        tree = ast.parse((folder / f"{name}.py").read_text())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "facedeblur_jax.data":
                deps |= {a.name for a in node.names if a.name in names}
            elif isinstance(node, ast.ImportFrom | ast.Import):
                modules = [node.module] if isinstance(node, ast.ImportFrom) else []
                modules += [a.name for a in getattr(node, "names", []) if "." in a.name]
                for m in filter(None, modules):
                    if m.startswith("facedeblur_jax.data."):
                        deps.add(m.split(".")[2])
        graph[name] = deps & names
    assert "helen" in graph["sources"] and "records" in graph["helen"]  # the walk sees them

    def reaches(start, target, seen=()):
        return any(
            d == target or (d not in seen and reaches(d, target, (*seen, d))) for d in graph[start]
        )

    cycles = sorted(n for n in names if reaches(n, n))
    assert not cycles, {n: sorted(graph[n]) for n in cycles}


def test_missing_paths_raise_file_not_found_naming_them(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        sources.make_source(data_cfg(source="faces", root=str(missing)), "train")
    with pytest.raises(FileNotFoundError, match="nope"):
        sources.make_source(data_cfg(source="folder", root=str(missing)), "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty/labels\.csv"):
        sources.make_source(data_cfg(source="faces", root=str(tmp_path / "empty")), "train")
    with pytest.raises(FileNotFoundError, match="split 'val' folder"):
        sources.make_source(data_cfg(source="folder", root=str(tmp_path / "empty")), "val")
    with pytest.raises(FileNotFoundError, match="label folder"):
        sources.folder_source(tmp_path / "empty", "all", label_root=missing)


def test_make_source_rejects_unknown_and_unusable_keys(tmp_path):
    with pytest.raises(ValueError, match="unknown data source 'imagenet'"):
        sources.make_source(data_cfg(source="imagenet"), "train")
    with pytest.raises(ValueError, match="fixed root"):
        sources.make_source(data_cfg(source="sample", root=str(tmp_path)), "train")
    with pytest.raises(ValueError, match="label_root is not used"):
        sources.make_source(data_cfg(source="helen", root="x", label_root="y"), "train")
    with pytest.raises(ValueError, match="data.root must name"):
        sources.make_source(data_cfg(source="folder"), "train")


def test_sample_labels_default_to_the_bundled_label_tree():
    src = sources.make_source(data_cfg(source="sample"), "test")
    present = [(SAMPLE_FACES / "labels" / f"{e.name}.png").is_file() for e in src.entries]
    assert src.num_labelled == sum(present)  # 0 until the bundled label maps exist
