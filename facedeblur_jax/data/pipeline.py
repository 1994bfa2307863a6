"""grain input pipelines: an infinite, checkpointable training stream and ordered eval batches.

Training (``make_train_iterator``), in each process ``h`` of ``H`` (one per host)::

    source ─▶ this process's shard (records h, h + H, ...) ─▶ epoch order ─▶ read
           (bad file → next record) ─▶ decode / resize / centre-crop to image_size
           ─▶ batch(B / H) ─▶ [grain workers] ─▶ device put on the mesh (``prefetch`` ahead)

Everything up to the batch is a ``grain.MapDataset``: batch ``k`` is a pure function of
``(source, seed, h, H, k)``. The shards are disjoint and of equal size (the last
``len(source) mod H`` records are left out). Epoch ``e`` of shard ``h`` visits its records in
a permutation drawn from ``SeedSequence([seed, h, e])`` (:func:`epoch_permutation`): every
epoch is a fresh, independent shuffle, and the hosts' orders are independent, so records of
different hosts do not travel through the epochs in fixed pairs. (grain's own
``shuffle().repeat()`` seeds epoch ``e`` with ``seed + e``, and its 4-round index shuffle
returns some neighbouring seeds' permutations nearly in order: ``seed + 1`` of this
pipeline's former seed put 8 records back in exact order.) Batches run across epoch
boundaries.

The iterator's state is the number of batches consumed plus a fingerprint of the stream
(data set size, seed, global batch, image size, process count), the same in every process:
one copy in the checkpoint resumes every process, each re-deriving its own shard. Restoring
rebuilds the grain iterator at ``dataset[k:]``, independent of the worker count.

A record whose file fails to decode during training is replaced by the next decodable
record of the source (image and labels of that same file), with one warning naming the
failed file per process; a training run never stops for one bad file. Evaluation drops
such records instead and logs a count at the end (``make_eval_batches``).
"""

from __future__ import annotations

import collections
import functools
import logging
import sys
from collections.abc import Iterator
from typing import Any

import chex
import grain
import jax
import numpy as np
from absl import flags
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from facedeblur_jax.core import compat
from facedeblur_jax.core.imageio import ImageError
from facedeblur_jax.data import preprocess
from facedeblur_jax.data.sources import make_source

LOG = logging.getLogger("facedeblur_jax.data")
# 2: one state for all processes (the fingerprint has the process count, not the shard),
# per-epoch orders from epoch_permutation. 1: one process's state over grain's shuffle.
STATE_VERSION = 2
MAX_CONSECUTIVE_FAILURES = 64
_DATA_STREAM = 0xDA7A  # separates the data-order stream from other uses of config.seed


@functools.lru_cache(maxsize=8)
def epoch_permutation(size: int, seed: int, shard_index: int, epoch: int) -> np.ndarray:
    """``int64[size]``: the order in which shard ``shard_index`` visits its ``size`` records in
    ``epoch`` — a PCG64 permutation seeded by ``SeedSequence([seed, shard_index, epoch])``, so
    every (shard, epoch) is an independent draw. Read-only (cached)."""
    entropy = [int(seed) % 2**64, _DATA_STREAM, int(shard_index), int(epoch)]
    order = np.random.default_rng(np.random.SeedSequence(entropy)).permutation(size)
    order.flags.writeable = False
    return order


class ShardOrder:
    """The endless record order of one process: item ``k`` is the source index of the
    ``k``-th example the process reads.

    Process ``shard_index`` of ``shard_count`` owns source records ``shard_index +
    shard_count * j`` for ``j < len(self.shard)``; epoch ``e = k // len(shard)`` visits them
    in :func:`epoch_permutation` order. A random-access source for ``grain.MapDataset``.
    """

    def __init__(self, num_records: int, seed: int, shard_index: int, shard_count: int):
        per_host = num_records // shard_count
        if per_host < 1:
            raise ValueError(f"{num_records} records cannot be split over {shard_count} hosts")
        if not 0 <= shard_index < shard_count:
            raise ValueError(f"shard {shard_index} of {shard_count} does not exist")
        self.seed, self.shard_index = int(seed), int(shard_index)
        self.shard = range(shard_index, per_host * shard_count, shard_count)

    def __len__(self) -> int:
        return sys.maxsize  # endless, like grain's repeat()

    def __getitem__(self, k: int) -> int:
        epoch, position = divmod(int(k), len(self.shard))
        perm = epoch_permutation(len(self.shard), self.seed, self.shard_index, epoch)
        return self.shard[int(perm[position])]


