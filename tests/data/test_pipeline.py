"""The grain pipeline: shapes, sharding, labels stay with their images, epochs, state."""

import json
import logging

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from facedeblur_jax.config import load_config
from facedeblur_jax.data import pipeline, sources
from tests.data.conftest import truncate, warnings_naming, write_face_tree, write_png


def tiny_config(root, label_root=None, **data):
    cfg = load_config("tiny")
    cfg.data.source, cfg.data.root = "folder", str(root)
    cfg.data.label_root = str(label_root) if label_root else ""
    for k, v in data.items():
        cfg.data[k] = v
    return cfg


def record_ids(batch) -> np.ndarray:
    """Face index of each row (images are solid ``10 i + 5``)."""
    image = np.asarray(batch["image"])
    assert (image == image[:, :1, :1, :1]).all(), "solid faces must stay solid"
    return (image[:, 0, 0, 0].astype(int) - 5) // 10


def assert_labels_match(batch):
    ids, labels = record_ids(batch), np.asarray(batch["labels"])
    has = np.asarray(batch["has_labels"])
    for i, row, h in zip(ids, labels, has, strict=True):
        assert (row == (i % 11 if h else 0)).all(), f"row of face {i} has wrong labels"


def take(it, n):
    return [jax.tree.map(np.asarray, next(it)) for _ in range(n)]


def test_batch_contract_without_mesh(face_tree):
    root, labels, _ = face_tree
    with pipeline.make_train_iterator(tiny_config(root, labels)) as it:
        batch = next(it)
    assert set(batch) == {"image", "labels", "has_labels"}
    assert all(isinstance(v, jax.Array) for v in batch.values())
    assert batch["image"].shape == (8, 32, 32, 3) and batch["image"].dtype == np.uint8
    assert batch["labels"].shape == (8, 32, 32) and batch["labels"].dtype == np.uint8
    assert batch["has_labels"].shape == (8,) and batch["has_labels"].dtype == np.bool_
    assert np.asarray(batch["has_labels"]).all()
    assert_labels_match(batch)


def test_batches_are_sharded_along_data(face_tree):
    root, labels, _ = face_tree
    mesh = jax.make_mesh((8,), ("data",))
    with pipeline.make_train_iterator(tiny_config(root, labels), mesh) as it:
        batch = next(it)
    for value in batch.values():
        assert value.sharding == NamedSharding(mesh, PartitionSpec("data"))
        assert len(value.addressable_shards) == 8
        assert all(s.data.shape[0] == 1 for s in value.addressable_shards)
    assert_labels_match(batch)


def test_bad_batch_or_mesh_is_an_error(face_tree):
    cfg = tiny_config(face_tree[0])
    cfg.train.global_batch_size = 12
    with pytest.raises(ValueError, match="not divisible by the mesh's 8"):
        pipeline.make_train_iterator(cfg, jax.make_mesh((8,), ("data",)))
    with pytest.raises(ValueError, match="needs 'data'"):
        pipeline.make_train_iterator(cfg, jax.make_mesh((8,), ("batch",)))


def test_bad_policies_fail_at_construction(face_tree):
    with pytest.raises(ValueError, match="resize policy"):
        pipeline.make_train_iterator(tiny_config(face_tree[0], resize="pad"))
    with pytest.raises(ValueError, match="data.verify"):
        pipeline.make_eval_batches(tiny_config(face_tree[0], verify="full"))


def test_unlabelled_records_get_zero_maps(face_tree):
    root, labels, _ = face_tree
    for i in (1, 4, 7):
        (labels / "train" / f"f{i:03d}.png").unlink()
    with pipeline.make_train_iterator(tiny_config(root, labels)) as it:
        batches = take(it, 3)
    has = np.concatenate([b["has_labels"] for b in batches])
    ids = np.concatenate([record_ids(b) for b in batches])
    assert not has[np.isin(ids, (1, 4, 7))].any() and has[~np.isin(ids, (1, 4, 7))].all()
    for b in batches:
        assert_labels_match(b)


def test_each_epoch_is_a_new_permutation_of_all_records(face_tree):
    root, labels, _ = face_tree
    cfg = tiny_config(root, labels)
    cfg.train.global_batch_size = 4  # 12 records: 3 batches per epoch
    with pipeline.make_train_iterator(cfg) as it:
        ids = np.concatenate([record_ids(b) for b in take(it, 9)]).reshape(3, 12)
    for epoch in ids:
        assert sorted(epoch) == list(range(12))
    assert not (ids[0] == ids[1]).all() and not (ids[1] == ids[2]).all()
    assert not (ids[0] == np.arange(12)).all()


def test_stream_is_a_function_of_the_seed(face_tree):
    root, labels, _ = face_tree
    streams = []
    for seed in (0, 0, 1):
        cfg = tiny_config(root, labels)
        cfg.seed = seed
        with pipeline.make_train_iterator(cfg) as it:
            streams.append(np.concatenate([record_ids(b) for b in take(it, 3)]))
    np.testing.assert_array_equal(streams[0], streams[1])
    assert not (streams[0] == streams[2]).all()


