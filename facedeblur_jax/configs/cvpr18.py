"""The authors' released CVPR'18 graph (``model.kind = "cvpr18"``, ``models/cvpr18.py``).

The settings ``facedeblur convert-official`` writes into a converted weights file
(``overrides`` in ``models/cvpr18_convert.py``): P on the blurred input → one two-scale G,
128×128 faces, 5 ResBlocks per scale, no residual to the input, the half-scale image by
MATLAB's bicubic ``imresize``, the input scaled by 255/256, P normalised per image.

The widths are stand-ins: the released widths are unpublished and a converted weights
file carries the real ones (G's features, P's encoder / decoder widths, the class count,
read from the MAT-files). Here they are the paper config's (G 64 features, P (64, 128,
256, 256, 256, 256) mirrored by its decoder, 11 classes), for timing
(``python -m facedeblur_jax.bench.throughput --config cvpr18``), parameter counts and
tests. Not trained here (``facedeblur train`` refuses this kind).
"""

from facedeblur_jax.configs import paper


def get_config():
    config = paper.get_config()
    config.image_size = 128
    model = config.model
    model.kind = "cvpr18"
    model.num_resblocks = 5  # the released file: 16 convolutions per scale
    model.num_scales = 2
    model.first_kernel = 11
    model.kernel_size = 5
    model.resblock_post_relu = True
    model.upsample = "transposed"
    model.residual = False
    model.downsample = "matlab_bicubic"
    model.input_scale = 255 / 256  # the released script divides 8-bit images by 256
    model.parsing_use_bn = True
    model.parsing_norm = "per_image"
    # Stand-ins (see above): the paper config's widths, the decoder mirroring the encoder.
    model.num_classes = 11
    model.features = 64
    model.parsing_features = (64, 128, 256, 256, 256, 256)
    model.parsing_up_features = ()
    model.parsing_last_features = 0
    return config
