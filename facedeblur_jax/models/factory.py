"""Builds the networks from a config's ``model`` section.

Each sub-network is built from the keys that concern it alone (:func:`deblur_net_cls`,
:func:`parsing_net_cls`) and passed to the model as a constructor; ``model.kind`` chooses
the model (``"ijcv"``: :class:`FaceDeblurModel`, ``"cvpr18"``: :class:`Cvpr18Model`).
"""

from __future__ import annotations

import functools
from typing import Any

import jax.numpy as jnp
import ml_collections

from facedeblur_jax.models.cvpr18 import Cvpr18Model
from facedeblur_jax.models.deblur_net import MultiScaleDeblurNet
from facedeblur_jax.models.discriminator import Discriminator
from facedeblur_jax.models.face_deblur import FaceDeblurModel
from facedeblur_jax.models.parsing_net import ParsingNet

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
KINDS = ("ijcv", "cvpr18")

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


def deblur_net_cls(model_cfg: ml_collections.ConfigDict) -> Any:
    """Constructor of G_c / G_f (and the CVPR'18 G): ``MultiScaleDeblurNet`` with the
    config's deblurring-net keys."""
    return functools.partial(
        MultiScaleDeblurNet,
        first_kernel=model_cfg.first_kernel,
        features=model_cfg.features,
        num_resblocks=model_cfg.num_resblocks,
        num_scales=model_cfg.num_scales,
        kernel_size=model_cfg.kernel_size,
        resblock_post_relu=bool(model_cfg.resblock_post_relu),
        upsample=model_cfg.upsample,
        residual=model_cfg.residual,
        downsample_method=model_cfg.downsample,
        remat=bool(model_cfg.remat),
        dtype=compute_dtype(model_cfg),
    )


def parsing_net_cls(model_cfg: ml_collections.ConfigDict, bn_axis_name: str | None = None) -> Any:
    """Constructor of P: ``ParsingNet`` with the config's parsing keys (``bn_axis_name``:
    the mesh axis BatchNorm averages over in training)."""
    return functools.partial(
        ParsingNet,
        num_classes=model_cfg.num_classes,
        features=tuple(model_cfg.parsing_features),
        use_bn=model_cfg.parsing_use_bn,
        norm=model_cfg.parsing_norm,
        up_features=tuple(model_cfg.parsing_up_features),
        last_features=int(model_cfg.parsing_last_features),
        bn_axis_name=bn_axis_name,
        dtype=compute_dtype(model_cfg),
    )


def build_model(
    model_cfg: ml_collections.ConfigDict, bn_axis_name: str | None = None
) -> FaceDeblurModel | Cvpr18Model:
    """The model ``config.model`` describes (``model.kind``).

    ``bn_axis_name`` is the mesh axis over which P's BatchNorm averages batch statistics
    in training (``"data"`` inside the sharded step, ``None`` elsewhere).
    """
    if model_cfg.layout_version != LAYOUT_VERSION:
        raise ValueError(
            f"model.layout_version = {model_cfg.layout_version!r}: this version builds only "
            f"layout {LAYOUT_VERSION}"
        )
    kind = model_cfg.get("kind", "ijcv")
    deblur, parsing = deblur_net_cls(model_cfg), parsing_net_cls(model_cfg, bn_axis_name)
    if kind == "cvpr18":
        return Cvpr18Model(
            parsing_cls=parsing,
            generator_cls=deblur,
            num_classes=model_cfg.num_classes,
            input_scale=float(model_cfg.input_scale),
        )
    if kind != "ijcv":
        raise ValueError(f"model.kind must be one of {KINDS}; got {kind!r}")
    if float(model_cfg.input_scale) != 1.0:
        raise ValueError("model.input_scale is for model.kind = 'cvpr18' only; set it to 1.0")
    return FaceDeblurModel(
        coarse_cls=deblur,
        parsing_cls=parsing,
        fine_cls=deblur,
        num_classes=model_cfg.num_classes,
        num_fine_stages=model_cfg.num_fine_stages,
        share_fine_weights=model_cfg.share_fine_weights,
    )


def build_discriminator(model_cfg: ml_collections.ConfigDict) -> Discriminator:
    """``Discriminator`` from ``config.model``."""
    return Discriminator(
        features=tuple(model_cfg.disc_features),
        negative_slope=model_cfg.disc_negative_slope,
        dtype=compute_dtype(model_cfg),
    )
