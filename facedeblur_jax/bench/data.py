"""Input-pipeline throughput: images/s the training iterator delivers, as JSON.

    python -m facedeblur_jax.bench.data --config paper --batches 60 --workers 0 2

Measures ``make_train_iterator`` end to end (decode, resize / crop, batch, device put)
with nothing else running, after ``--warmup`` batches (worker start-up excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax

from facedeblur_jax.config import load_config, parse_value
from facedeblur_jax.data import pipeline


def measure(config, num_workers: int, batches: int, warmup: int) -> dict:
    config.data.num_workers = num_workers
    with pipeline.make_train_iterator(config) as it:
        for _ in range(warmup):
            jax.block_until_ready(next(it))
        start = time.perf_counter()
        for _ in range(batches):
            jax.block_until_ready(next(it))
        seconds = time.perf_counter() - start
    images = batches * config.train.global_batch_size
    return {
        "num_workers": num_workers,
        "images_per_s": round(images / seconds, 1),
        "batches": batches,
        "seconds": round(seconds, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="paper")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--set", nargs="*", default=[], help="overrides: data.read_threads=2")
    args = parser.parse_args()
    overrides = dict(kv.split("=", 1) for kv in args.set)
    config = load_config(args.config, {k: parse_value(v) for k, v in overrides.items()})
    results = [measure(config, w, args.batches, args.warmup) for w in args.workers]
    print(
        json.dumps(
            {
                "config": args.config,
                "source": config.data.source,
                "image_size": config.image_size,
                "global_batch_size": config.train.global_batch_size,
                "read_threads": config.data.read_threads,
                "cpu_count": os.cpu_count(),
                "machine": platform.processor() or platform.machine(),
                "device": str(jax.devices()[0]),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