class ReadOrNext:
    """``source[i]``, or the next decodable record when record ``i`` fails to decode.

    Each failed record is warned about once per process (its file named, with a running
    count) and then not retried. Raises ``RuntimeError`` after
    ``MAX_CONSECUTIVE_FAILURES`` failures in a row: the data is broken, not one file.
    """

    def __init__(self, source):
        self.source = source
        self.failed: set[int] = set()

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self.source)
        for step in range(min(n, MAX_CONSECUTIVE_FAILURES)):
            j = (int(index) + step) % n
            if j in self.failed:
                continue
            try:
                return self.source[j]
            except ImageError as e:
                self.failed.add(j)
                LOG.warning(
                    "unreadable record %d, using the next one instead (%d unreadable so far "
                    "in this process): %s",
                    j,
                    len(self.failed),
                    e,
                )
        raise RuntimeError(
            f"{MAX_CONSECUTIVE_FAILURES} consecutive records from index {index} of "
            f"{self.source!r} failed to decode; the data set is broken"
        )


class ReadOrNone:
    """``source[i]``, or ``None`` (dropped by grain) with a warning when it fails to decode."""

    def __init__(self, source):
        self.source = source
        self.failed: list[str] = []

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        try:
            return self.source[index]
        except ImageError as e:
            LOG.warning("dropping unreadable record %d: %s", index, e)
            self.failed.append(str(e))
            return None


def train_dataset(
    source,
    *,
    local_batch: int,
    seed: int,
    image_size: int,
    resize: str = "crop",
    shard_index: int = 0,
    shard_count: int = 1,
) -> grain.MapDataset:
    """The infinite ``MapDataset`` of one host's training batches.

    Host ``shard_index`` of ``shard_count`` reads its :class:`ShardOrder` (its own records,
    a fresh shuffle per epoch) and batches ``local_batch`` examples ``{"image": uint8[b, S,
    S, 3], "labels": uint8[b, S, S], "has_labels": bool[b]}``.
    """
    order = ShardOrder(len(source), seed, shard_index, shard_count)
    ds = grain.MapDataset.source(order).map(ReadOrNext(source).__getitem__)
    ds = ds.map(functools.partial(preprocess.to_example, size=image_size, policy=resize))
    return ds.batch(local_batch, drop_remainder=True)


def _allow_unparsed_absl_flags() -> None:
    """grain <= 0.2.18 reads an absl flag when starting workers and fails unless flags were
    parsed (google/grain#1355); scripts without ``absl.app`` get the flags' defaults."""
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _put(batch: dict[str, np.ndarray], sharding: NamedSharding | None) -> dict[str, jax.Array]:
    b, s = batch["image"].shape[:2]
    chex.assert_shape(batch["image"], (b, s, s, 3))
    chex.assert_shape(batch["labels"], (b, s, s))
    chex.assert_shape(batch["has_labels"], (b,))
    if sharding is None:
        return jax.device_put(batch)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()
    }


