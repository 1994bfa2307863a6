"""Top-1 recognition of the Flax MobileFaceNet against the PyTorch original (a measurement).

    python -m tests.models.measure_mobilefacenet_top1 --checkpoint 068.ckpt --faces FACES_DIR
    python -m tests.models.measure_mobilefacenet_top1 --checkpoint 068.ckpt \
        --faces PREPARED_CELEBA --gallery loo

``FACES_DIR`` holds ``labels.csv`` (``split,file,identity``) and aligned square RGB crops
(112 px, or any size: then each crop is resized to 112×112 once, bilinear and antialiased
as ``mobilefacenet.preprocess`` does, and both networks get the same resized pixels).
Probes: the ``--split`` faces (default ``test``), each assigned the gallery identity of
highest cosine. Gallery ``train`` (default): per identity, the mean of the L2-normalised
embeddings of its ``train`` faces. Gallery ``loo``: the probe split's own faces, the
probe left out of its identity's mean (``evaluators.identity.recognition``: for splits
whose identities the train split does not hold, as ``facedeblur data prepare celeba``
writes them). Both the PyTorch twin (``tests/models/torch_mobilefacenet.py``, loaded with
the checkpoint strictly) and the converted Flax port embed every face, with and without
the mirrored-crop concat. Minutes on a CPU (every face goes through both networks twice);
prints a table, writes nothing. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import sys
import time

import jax
import numpy as np
import torch

from facedeblur_jax.core.imageio import load_image
from facedeblur_jax.evaluators.identity import recognition, unit
from facedeblur_jax.models.mobilefacenet import embed
from facedeblur_jax.models.mobilefacenet_convert import convert_state_dict, read_checkpoint
from tests.models.torch_mobilefacenet import TorchMobileFaceNet, torch_embed


def top1(emb: np.ndarray, ids: np.ndarray, train: np.ndarray) -> tuple[float, float, float]:
    """(top-1 of the test faces, mean same-identity cosine, mean different-identity cosine
    between test faces and gallery means)."""
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    labels = np.unique(ids[train])
    gallery = np.stack([unit[train & (ids == k)].mean(0) for k in labels])
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    cos = unit[~train] @ gallery.T
    truth = ids[~train][:, None] == labels[None, :]
    return (
        float(np.mean(labels[cos.argmax(1)] == ids[~train])),
        float(cos[truth].mean()),
        float(cos[~truth].mean()),
    )


def top1_loo(emb: np.ndarray, ids: np.ndarray) -> tuple[float, int]:
    """(top-1, probes counted) with the leave-one-out gallery of ``evaluators.identity``."""
    u = unit(emb)
    labels = np.unique(ids, return_inverse=True)[1]
    r = recognition(u, np.arange(len(u)), u, labels)
    return r["top_1"], r["probes"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=pathlib.Path)
    parser.add_argument("--faces", required=True, type=pathlib.Path)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--split", default="test", help="the probes' split")
    parser.add_argument("--gallery", choices=("train", "loo"), default="train")
    args = parser.parse_args(argv)

    rows = list(csv.DictReader(open(args.faces / "labels.csv", newline="")))
    keep = ("train", args.split) if args.gallery == "train" else (args.split,)
    rows = [r for r in rows if r["split"] in keep]
    ids = np.array([r["identity"] for r in rows])
    train = np.array([r["split"] == "train" for r in rows])
    print(f"{len(rows)} faces: {train.sum()} train, {(~train).sum()} {args.split}, "
          f"{len(np.unique(ids))} identities; gallery {args.gallery}")  # fmt: skip

    state_dict = read_checkpoint(args.checkpoint)
    net = TorchMobileFaceNet()
    net.load_state_dict(state_dict, strict=True)
    net = net.eval().to(memory_format=torch.channels_last)
    variables = convert_state_dict(state_dict)
    flax_embed = jax.jit(lambda v, x: embed(v, x, flip=True))

    ours, ref = [], []
    t_flax = t_torch = 0.0
    for start in range(0, len(rows), args.batch):
        batch = rows[start : start + args.batch]
        x = np.stack([load_image(args.faces / r["file"]) for r in batch]).astype(np.float32)
        x /= 255.0
        if x.shape[1:3] != (112, 112):  # one resize, the same pixels for both networks
            x = np.asarray(jax.image.resize(x, (len(x), 112, 112, 3), "linear", antialias=True))
        t = time.perf_counter()
        ours.append(np.asarray(flax_embed(variables, x)))
        t_flax += time.perf_counter() - t
        t = time.perf_counter()
        ref.append(torch_embed(net, x, flip=True))
        t_torch += time.perf_counter() - t
        print(f"  {start + len(batch)}/{len(rows)}", file=sys.stderr, flush=True)
    ours, ref = np.concatenate(ours), np.concatenate(ref)
    print(f"embedding time: Flax {t_flax:.0f} s, PyTorch {t_torch:.0f} s (both with the flip)")
    print(f"max |Δ| Flax − PyTorch over all faces: {np.abs(ours - ref).max():.2e} "
          f"(max |embedding| {np.abs(ref).max():.2f})")  # fmt: skip
    print("network   flip  top-1            same-id cos  diff-id cos")
    for name, emb in (("PyTorch", ref), ("Flax", ours)):
        for flip, dims in ((False, slice(0, 128)), (True, slice(0, 256))):
            if args.gallery == "loo":
                acc, count = top1_loo(emb[:, dims], ids)
                n = round(float(acc) * count)
                print(f"{name:<9} {flip!s:<5} {100 * acc:6.2f} % ({n}/{count})")
                continue
            acc, same, diff = top1(emb[:, dims], ids, train)
            n = round(float(acc) * int((~train).sum()))
            print(f"{name:<9} {flip!s:<5} {100 * acc:6.2f} % ({n}/{(~train).sum()})"
                  f"  {same:11.3f}  {diff:11.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
