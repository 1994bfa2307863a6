"""A short single-GPU run of the paper's networks: minutes on one H100, not the paper's 560k steps.

The paper's architecture at 128×128, bf16 compute, all phases, but a schedule about
70× shorter than §3.4's with learning rates 5× the paper's (which are tuned for 560k
steps), global batch 32 instead of 16 (a batch of 16 leaves an H100 mostly idle). No
VGG-Face weights travel to the GPU machine, so L_VGG is off (``loss.vgg_weight = 0``).
The data is the shared face set (``config.data.root``: the folder holding labels.csv,
train/ and test/) with the dlib pseudo labels of ``tools/make_parsing_labels.py`` in
``<root>/labels``.

Run on 2026-11-24 (one H100, ``tools/gpu_session.sh train eval``, 2,200 of the 2,728
training faces): the call's 400 s limit stopped it at fine step ~1,300 (coarse 3,000 and
parsing 1,000 done, no joint phase); ``facedeblur eval`` of the step-5,000 checkpoint is in
docs/benchmarks/h100_2026-11-24.md. A complete run needs ~13 min on that GPU.
"""

from facedeblur_jax.configs import paper

# parsing_clear (P on clear faces first, paper §4.1) was added after the 2026-11-24 run.
STEPS = {"coarse": 3000, "parsing_clear": 1000, "parsing": 1000, "fine": 2500, "joint": 1500}


def get_config():
    config = paper.get_config()
    config.model.compute_dtype = "bfloat16"
    config.loss.vgg_weight = 0.0  # no VGG-Face weights on the GPU machine
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
