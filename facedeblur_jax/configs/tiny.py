"""Tiny config for unit tests: 32×32 images, few channels, short kernels. Seconds on CPU."""

from facedeblur_jax.configs import paper


def get_config():
    config = paper.get_config()
    config.image_size = 32
    config.model.features = 8
    config.model.num_resblocks = 1
    config.model.first_kernel = 5
    config.model.kernel_size = 3
    config.model.parsing_features = (8, 16, 16, 16, 16, 16)  # 32 px -> 1×1
    config.model.disc_features = (8, 16, 16)
    config.degrade.kernel_sizes = (3, 5, 7)
    config.degrade.kernel_canvas = 7
    config.degrade.trajectory_steps = 200
    config.data.source = "sample"  # the bundled faces: no download
    config.data.num_workers = 0
    config.data.read_threads = 2
    config.data.host_buffer = 2
    # Two steps per phase; no VGG-Face weights exist on a test machine.
    for name in config.phase_order:
        config.phases[name].steps = 2
    config.loss.vgg_weight = 0.0
    config.loss.structural_min_area = 1.0  # 16 px at 128 px, at 32 px
    config.train.global_batch_size = 8
    config.train.log_every = 1
    config.train.checkpoint_every = 2
    config.train.keep_checkpoints = 2
    config.train.log_grad_norms = False  # one more compile per phase; tests turn it on
    config.train.parsing_eval_faces = 4
    return config