def test_set_state_resumes_exactly_across_an_epoch_boundary(face_tree):
    root, labels, _ = face_tree
    cfg = tiny_config(root, labels)  # 12 records, batch 8: batch 1 spans epochs 0 and 1
    with pipeline.make_train_iterator(cfg) as it:
        (first,) = take(it, 1)
        state = json.loads(json.dumps(it.get_state()))  # what a checkpoint stores
        assert state["next_batch"] == 1 and len(json.dumps(state)) < 300
        reference = take(it, 4)
        it.set_state(state)  # rewind the same iterator
        again = take(it, 4)
    with pipeline.make_train_iterator(cfg) as fresh:
        fresh.set_state(state)  # a restarted run
        resumed = take(fresh, 4)
    straddling = record_ids(reference[0])  # 4 records ending epoch 0, 4 starting epoch 1
    assert sorted([*record_ids(first), *straddling[:4]]) == list(range(12))
    for ref, a, b in zip(reference, again, resumed, strict=True):
        for key in ref:
            np.testing.assert_array_equal(ref[key], a[key])
            np.testing.assert_array_equal(ref[key], b[key])


def test_set_state_rejects_a_different_pipeline(face_tree):
    root, labels, _ = face_tree
    with pipeline.make_train_iterator(tiny_config(root, labels)) as it:
        state = it.get_state()
    cfg = tiny_config(root, labels)
    cfg.seed = 5
    with pipeline.make_train_iterator(cfg) as other, pytest.raises(ValueError, match="seed"):
        other.set_state(state)
    cfg = tiny_config(root, labels)
    cfg.image_size = 16
    with pipeline.make_train_iterator(cfg) as other, pytest.raises(ValueError, match="image_size"):
        other.set_state(state)


def test_hosts_read_disjoint_equal_shards(face_tree):
    root, labels, _ = face_tree
    src = sources.folder_source(root, "train", label_root=labels)
    seen = []
    for host in range(2):
        ds = pipeline.train_dataset(
            src, local_batch=2, seed=3, image_size=8, shard_index=host, shard_count=2
        )
        seen.append(np.concatenate([record_ids(ds[k]) for k in range(3)]))  # one epoch
    assert sorted(np.concatenate(seen)) == list(range(12))
    assert set(seen[0]) == {0, 2, 4, 6, 8, 10}


def test_truncated_file_mid_run_is_replaced_by_the_next_record(tmp_path, data_caplog):
    root, labels = tmp_path / "faces", tmp_path / "parsing"
    write_face_tree(root, labels)
    noise = np.random.default_rng(0).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    truncate(write_png(root / "train" / "f004.png", noise))  # passes the header scan
    with pipeline.make_train_iterator(tiny_config(root, labels)) as it:
        batches = take(it, 6)  # four epochs: the bad record is drawn four times
    ids = np.concatenate([record_ids(b) for b in batches])
    assert 4 not in ids and (ids == 5).sum() == 8  # f005 stands in for f004 each epoch
    for b in batches:
        assert_labels_match(b)
    assert len(warnings_naming(data_caplog, "f004.png")) == 1  # once per process


def test_all_records_failing_is_an_error_not_a_hang(tmp_path):
    root = tmp_path / "f"
    for i in range(3):
        noise = np.random.default_rng(i).integers(0, 256, (24, 20, 3), dtype=np.uint8)
        truncate(write_png(root / "train" / f"x{i}.png", noise))
    with pytest.raises(RuntimeError, match="failed to decode"):
        pipeline.ReadOrNext(sources.folder_source(root, "train"))[0]


def test_eval_batches_are_ordered_padded_and_masked(face_tree, data_caplog):
    root, labels, names = face_tree
    cfg = tiny_config(root, labels)
    src = sources.folder_source(root, "test", label_root=labels)
    batches = list(pipeline.make_eval_batches(cfg, "test", batch_size=3))
    assert len(batches) == 2
    batch = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    assert batch["image"].shape == (6, 32, 32, 3) and batch["labels"].shape == (6, 32, 32)
    np.testing.assert_array_equal(batch["valid"], [1, 1, 1, 1, 0, 0])
    assert list(batch["name"]) == [*names[12:], "", ""]
    assert [src.identity_name(i) for i in batch["identity"][:4]] == ["id00", "id01", "id02", "id00"]
    assert (batch["identity"][4:] == -1).all() and not batch["has_labels"][4:].any()
    assert_labels_match({k: batch[k][:4] for k in ("image", "labels", "has_labels")})
    assert any("4 records in 2 batches; dropped 0" in m for m in data_caplog.messages)


