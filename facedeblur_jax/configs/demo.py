"""Demo config: all five phases on the bundled sample faces in a few minutes on a CPU.

Smaller nets at 64×64 and a short schedule with larger learning rates than the paper's
(which are tuned for 560k steps): a demo of the whole recipe, not a reproduction.
"""

from facedeblur_jax.configs import paper


def get_config():
    config = paper.get_config()
    config.image_size = 64
    config.model.features = 24
    config.model.num_resblocks = 2
    config.model.first_kernel = 7
    config.model.parsing_features = (16, 32, 64, 64, 64, 64)  # 64 px -> 2×2
    config.model.disc_features = (16, 32, 64, 64, 64)
    # Kernels scaled with the image: 13…27 px at 128 px are 7…13 px at 64 px.
    config.degrade.kernel_sizes = (7, 9, 11, 13)
    config.degrade.kernel_canvas = 13
    config.data.source = "sample"  # the bundled faces: no download
    config.data.num_workers = 0
    config.data.read_threads = 2
    config.data.host_buffer = 2
    config.loss.vgg_weight = 0.0  # no VGG-Face weights on a fresh machine
    config.loss.structural_min_area = 4.0  # the paper config's 16 px at 128 px, at 64 px
    phases = (("coarse", 240), ("parsing_clear", 80), ("parsing", 80), ("fine", 160), ("joint", 60))
    for name, steps in phases:
        config.phases[name].steps = steps
        config.phases[name].lr.coarse = 1e-3
        config.phases[name].lr.fine = 1e-3
        config.phases[name].lr.parsing = 1e-3
        config.phases[name].lr.disc = 1e-4
    config.train.global_batch_size = 8
    config.train.log_every = 20
    config.train.checkpoint_every = 100
    config.train.keep_checkpoints = 2
    return config
