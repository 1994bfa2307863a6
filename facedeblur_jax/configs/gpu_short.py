"""A short run of the paper's networks on one GPU: 8,000 steps, not the paper's 560k.

The paper's architecture at 128×128, bf16 compute, all phases, but a schedule about
70× shorter than §3.4's with learning rates 5× the paper's (which are tuned for 560k
steps), global batch 32 instead of 16 (a batch of 16 leaves an H100 mostly idle). L_VGG is
off (``loss.vgg_weight = 0``), so no VGG-Face weights are needed. The data is an aligned
face folder (``data.source = "faces"``) that you name, by default CelebA as ``facedeblur
data prepare celeba`` writes it::

    facedeblur data prepare celeba --src CELEBA --out DIR
    facedeblur train --config gpu_short --workdir runs/gpu_short --config.data.root=DIR

Any ``DIR`` with labels.csv, train/ and test/, and parsing labels in ``DIR/labels`` (e.g.
written by ``facedeblur make-labels``) works the same way. A run on one H100 (on the earlier
network layout, cut short in the fine phase) and its ``facedeblur eval`` are in
docs/benchmarks/h100_2026-11-24.md.
"""

from facedeblur_jax.configs import paper

# parsing_clear (P on clear faces first, paper §4.1) was added after the 2026-11-24 run.
STEPS = {"coarse": 3000, "parsing_clear": 1000, "parsing": 1000, "fine": 2500, "joint": 1500}


def get_config():
    config = paper.get_config()
    config.model.compute_dtype = "bfloat16"
    config.loss.vgg_weight = 0.0  # no VGG-Face weights needed
    config.data.source = "faces"
    config.data.num_workers = 8
    for name, steps in STEPS.items():
        config.phases[name].steps = steps
        for net in paper.LEARNING_RATES:
            config.phases[name].lr[net] *= 5
    config.train.global_batch_size = 32
    config.train.log_every = 100
    config.train.checkpoint_every = 1000
    config.train.keep_checkpoints = 2
    return config
