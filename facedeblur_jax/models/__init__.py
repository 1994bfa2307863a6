"""Networks of the semantic face deblurring model (Flax Linen, NHWC)."""

from facedeblur_jax.models.deblur_net import MultiScaleDeblurNet
from facedeblur_jax.models.discriminator import Discriminator
from facedeblur_jax.models.face_deblur import DeblurOutputs, FaceDeblurModel
from facedeblur_jax.models.parsing_net import ParsingNet
from facedeblur_jax.models.vgg import VGGFace, load_vgg_face

__all__ = [
    "DeblurOutputs",
    "Discriminator",
    "FaceDeblurModel",
    "MultiScaleDeblurNet",
    "ParsingNet",
    "VGGFace",
    "load_vgg_face",
]
