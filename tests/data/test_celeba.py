"""CelebA's layouts: annotation files, finding a release's parts, identity-disjoint splits,
and the alignment of both layouts with the real dlib models on synthetic fixture images."""

import random

import numpy as np
import pytest

from facedeblur_jax.data import celeba
from tests.data import celeba_tree

# --- annotation files ------------------------------------------------------------------------


def test_annotation_files_with_and_without_the_release_headers(tmp_path):
    rows = [("000001.jpg", 2880), ("000002.jpg", 2937)]
    celeba_tree.write_annotation(tmp_path / "a.txt", rows)
    celeba_tree.write_annotation(tmp_path / "b.txt", rows, header="image identity")
    expected = {"000001.jpg": "2880", "000002.jpg": "2937"}
    assert celeba.read_identities(tmp_path / "a.txt") == expected
    assert celeba.read_identities(tmp_path / "b.txt") == expected
    celeba_tree.write_annotation(
        tmp_path / "p.txt", [("000001.jpg", 0), ("000002.jpg", 2)], header="image partition"
    )
    assert celeba.read_partition(tmp_path / "p.txt") == {
        "000001.jpg": "train",
        "000002.jpg": "test",
    }
    header = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y"
    celeba_tree.write_annotation(
        tmp_path / "l.txt",
        [("000001.jpg", *range(10))],
        header=header + " rightmouth_x rightmouth_y",
    )
    points = celeba.read_aligned_landmarks(tmp_path / "l.txt")["000001.jpg"]
    np.testing.assert_array_equal(points, np.arange(10.0).reshape(5, 2))


@pytest.mark.parametrize(
    ("text", "reader", "match"),
    [
        (
            "000001.jpg 1\n000002.jpg\n",
            celeba.read_identities,
            r"line 2: expected an image name and 1",
        ),
        (
            "000001.jpg 1\n000001.jpg 2\n",
            celeba.read_identities,
            r"line 2: '000001.jpg' listed twice",
        ),
        (
            "000001.jpg 1\nnotes here\n",
            celeba.read_identities,
            r"line 2: expected an image name first",
        ),
        ("000001.jpg 3\n", celeba.read_partition, r"partition '3', not 0, 1 or 2"),
        ("000001.jpg 1 2 3 4 5 6 7 8 9 x\n", celeba.read_aligned_landmarks, "are not numbers"),
    ],
)
def test_a_bad_annotation_line_is_one_error_naming_the_file(tmp_path, text, reader, match):
    path = tmp_path / "annotation.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        reader(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_missing_annotation_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="identity_CelebA.txt"):
        celeba.read_identities(tmp_path / "identity_CelebA.txt")


# --- where the parts are ---------------------------------------------------------------------


def _touch_image(path, size=(178, 218)):
    path.parent.mkdir(parents=True, exist_ok=True)
    celeba_tree.write_jpg(path, np.zeros((size[1], size[0], 3), np.uint8))


def test_find_tree_in_the_release_layout_and_in_a_flat_one(tmp_path):
    release = tmp_path / "release"
    _touch_image(release / "Img" / "img_align_celeba" / "000001.jpg")
    celeba_tree.write_annotation(release / "Anno" / "identity_CelebA.txt", [("000001.jpg", 1)])
    celeba_tree.write_annotation(
        release / "Anno" / "list_landmarks_align_celeba.txt", [("000001.jpg", *range(10))]
    )
    celeba_tree.write_annotation(release / "Eval" / "list_eval_partition.txt", [("000001.jpg", 0)])
    tree = celeba.find_tree(release)
    assert tree.layout == "img_align_celeba"
    assert tree.images == release / "Img" / "img_align_celeba"
    assert tree.partition_file == release / "Eval" / "list_eval_partition.txt"
    assert tree.landmark_file == release / "Anno" / "list_landmarks_align_celeba.txt"

    flat = tmp_path / "flat"
    _touch_image(flat / "img_celeba" / "000001.jpg", (300, 400))
    celeba_tree.write_annotation(flat / "identity_CelebA.txt", [("000001.jpg", 1)])
    tree = celeba.find_tree(flat)
    assert (tree.layout, tree.partition_file, tree.landmark_file) == ("img_celeba", None, None)

    # An image folder of another name: the layout from the landmark file and the image size.
    (release / "Img" / "img_align_celeba").rename(release / "faces")
    assert celeba.find_tree(release, images=release / "faces").layout == "img_align_celeba"
    assert celeba.find_tree(flat, images=flat / "img_celeba").layout == "img_celeba"
    (flat / "img_celeba").rename(flat / "photos")
    assert celeba.find_tree(flat, images=flat / "photos").layout == "img_celeba"


