"""Faces larger than the model: ``facedeblur deblur --resample output`` against ``residual``.

    python -m facedeblur_jax.bench.photo_resolution --faces DIR --out FILE.json \\
        [--checkpoint FILE.npz] [--size 128] [--per-identity 5] [--kernels-per-face 2]

A model of ``S`` px (default: the bundled 64-px model) sees a larger face shrunk. Sharp
aligned faces from ``DIR`` (files ``<identity>_<n>.png``; the first ``--per-identity`` of
each identity in name order) are resized to ``--size`` px (:func:`imageio.resize`),
blurred with the paper's test kernels at that size (the bank ``facedeblur make-kernels
--config paper --per-size 2`` writes: sizes 13, 15, …, 27 on 128 px, i.e. 6.5–13.5 px once
shrunk to 64, the sizes the bundled model was trained on), given σ = ``--sigma`` Gaussian
noise and rounded to 8 bits (an image file). Face ``i`` gets kernels ``(i + j·K/m) mod K``
for ``j < m`` (``m`` = ``--kernels-per-face``, ``K`` kernels), so every kernel is used
about equally. Each blurred face then goes through both ways back, with one model call per
crop:

* ``no-align``: the whole image is the crop (``--no-align``:
  :func:`~facedeblur_jax.serving.photos.model_inputs` and
  :func:`~facedeblur_jax.serving.photos.back_to_size`: Lanczos down, bicubic back);
* ``photo``: the photo path's resamplers with a known transform (the image shrunk
  ``size / S`` times about its centre; no detector): ``align_crop`` (Gaussian + bilinear
  down), then ``paste_back`` of the output or ``add_correction`` of ``output − input``,
  with a mask of ones so the whole image is the face.

Scores: PSNR and SSIM (:mod:`facedeblur_jax.core.metrics`: RGB, [0, 1], whole image) of the
blurred input, ``output`` and ``residual`` against the sharp ``--size``-px face. Per face,
the mean over its kernels; the paired difference ``residual − output`` per face, its mean,
standard deviation and 95 % t-interval over faces. The JSON also holds each face's numbers,
the kernels, the command, the CPU, the versions and the date.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import PIL
from scipy import stats

from facedeblur_jax.config import load_config
from facedeblur_jax.core import imageio, metrics
from facedeblur_jax.degrade import blur as blur_lib
from facedeblur_jax.degrade import kernel_bank
from facedeblur_jax.faces import align as face_align
from facedeblur_jax.serving import loading, photos

METHODS = ("blurred", "output", "residual")


def pick_faces(folder: pathlib.Path, per_identity: int) -> list[pathlib.Path]:
    """The first ``per_identity`` images of each identity (the name before the first ``_``),
    in name order."""
    by_identity = collections.defaultdict(list)
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in imageio.IMAGE_SUFFIXES and not path.name.startswith("."):
            by_identity[path.stem.split("_")[0]].append(path)
    return [p for name in sorted(by_identity) for p in by_identity[name][:per_identity]]


def paper_kernels(per_size: int) -> kernel_bank.KernelBank:
    """``facedeblur make-kernels --config paper --per-size N`` (the paper's 128-px sizes)."""
    return kernel_bank.make_bank(
        **kernel_bank.bank_kwargs_from_config(load_config("paper")), per_size=per_size
    )


def degrade(sharp: np.ndarray, kernels: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """``uint8[N, H, W, 3]`` sharp, ``f32[N, k, k]`` -> blurred, noisy ``uint8[N, H, W, 3]``."""
    x = jnp.asarray(sharp, jnp.float32) / 255.0
    y = blur_lib.blur(x, jnp.asarray(kernels))
    y = blur_lib.add_noise(jax.random.key(seed), y, sigma)
    return imageio.to_uint8(np.asarray(y))


def shrink_about_centre(size: int, model_size: int) -> np.ndarray:
    """``f64[2, 3]``: a ``size × size`` image onto ``model_size × model_size`` (pixel centres
    at ``(x + 0.5) / size`` map to the same fractions)."""
    s = model_size / size
    return np.array([[s, 0.0, (s - 1.0) / 2.0], [0.0, s, (s - 1.0) / 2.0]])


def scores(images: np.ndarray, sharp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PSNR and SSIM of ``uint8[N, H, W, 3]`` against ``sharp``: ``(f64[N], f64[N])``."""
    a = jnp.asarray(images, jnp.float32) / 255.0
    b = jnp.asarray(sharp, jnp.float32) / 255.0
    return np.asarray(metrics.psnr(a, b), np.float64), np.asarray(metrics.ssim(a, b), np.float64)


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    """``a − b`` per face: mean, sd, the 95 % t-interval of the mean, and how many are > 0."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    n = len(d)
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n))
    mean = float(d.mean())
    return {
        "mean": mean,
        "sd": sd,
        "ci95": [mean - half, mean + half],
        "positive": int((d > 0).sum()),
        "n": n,
    }


def run_paths(loaded, blurred: np.ndarray, batch_size: int) -> dict[str, dict[str, np.ndarray]]:
    """Both ways back for both paths: ``{path: {method: uint8[N, H, W, 3]}}``."""
    size = loaded.image_size
    # --no-align: the code facedeblur deblur --no-align runs.
    x = photos.model_inputs(list(blurred), size)
    y = loaded_deblur(loaded, x, batch_size)
    no_align = {"blurred": blurred}
    for mode in photos.RESAMPLE_MODES:
        back = [photos.back_to_size(*args, mode) for args in zip(blurred, x, y, strict=True)]
        no_align[mode] = np.stack(back)
    # The photo path's resamplers with a known transform; the whole image is the face.
    m = shrink_about_centre(blurred.shape[1], size)
    ones = np.ones((size, size), np.float32)
    x = np.stack([face_align.align_crop(b, m, size) for b in blurred])
    y = loaded_deblur(loaded, x, batch_size)
    output, residual = [], []
    for b, xi, yi in zip(blurred, x, y, strict=True):
        output.append(face_align.paste_back(b, yi, m, ones))
        correction = yi - xi.astype(np.float32) / 255.0
        residual.append(face_align.add_correction(b, correction, m, ones))
    photo = {"blurred": blurred, "output": np.stack(output), "residual": np.stack(residual)}
    return {"no-align": no_align, "photo": photo}


def loaded_deblur(loaded, x: np.ndarray, batch_size: int) -> np.ndarray:
    """The model's output ``f32[N, S, S, 3]`` in [0, 1] (:func:`loading.deblur_array`)."""
    return loading.deblur_array(loaded, x, batch_size=batch_size)


def cpu_name() -> str:
    """The CPU's model name (``lscpu``'s "Model name", from /proc/cpuinfo)."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--faces", required=True, help="folder of sharp aligned faces")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--checkpoint", default=None, help="default: the bundled model")
    p.add_argument("--size", type=int, default=128, help="the faces' size (px)")
    p.add_argument("--per-identity", type=int, default=5)
    p.add_argument("--kernels-per-face", type=int, default=2)
    p.add_argument("--per-size", type=int, default=2, help="bank kernels per size")
    p.add_argument("--sigma", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args(argv)
    started = time.time()

    checkpoint = args.checkpoint or loading.bundled_model_path()
    if checkpoint is None:
        p.error("no bundled model: pass --checkpoint")
    loaded = loading.load_model(checkpoint)
    if not args.size > loaded.image_size:
        p.error(f"--size must exceed the model's {loaded.image_size} px")
    files = pick_faces(pathlib.Path(args.faces), args.per_identity)
    sharp = np.stack([imageio.resize(imageio.load_image(f), args.size) for f in files])
    bank = paper_kernels(args.per_size)
    k, m = len(bank), args.kernels_per_face
    choice = np.array([[(i + j * (k // m)) % k for j in range(m)] for i in range(len(files))])
    print(
        f"{len(files)} faces × {m} of {k} kernels at {args.size} px; model {loaded.image_size} px"
    )

    sharp_rep = np.repeat(sharp, m, axis=0)
    blurred = degrade(sharp_rep, bank.kernels[choice.reshape(-1)], args.sigma, args.seed)
    outputs = run_paths(loaded, blurred, args.batch_size)

    result = {
        "command": "python -m facedeblur_jax.bench.photo_resolution " + " ".join(sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "cpu": cpu_name(),
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "numpy": np.__version__,
            "pillow": PIL.__version__,
        },
        "model": {
            "checkpoint": "bundled" if args.checkpoint is None else str(args.checkpoint),
            "name": loaded.meta.get("name"),
            "step": loaded.step,
            "image_size": loaded.image_size,
        },
        "faces": {
            "folder": pathlib.Path(args.faces).name,
            "count": len(files),
            "identities": len({f.stem.split("_")[0] for f in files}),
            "files": [f.name for f in files],
            "size": args.size,
            "resize": "imageio.resize (bicubic up / Lanczos down)",
        },
        "kernels": {
            "bank": f"facedeblur make-kernels --config paper --per-size {args.per_size}",
            "sizes": [int(s) for s in bank.sizes],
            "per_face": m,
            "choice": choice.tolist(),
        },
        "sigma": args.sigma,
        "seed": args.seed,
        "paths": {},
    }
    for path, images in outputs.items():
        per_face = {}
        for method in METHODS:
            psnr, ssim = scores(images[method], sharp_rep)
            per_face[method] = {
                "psnr": psnr.reshape(-1, m).mean(1),
                "ssim": ssim.reshape(-1, m).mean(1),
                "psnr_by_size": {
                    str(s): float(psnr[bank.sizes[choice.reshape(-1)] == s].mean())
                    for s in bank.unique_sizes
                },
            }
        entry = {
            method: {
                "psnr": float(v["psnr"].mean()),
                "ssim": float(v["ssim"].mean()),
                "psnr_by_size": v["psnr_by_size"],
            }
            for method, v in per_face.items()
        }
        entry["residual_minus_output"] = {
            q: paired(per_face["residual"][q], per_face["output"][q]) for q in ("psnr", "ssim")
        }
        entry["residual_minus_blurred"] = {
            q: paired(per_face["residual"][q], per_face["blurred"][q]) for q in ("psnr", "ssim")
        }
        entry["output_minus_blurred"] = {
            q: paired(per_face["output"][q], per_face["blurred"][q]) for q in ("psnr", "ssim")
        }
        entry["per_face"] = {
            method: {q: [round(float(x), 5) for x in v[q]] for q in ("psnr", "ssim")}
            for method, v in per_face.items()
        }
        result["paths"][path] = entry
        d = entry["residual_minus_output"]
        print(
            f"{path}: blurred {entry['blurred']['psnr']:.2f} dB / {entry['blurred']['ssim']:.4f}, "
            f"output {entry['output']['psnr']:.2f} / {entry['output']['ssim']:.4f}, "
            f"residual {entry['residual']['psnr']:.2f} / {entry['residual']['ssim']:.4f}; "
            f"residual − output {d['psnr']['mean']:+.3f} dB "
            f"[{d['psnr']['ci95'][0]:+.3f}, {d['psnr']['ci95'][1]:+.3f}], "
            f"SSIM {d['ssim']['mean']:+.4f} "
            f"[{d['ssim']['ci95'][0]:+.4f}, {d['ssim']['ci95'][1]:+.4f}]"
        )
    result["seconds"] = round(time.time() - started, 1)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
