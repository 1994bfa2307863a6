"""Demo config: minutes on a laptop CPU with the bundled sample faces at 64×64."""

from facedeblur_jax.configs import paper


def get_config():
    config = paper.get_config()
    config.image_size = 64
    config.model.features = 32
    config.model.num_resblocks = 3
    config.model.first_kernel = 7
    config.model.parsing_features = (16, 32, 64, 64)
    config.model.disc_features = (16, 32, 64, 64, 64)
    # Kernels scaled with the image: 13…27 px at 128 px are 7…13 px at 64 px.
    config.degrade.kernel_sizes = (7, 9, 11, 13)
    config.degrade.kernel_canvas = 13
    config.data.source = "sample"  # the bundled faces: no download
    config.data.num_workers = 0
    config.data.read_threads = 2
    config.data.host_buffer = 2
    config.train.global_batch_size = 16
    return config