class TrainIterator:
    """Infinite iterator of global training batches with a tiny, JSON-serialisable state.

    Yields ``{"image": uint8[B, S, S, 3], "labels": uint8[B, S, S], "has_labels": bool[B]}``
    as ``jax.Array``s sharded along mesh axis ``"data"`` (committed to the default device
    when there is no mesh). ``get_state()`` counts the batches *returned* so far; batches
    already prefetched are not counted, so ``set_state`` resumes exactly after the last
    batch the caller saw.
    """

    def __init__(
        self,
        dataset: grain.MapDataset,
        *,
        sharding: NamedSharding | None,
        fingerprint: dict[str, Any],
        num_workers: int = 0,
        read_threads: int = 2,
        host_buffer: int = 4,
        prefetch: int = 2,
        order: ShardOrder | None = None,
        legacy_fingerprint: dict[str, Any] | None = None,
    ):
        self._dataset = dataset
        self._sharding = sharding
        self._fingerprint = dict(fingerprint)
        self._legacy = legacy_fingerprint
        self._order = order
        self._num_workers = int(num_workers)
        self._read_threads = max(1, int(read_threads))
        self._host_buffer = max(1, int(host_buffer))
        self._prefetch = max(1, int(prefetch))
        self._next_batch = 0
        self._host: Iterator | None = None
        self._queue: collections.deque = collections.deque()

    def record_indices(self, batch: int) -> list[int]:
        """The source indices this process draws for its rows of batch ``batch`` (before a
        record that fails to decode is replaced by the next one)."""
        if self._order is None:
            raise ValueError("this iterator was built without its record order")
        b = int(self._fingerprint["global_batch"]) // int(self._fingerprint["processes"])
        return [self._order[batch * b + i] for i in range(b)]

    def _start(self) -> None:
        ds = self._dataset[self._next_batch :].to_iter_dataset(
            grain.ReadOptions(
                num_threads=self._read_threads, prefetch_buffer_size=self._host_buffer
            )
        )
        if self._num_workers > 0:
            _allow_unparsed_absl_flags()
            ds = ds.mp_prefetch(
                grain.MultiprocessingOptions(
                    num_workers=self._num_workers, per_worker_buffer_size=self._host_buffer
                )
            )
        self._host = iter(ds)

    def _fill(self) -> None:
        while len(self._queue) < self._prefetch:
            self._queue.append(_put(next(self._host), self._sharding))

    def __iter__(self) -> TrainIterator:
        return self

    def __next__(self) -> dict[str, jax.Array]:
        if self._host is None:
            self._start()
        if not self._queue:
            self._fill()
        batch = self._queue.popleft()
        self._next_batch += 1
        self._fill()  # start the next transfers while the caller computes on this batch
        return batch

    def get_state(self) -> dict[str, Any]:
        """``{"version", "next_batch", **fingerprint}``: ints only, JSON-serialisable, and
        the same in every process of a multi-host run."""
        return {"version": STATE_VERSION, "next_batch": self._next_batch, **self._fingerprint}

    def set_state(self, state: dict[str, Any]) -> None:
        """Resumes so the next batch is the one that followed when ``state`` was taken.

        A state of the older single-process format (version 1) is taken when it describes
        the same data, batch and image size; the batches after it then follow this
        pipeline's order (a warning says so).

        Raises:
          ValueError: ``state`` comes from a pipeline with another data set, seed, batch
            size, image size or number of processes (the keys that differ are named).
        """
        version = state.get("version")
        if version == 1 and self._legacy is not None:
            expected = self._legacy
        else:
            expected = {"version": STATE_VERSION, **self._fingerprint}
        diff = {
            k: (state.get(k), v) for k, v in expected.items() if _plain(state.get(k)) != _plain(v)
        }
        if "processes" in diff and "version" not in diff:
            saved, now = diff["processes"]
            raise ValueError(
                f"the checkpoint's data position was saved by {saved} process(es) and this run "
                f"has {now}: each process reads its own shard of the data, so resume with "
                f"{saved} process(es)"
            )
        if diff:
            raise ValueError(f"data iterator state does not fit this pipeline: {diff}")
        next_batch = int(state["next_batch"])
        if next_batch < 0:
            raise ValueError(f"next_batch must be >= 0; got {next_batch}")
        if version == 1:
            LOG.warning(
                "resuming a data position saved by an older version of the pipeline: from "
                "batch %d on, batches follow this version's shuffle",
                next_batch,
            )
        self.close()
        self._next_batch = next_batch

    def close(self) -> None:
        """Stops worker processes and drops prefetched batches (``next`` restarts them)."""
        if self._host is not None and hasattr(self._host, "close"):
            self._host.close()
        self._host = None
        self._queue.clear()

    def __enter__(self) -> TrainIterator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _plain(value):
    return list(value) if isinstance(value, tuple | list) else value


def make_train_iterator(
    config, mesh: Mesh | None = None, *, source=None, shard: tuple[int, int] | None = None
) -> TrainIterator:
    """The training stream of ``config`` (``configs/paper.py``: ``data``, ``train``).

    Args:
      config: the experiment config; uses ``seed``, ``image_size``, ``model.num_classes``,
        ``train.global_batch_size`` and ``data.*``.
      mesh: a mesh with axis ``"data"``; batches are sharded ``P("data")`` across it and
        each process loads ``B / jax.process_count()`` records of its own shard. ``None``:
        plain arrays on the default device.
      source: a source to use instead of ``make_source(config.data, data.train_split)``.
      shard: ``(index, count)``: read process ``index`` of ``count``'s shard (its ``B /
        count`` rows of every batch) instead of this process's; only without a mesh.

    Returns:
      A :class:`TrainIterator` (infinite, deterministic, checkpointable).
    """
    data = config.data
    preprocess.target_geometry((1, 1), 1, data.resize)  # a bad policy fails here, not in a worker
    if source is None:
        source = make_source(data, data.train_split, num_classes=config.model.num_classes)
    global_batch = int(config.train.global_batch_size)
    host, hosts = (jax.process_index(), jax.process_count()) if shard is None else shard
    if shard is not None and mesh is not None and hosts != jax.process_count():
        raise ValueError(f"shard={shard} reads one of {hosts} shards: pass no mesh")
    if global_batch % hosts:
        raise ValueError(
            f"train.global_batch_size={global_batch} is not divisible by {hosts} processes"
        )
    if len(source) < hosts:
        raise ValueError(f"{source!r} has {len(source)} records for {hosts} processes")
    sharding = None
    if mesh is not None:
        if "data" not in mesh.axis_names:
            raise ValueError(f"mesh has axes {mesh.axis_names}; the pipeline needs 'data'")
        if global_batch % mesh.shape["data"]:
            raise ValueError(
                f"train.global_batch_size={global_batch} is not divisible by the mesh's "
                f"{mesh.shape['data']} 'data' shards"
            )
        sharding = NamedSharding(mesh, PartitionSpec("data"))
    local_batch = global_batch // hosts
    seed = int(config.seed)
    dataset = train_dataset(
        source,
        local_batch=local_batch,
        seed=seed,
        image_size=int(config.image_size),
        resize=data.resize,
        shard_index=host,
        shard_count=hosts,
    )
    fingerprint = {
        "num_records": len(source),
        "seed": seed,
        "global_batch": global_batch,
        "image_size": int(config.image_size),
        "processes": hosts,
    }
    legacy = compat.pipeline_state_v1(
        num_records=len(source),
        seed=seed,
        data_stream=_DATA_STREAM,
        local_batch=local_batch,
        image_size=int(config.image_size),
        host=host,
        hosts=hosts,
    )
    return TrainIterator(
        dataset,
        sharding=sharding,
        fingerprint=fingerprint,
        num_workers=data.num_workers,
        read_threads=data.read_threads,
        host_buffer=data.host_buffer,
        prefetch=data.prefetch,
        order=ShardOrder(len(source), seed, host, hosts),
        legacy_fingerprint=legacy,
    )


