"""The README's main job: train the demo config on the bundled sample faces (all five
phases, minutes on a CPU), then deblur the 40 held-back faces and print mean PSNR/SSIM
of the blurred input, of G_c alone and of the full model.

The held-back faces are blurred with a fixed key (no augmentation), the same for every
run, so numbers from different runs compare.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from facedeblur_jax import commands
from facedeblur_jax.config import load_config
from facedeblur_jax.core import imageio, metrics, sample_data
from facedeblur_jax.core.outputs import check_output_folder
from facedeblur_jax.degrade.synthesize import synthesize
from facedeblur_jax.serving.loading import load_model, make_deblur_fn
from facedeblur_jax.training.loop import train

EVAL_SEED = 1234


def load_sample_batch(split: str, size: int) -> np.ndarray:
    """``uint8[N, size, size, 3]`` bundled faces of ``split``."""
    faces = sample_data.sample_faces(split)
    return np.stack([imageio.resize(imageio.load_image(f.path), size) for f in faces])


def evaluate_held_back(workdir, out_dir: str | None = None) -> dict[str, tuple[float, float]]:
    """Mean ``(PSNR, SSIM)`` of blurred / G_c / full model on the held-back sample faces."""
    loaded = load_model(workdir)
    config = loaded.config
    sharp = load_sample_batch("test", config.image_size)
    degrade_cfg = config.degrade.copy_and_resolve_references()
    with degrade_cfg.unlocked():
        degrade_cfg.augment = False
        degrade_cfg.kernel_pool_size = 0  # held-out faces get fresh kernels, not the training pool
    data = jax.jit(lambda k, s: synthesize(k, s, None, degrade_cfg))(
        jax.random.key(EVAL_SEED), jnp.asarray(sharp)
    )
    out = make_deblur_fn(loaded)(data.blurred)
    results = {}
    for name, images in (("blurred", data.blurred), ("G_c", out.y_coarse), ("full", out.y)):
        results[name] = (
            float(jnp.mean(metrics.psnr(images, data.sharp))),
            float(jnp.mean(metrics.ssim(images, data.sharp))),
        )
    if out_dir:
        for i in range(min(8, len(sharp))):
            row = np.concatenate(
                [
                    data.blurred[i],
                    np.clip(out.y_coarse[i], 0, 1),
                    np.clip(out.y[i], 0, 1),
                    data.sharp[i],
                ],
                axis=1,
            )
            path = imageio.safe_output_path(out_dir, f"demo_{i:02d}.png")
            imageio.save_image(path, row, overwrite=True)
        print(f"wrote blurred | G_c | full | sharp strips to {out_dir}")
    return results


def run(
    config_name: str, overrides=None, workdir: str = "runs/demo", out_dir: str | None = None
) -> int:
    config = load_config(config_name, overrides)
    if out_dir:  # checked before minutes of training; nothing created yet
        check_output_folder(out_dir)
    t0 = time.time()
    print(
        f"training {config_name} on the bundled sample faces ({config.image_size}px, "
        f"{len(jax.devices())} device(s)) in {workdir}",
        flush=True,
    )
    train(config, workdir)
    t_train = time.time() - t0
    results = evaluate_held_back(workdir, out_dir)
    print(f"held-back sample faces (40), mean over faces, seed {EVAL_SEED}:")
    for name, (psnr, ssim) in results.items():
        print(f"  {name:<8} PSNR {psnr:6.2f} dB  SSIM {ssim:.4f}")
    print(f"train {t_train:.0f} s, total {time.time() - t0:.0f} s")
    return 0


def _description() -> str:
    cfg = load_config("demo")
    phases = ", ".join(f"{name} {cfg.phases[name].steps}" for name in cfg.phase_order)
    return (
        f"Trains the 'demo' config ({cfg.image_size}x{cfg.image_size} faces, small networks; "
        f"steps per phase: {phases}; batch {cfg.train.global_batch_size}) on the 160 "
        "training faces bundled with the package, then blurs the 40 held-back faces with a "
        "fixed seed and prints mean PSNR/SSIM of the blurred input, of G_c alone and of the "
        "full model. Takes a few minutes on a 2-core CPU. Re-running with the same --workdir "
        "resumes from its checkpoints instead of training again."
    )


def build_parser() -> argparse.ArgumentParser:
    p = commands.parser("demo", _description(), epilog=commands.OVERRIDES_HELP)
    p.add_argument("--config", default="demo", help=commands.CONFIG_HELP)
    p.add_argument("--workdir", default="runs/demo", help="checkpoints and logs")
    p.add_argument(
        "--out",
        default=None,
        help="also write blurred | G_c | full | sharp strips here (default: not written)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args, overrides = commands.parse_with_overrides(
        build_parser(), sys.argv[1:] if argv is None else argv
    )
    return run(args.config, overrides, workdir=args.workdir, out_dir=args.out)


if __name__ == "__main__":
    sys.exit(main())