def test_find_tree_errors_name_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="CelebA folder"):
        celeba.find_tree(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match=r"no CelebA image folder .*--images"):
        celeba.find_tree(tmp_path)
    _touch_image(tmp_path / "img_align_celeba" / "000001.jpg")
    with pytest.raises(FileNotFoundError, match="identity_CelebA.txt not found"):
        celeba.find_tree(tmp_path)
    celeba_tree.write_annotation(tmp_path / "identity_CelebA.txt", [("000001.jpg", 1)])
    with pytest.raises(FileNotFoundError, match="list_landmarks_align_celeba.txt not found"):
        celeba.find_tree(tmp_path)
    _touch_image(tmp_path / "img_celeba" / "000001.jpg")
    with pytest.raises(ValueError, match="both img_celeba and img_align_celeba"):
        celeba.find_tree(tmp_path)
    assert celeba.find_tree(tmp_path, layout="img_celeba").layout == "img_celeba"
    with pytest.raises(ValueError, match="layout must be"):
        celeba.find_tree(tmp_path, layout="aligned")


# --- splits ----------------------------------------------------------------------------------


def _counts(seed=1, identities=300):
    rng = np.random.default_rng(seed)
    return {str(1000 + 7 * i): int(n) for i, n in enumerate(rng.integers(1, 31, identities))}


def test_seeded_split_is_deterministic_seeded_and_independent_of_order():
    counts = _counts()
    first = celeba.seeded_split(counts, (0.8, 0.1, 0.1), seed=0)
    items = list(counts.items())
    random.Random(3).shuffle(items)
    assert celeba.seeded_split(dict(items), (0.8, 0.1, 0.1), seed=0) == first
    other = celeba.seeded_split(counts, (0.8, 0.1, 0.1), seed=1)
    assert other != first
    assert set(first) == set(counts) and set(first.values()) == set(celeba.SPLITS)


@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.1), (0.5, 0.2, 0.3), (0.9, 0.0, 0.1)])
@pytest.mark.parametrize("seed", [0, 5])
def test_seeded_split_holds_each_fraction_within_one_identity(fractions, seed):
    counts = _counts(seed + 10)
    split_of = celeba.seeded_split(counts, fractions, seed=seed)
    total, largest = sum(counts.values()), max(counts.values())
    for split, fraction in zip(celeba.SPLITS, fractions, strict=True):
        images = sum(n for identity, n in counts.items() if split_of[identity] == split)
        assert abs(images - fraction * total) <= largest, (split, images, fraction * total)


def test_assign_splits_never_puts_an_identity_in_two_splits():
    identity_of = {f"{i:06d}.jpg": str(i % 37) for i in range(1, 400)}
    plan = celeba.assign_splits(identity_of, fractions=(0.6, 0.2, 0.2), seed=4)
    assert plan.rule == "seeded" and set(plan.split_of) == set(identity_of)
    splits_of = {}
    for name, split in plan.split_of.items():
        splits_of.setdefault(identity_of[name], set()).add(split)
    assert all(len(s) == 1 for s in splits_of.values())
    summary = celeba.split_summary(plan.split_of, identity_of)
    assert sum(v["images"] for v in summary.values()) == 399
    assert sum(v["identities"] for v in summary.values()) == 37


def test_assign_splits_uses_a_partition_that_lists_every_image():
    identity_of = {"000001.jpg": "1", "000002.jpg": "1", "000003.jpg": "2"}
    partition = {"000001.jpg": "train", "000002.jpg": "test", "000003.jpg": "val", "9.jpg": "val"}
    plan = celeba.assign_splits(identity_of, partition=partition)
    assert plan.rule == "partition"
    assert plan.split_of == {"000001.jpg": "train", "000002.jpg": "test", "000003.jpg": "val"}
    assert plan.shared_identities == ("1",)  # reported, not hidden
    del partition["000003.jpg"]  # no longer covers the images: the seeded rule
    plan = celeba.assign_splits(identity_of, partition=partition, seed=0)
    assert plan.rule == "seeded" and plan.shared_identities == ()


@pytest.mark.parametrize(
    "text", ["0.8,0.2", "0.8,0.1,0.2", "0.9,0.1,0", "0,0.5,0.5", "-0.1,0.6,0.5", "a,b,c", "nan,0,1"]
)
def test_bad_fractions_are_one_error(text):
    with pytest.raises(ValueError, match="split fractions must be"):
        celeba.parse_fractions(text)
    assert celeba.parse_fractions("0.7, 0.2, 0.1") == (0.7, 0.2, 0.1)


# --- alignment -------------------------------------------------------------------------------
