"""The README's main job on the bundled sample faces.

Blurs the held-back sample faces with on-device kernels and runs the model on them,
printing mean PSNR/SSIM of the blurred input and of the output. Until the training
command lands the model is freshly initialised (and says so): with residual scales it
starts close to the identity, so its numbers sit near the blurred input's.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from facedeblur_jax import imageio, metrics, sample_data
from facedeblur_jax.config import load_config
from facedeblur_jax.degrade.synthesize import synthesize
from facedeblur_jax.models.factory import build_model


def load_sample_batch(split: str, size: int) -> np.ndarray:
    """``uint8[N, size, size, 3]`` bundled faces of ``split``."""
    faces = sample_data.sample_faces(split)
    return np.stack([imageio.resize(imageio.load_image(f.path), size) for f in faces])


def run(config_name: str, overrides=None, out_dir: str | None = None) -> int:
    config = load_config(config_name, overrides)
    size = config.image_size
    t0 = time.time()
    sharp = load_sample_batch("test", size)
    print(f"loaded {len(sharp)} held-back sample faces at {size}x{size}")
    degrade_cfg = config.degrade.copy_and_resolve_references()
    with degrade_cfg.unlocked():
        degrade_cfg.augment = False
    data = jax.jit(lambda k, s: synthesize(k, s, None, degrade_cfg))(
        jax.random.key(config.seed + 1), jnp.asarray(sharp)
    )
    model = build_model(config.model)
    variables = model.init(jax.random.key(config.seed), data.blurred[:1])
    print("model: freshly initialised (no training yet)")
    y = jax.jit(lambda v, x: model.apply(v, x).y)(variables, data.blurred)
    psnr_in = float(jnp.mean(metrics.psnr(data.blurred, data.sharp)))
    psnr_out = float(jnp.mean(metrics.psnr(y, data.sharp)))
    ssim_in = float(jnp.mean(metrics.ssim(data.blurred, data.sharp)))
    ssim_out = float(jnp.mean(metrics.ssim(y, data.sharp)))
    print(f"blurred : PSNR {psnr_in:6.2f} dB  SSIM {ssim_in:.4f}")
    print(f"output  : PSNR {psnr_out:6.2f} dB  SSIM {ssim_out:.4f}")
    if out_dir:
        for i in range(min(8, len(sharp))):
            row = np.concatenate([data.blurred[i], np.clip(y[i], 0, 1), data.sharp[i]], axis=1)
            imageio.save_image(
                imageio.safe_output_path(out_dir, f"demo_{i:02d}.png"), row, overwrite=True
            )
        print(f"wrote blurred | output | sharp strips to {out_dir}")
    print(f"done in {time.time() - t0:.1f} s")
    return 0
