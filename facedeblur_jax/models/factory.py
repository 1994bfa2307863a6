"""Builds the networks from a config's ``model`` section."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from facedeblur_jax.models.discriminator import Discriminator
from facedeblur_jax.models.face_deblur import FaceDeblurModel

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}

# ``model.layout_version`` of the networks this code builds. 2: the official layout
# (18-conv scales with ReLU after the ResBlock adds, max-pooled prior, the official P;
# docs/design.md §2). 1: the layout before (14-conv scales, the prior average-pooled to
# 0.5× and resized up, a P of 3×3 conv stages, transposed-conv decoder stages and 1×1
# logits); no longer built, so its checkpoints are refused by name
# (core/compat.py).
LAYOUT_VERSION = 2


def compute_dtype(model_cfg: ml_collections.ConfigDict):
    """The compute dtype named by ``model.compute_dtype`` (params always float32)."""
    name = model_cfg.compute_dtype
    if name not in DTYPES:
        raise ValueError(f"model.compute_dtype must be one of {sorted(DTYPES)}; got {name!r}")
    return DTYPES[name]


def build_model(
    model_cfg: ml_collections.ConfigDict, bn_axis_name: str | None = None
) -> FaceDeblurModel:
    """``FaceDeblurModel`` (G_c, P, G_f) from ``config.model``.

    ``bn_axis_name`` is the mesh axis over which P's BatchNorm averages batch statistics
    in training (``"data"`` inside the sharded step, ``None`` elsewhere).
    """
    if model_cfg.layout_version != LAYOUT_VERSION:
        raise ValueError(
            f"model.layout_version = {model_cfg.layout_version!r}: this version builds only "
            f"layout {LAYOUT_VERSION}"
        )
    return FaceDeblurModel(
        num_classes=model_cfg.num_classes,
        num_fine_stages=model_cfg.num_fine_stages,
        share_fine_weights=model_cfg.share_fine_weights,
        first_kernel=model_cfg.first_kernel,
        features=model_cfg.features,
        num_resblocks=model_cfg.num_resblocks,
        num_scales=model_cfg.num_scales,
        kernel_size=model_cfg.kernel_size,
        resblock_post_relu=bool(model_cfg.resblock_post_relu),
        upsample=model_cfg.upsample,
        residual=model_cfg.residual,
        remat=bool(model_cfg.remat),
        parsing_features=tuple(model_cfg.parsing_features),
        parsing_use_bn=model_cfg.parsing_use_bn,
        bn_axis_name=bn_axis_name,
        dtype=compute_dtype(model_cfg),
    )


def build_discriminator(model_cfg: ml_collections.ConfigDict) -> Discriminator:
    """``Discriminator`` from ``config.model``."""
    return Discriminator(
        features=tuple(model_cfg.disc_features),
        negative_slope=model_cfg.disc_negative_slope,
        dtype=compute_dtype(model_cfg),
    )