def test_eval_drops_unreadable_records_and_counts_them(face_tree, data_caplog):
    root, labels, names = face_tree
    noise = np.random.default_rng(0).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    truncate(write_png(root / "test" / "f013.png", noise))
    batches = list(pipeline.make_eval_batches(tiny_config(root, labels), "test", batch_size=4))
    (batch,) = batches
    assert list(batch["name"]) == [names[12], names[14], names[15], ""]
    assert_labels_match({k: batch[k][:3] for k in ("image", "labels", "has_labels")})
    summary = [r for r in data_caplog.records if "records in" in r.getMessage()]
    assert summary[0].levelno == logging.WARNING
    assert "3 records in 1 batches; dropped 1 unreadable" in summary[0].getMessage()


def test_sample_source_pipeline_from_the_tiny_config():
    cfg = load_config("tiny")
    with pipeline.make_train_iterator(cfg) as it:
        batch = next(it)
    assert batch["image"].shape == (8, 32, 32, 3)
    assert int(np.asarray(batch["image"]).std()) > 10  # real faces, not padding


def test_worker_processes_give_the_same_stream_and_resume(face_tree):
    root, labels, _ = face_tree
    with pipeline.make_train_iterator(tiny_config(root, labels, num_workers=0)) as it:
        expected = take(it, 5)
        state = it.get_state()
    state["next_batch"] = 2
    with pipeline.make_train_iterator(tiny_config(root, labels, num_workers=2)) as it:
        it.set_state(state)  # one worker pool, started at batch 2
        got = take(it, 3)
        assert it.get_state()["next_batch"] == 5
    for e, g in zip(expected[2:], got, strict=True):
        for key in e:
            np.testing.assert_array_equal(e[key], g[key])


def test_every_epoch_is_an_independent_shuffle():
    """grain's ``shuffle(seed).repeat()`` seeds epoch e with seed + e; for 8 records and this
    pipeline's former seed that put epoch 1 back in exact order. Each epoch's order is now
    its own draw."""
    order = pipeline.ShardOrder(8, seed=0, shard_index=0, shard_count=1)
    epochs = np.array([[order[8 * e + i] for i in range(8)] for e in range(20)])
    for epoch in epochs:
        assert sorted(epoch) == list(range(8))
    assert not (epochs == np.arange(8)).all(axis=1).any()  # no epoch in source order
    assert len({tuple(e) for e in epochs}) == 20  # and no epoch repeats another
    big = pipeline.ShardOrder(80, seed=0, shard_index=0, shard_count=1)
    corr = [
        np.corrcoef([big[80 * e + i] for i in range(80)], np.arange(80))[0, 1] for e in range(30)
    ]
    assert max(abs(c) for c in corr) < 0.4, corr


def test_processes_shuffle_independently_and_share_one_state(face_tree):
    """Records 2j (process 0) and 2j + 1 (process 1) do not land in the same global batch
    every epoch, and both processes' states are one state."""
    root, labels, _ = face_tree
    cfg = tiny_config(root, labels)
    cfg.train.global_batch_size = 4  # 12 records, 2 processes: 3 batches of 2 per epoch
    its = [pipeline.make_train_iterator(cfg, shard=(h, 2)) for h in range(2)]
    try:
        rows = [np.concatenate([record_ids(b) for b in take(it, 9)]) for it in its]
        # What each process reads is its own shard, and record_indices names it.
        assert set(rows[0]) == set(range(0, 12, 2)) and set(rows[1]) == set(range(1, 12, 2))
        for h, it in enumerate(its):
            drawn = np.concatenate([it.record_indices(k) for k in range(9)])
            np.testing.assert_array_equal(drawn, rows[h])
        pairs = (rows[0] // 2 == rows[1] // 2).reshape(3, 6)  # same j at the same position
        assert not pairs.all(axis=1).any()
        assert its[0].get_state() == its[1].get_state()
        assert its[0].get_state()["processes"] == 2
        with (
            pipeline.make_train_iterator(cfg) as single,
            pytest.raises(ValueError, match=r"saved by 2 process\(es\) and this run has 1"),
        ):
            single.set_state(its[0].get_state())
    finally:
        for it in its:
            it.close()


def test_a_version_1_state_resumes_with_a_warning(face_tree, data_caplog):
    root, labels, _ = face_tree
    cfg = tiny_config(root, labels)
    old = {
        "version": 1,
        "next_batch": 3,
        "num_records": 12,
        # grain's shuffle seed as version 1 derived it from the run seed and the data tag
        "seed": int(np.random.SeedSequence([cfg.seed % 2**64, 0xDA7A]).generate_state(1)[0]),
        "local_batch": 8,
        "image_size": 32,
        "shard": [0, 1],
    }
    with pipeline.make_train_iterator(cfg) as it:
        it.set_state(old)
        assert it.get_state()["next_batch"] == 3 and it.get_state()["version"] == 2
        with pytest.raises(ValueError, match="seed"):
            it.set_state({**old, "seed": old["seed"] + 1})
    assert any("older version of the pipeline" in m for m in data_caplog.messages)