def _pad_example(size: int) -> dict[str, Any]:
    return {
        "image": np.zeros((size, size, 3), np.uint8),
        "labels": np.zeros((size, size), np.uint8),
        "has_labels": np.bool_(False),
        "identity": np.int32(-1),
        "name": "",
        "valid": np.bool_(False),
    }


def _stack(examples: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    batch = {k: np.stack([e[k] for e in examples]) for k in examples[0] if k != "name"}
    batch["name"] = np.array([e["name"] for e in examples], dtype=object)
    return batch


def make_eval_batches(
    config,
    split: str = "test",
    batch_size: int | None = None,
    *,
    source=None,
    num_threads: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Every record of ``split`` once, in source order, as padded numpy batches.

    Host-local: every host that calls this reads the whole split (evaluation runs on
    one host, or each host evaluates its own copy).

    Args:
      config: the experiment config (``image_size``, ``data.*``, ``model.num_classes``).
      split: the split to read.
      batch_size: records per batch; default ``config.train.global_batch_size``.
      source: a source to use instead of ``make_source(config.data, split)``.
      num_threads: decoding threads; default ``config.data.read_threads``.

    Yields:
      ``{"image": uint8[b, S, S, 3], "labels": uint8[b, S, S], "has_labels": bool[b],
      "identity": int32[b] (-1 unknown), "name": object[b] (str), "valid": bool[b]}``;
      the last batch is padded to ``b`` with ``valid=False`` rows (zeros, name ``""``).
      Records that fail to decode are dropped with a warning and counted in a summary
      line logged after the last batch.
    """
    data = config.data
    preprocess.target_geometry((1, 1), 1, data.resize)
    if source is None:
        source = make_source(data, split, num_classes=config.model.num_classes)
    batch_size = int(batch_size or config.train.global_batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    size = int(config.image_size)
    reader = ReadOrNone(source)
    ds = grain.MapDataset.source(reader).map(
        functools.partial(preprocess.to_eval_example, size=size, policy=data.resize)
    )
    threads = max(1, int(num_threads or data.read_threads))
    examples = ds.to_iter_dataset(
        grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * batch_size)
    )

    def batches():
        pending, count, num_batches = [], 0, 0
        for example in examples:
            pending.append(example)
            count += 1
            if len(pending) == batch_size:
                num_batches += 1
                yield _check_eval_batch(_stack(pending), batch_size, size)
                pending = []
        if pending:
            num_batches += 1
            pending += [_pad_example(size)] * (batch_size - len(pending))
            yield _check_eval_batch(_stack(pending), batch_size, size)
        level = logging.WARNING if reader.failed else logging.INFO
        LOG.log(
            level,
            "eval %r: %d records in %d batches; dropped %d unreadable record(s)",
            split,
            count,
            num_batches,
            len(reader.failed),
        )

    return batches()


def _check_eval_batch(batch: dict[str, np.ndarray], b: int, s: int) -> dict[str, np.ndarray]:
    chex.assert_shape(batch["image"], (b, s, s, 3))
    chex.assert_shape([batch["labels"]], (b, s, s))
    chex.assert_shape([batch["has_labels"], batch["valid"], batch["identity"], batch["name"]], (b,))
    return batch
