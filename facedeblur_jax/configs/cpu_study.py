"""CPU study: the paper's networks at 64×64 and reduced width, all five phases, on 2 cores.

The paper's topology — 18 convolutions per deblurring scale (6 ResBlocks, 11×11 first
layer, 4×4 transposed upsampling), the official 6-stage parsing net, the prior fed at full
resolution — at half the paper's width (32 features, P 32…128) and 64×64 faces, with a
schedule about 400× shorter than §3.4's and learning rates raised to match. Sized for
about an hour on a 2-core CPU; the numbers and the ablations it supports are in
docs/results/cpu_study.md. The data is an aligned face folder with identity-disjoint
splits and parsing labels, e.g. CelebA as ``facedeblur data prepare celeba`` writes it::

    facedeblur train --config cpu_study --workdir runs/cpu_study --config.data.root=DIR

Like every run it checkpoints and resumes (run the same command again after a crash).
The study itself chains three workdirs so that Tables 4 and 5 share one G_c and P; the
exact commands are in docs/results/cpu_study.md.
"""

from facedeblur_jax.configs import paper

STEPS = {"coarse": 1000, "parsing_clear": 400, "parsing": 200, "fine": 500, "joint": 200}


def get_config():
    config = paper.get_config()
    config.image_size = 64
    config.model.features = 32  # paper: 64
    config.model.parsing_features = (32, 64, 128, 128, 128, 128)  # paper: 64…256; 64 px -> 2×2
    config.model.disc_features = (32, 64, 128, 256, 256)  # 5 strided convs at 64 px
    # Kernels scaled with the image: 13…27 px at 128 px are 7…13 px at 64 px.
    config.degrade.kernel_sizes = (7, 9, 11, 13)
    config.degrade.kernel_canvas = 13
    config.data.source = "faces"  # data.root names the folder (required)
    config.data.num_workers = 0
    config.data.read_threads = 2
    config.data.host_buffer = 4
    config.loss.vgg_weight = 0.0  # no VGG-Face weights needed
    config.loss.structural_min_area = 4.0  # the paper config's 16 px at 128 px, at 64 px
    for name, steps in STEPS.items():
        config.phases[name].steps = steps
        # The demo's rates for nets trained from scratch; fine-tuning (P on G_c's outputs,
        # the joint phase) 5× lower.
        tune = name in ("parsing", "joint")
        config.phases[name].lr.coarse = 2e-4 if tune else 1e-3
        config.phases[name].lr.fine = 2e-4 if tune else 1e-3
        config.phases[name].lr.parsing = 2e-4 if tune else 1e-3
        config.phases[name].lr.disc = 1e-4
    config.train.global_batch_size = 8
    config.train.log_every = 50
    config.train.checkpoint_every = 100  # every phase end falls on a checkpoint
    config.train.keep_checkpoints = 10
    config.train.parsing_eval_faces = 64
    return config
