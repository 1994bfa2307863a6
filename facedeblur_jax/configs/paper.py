"""The paper's recipe (Shen et al., IJCV 2020, §3.2–3.6): 128×128 faces, full-size nets.

Every config key the code understands is defined here; other configs start from this one.
"""

import ml_collections

KERNEL_SIZES = (13, 15, 17, 19, 21, 23, 25, 27)


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.image_size = 128  # paper: aligned 128×128 faces

    # --- networks (§3.2, §3.5; docs/design.md §2) -----------------------------------------
    config.model = ml_collections.ConfigDict()
    # Which model: "ijcv" (the paper's G_c → P → G_f cascade, trained here) or "cvpr18" (the
    # authors' released CVPR'18 graph, P → G, models/cvpr18.py: for their released weights,
    # facedeblur convert-official; not trained here).
    config.model.kind = "ijcv"
    # The network layout this code builds (models/factory.py LAYOUT_VERSION); checkpoints
    # of another layout are refused by name. Not a knob.
    config.model.layout_version = 2
    config.model.num_classes = 11  # Helen label set, docs/design.md §2
    config.model.num_fine_stages = 1  # N of Table 8
    config.model.share_fine_weights = False
    config.model.first_kernel = 11  # Table 7
    config.model.features = 64
    config.model.num_resblocks = 6  # §3.5 (the released official file has 5)
    config.model.num_scales = 2
    config.model.kernel_size = 5
    # ReLU after each ResBlock's add (the skip carries the sum before it), as the official
    # code; False: no ReLU after the add (Nah et al. 2017). models/deblur_net.py.
    config.model.resblock_post_relu = True
    config.model.upsample = "transposed"  # 4×4 transposed conv, §3.5
    config.model.residual = True
    # How x (and y_c) reach the coarser scales: "box" (2×2 average) or "matlab_bicubic"
    # (MATLAB's imresize, as the released code; models/layers.py).
    config.model.downsample = "box"
    # Factor on the input before the nets (the released weights: 255/256, models/cvpr18.py).
    config.model.input_scale = 1.0
    # Rematerialise the deblurring nets' ResBlocks in the backward pass (same model and
    # checkpoints; less activation memory for ~1/3 more conv work). A speed/memory knob.
    config.model.remat = False
    # P's 6 encoder widths (unpublished; models/parsing_net.py says why these).
    config.model.parsing_features = (64, 128, 256, 256, 256, 256)
    config.model.parsing_use_bn = True
    # P's normalisation: "batch" (BatchNorm) or "per_image" (each image's own statistics,
    # the released code's vl_nnbnorm; models/parsing_net.py).
    config.model.parsing_norm = "batch"
    # P's decoder widths where they do not mirror the encoder (the released weights):
    # the transposed convs' (one per decoder stage, () = the encoder's) and the last stage's
    # (0 = parsing_features[0]).
    config.model.parsing_up_features = ()
    config.model.parsing_last_features = 0
    config.model.disc_features = (64, 128, 256, 512, 512, 512)  # 6 strided convs
    config.model.disc_negative_slope = 0.2
    config.model.compute_dtype = "float32"  # or "bfloat16"; params stay float32

    # --- degradation on the accelerator (§3.6, §4.1 augmentation; docs/design.md §3) --------
    config.degrade = ml_collections.ConfigDict()
    config.degrade.kernel_sizes = KERNEL_SIZES
    config.degrade.kernel_canvas = 27
    config.degrade.anxiety = 0.005  # authors' demo value; None = B&F's 0.1·U
    config.degrade.trajectory_steps = 2000
    config.degrade.trajectory_length = 60.0
    # Steps per compiled loop iteration of the 2,000-step walk (same kernels up to rounding).
    # Scan only (measurements: docs/benchmarks/config_choices.md).
    config.degrade.trajectory_unroll = 1
    # How the walk runs: "auto" (the whole walk in one Triton kernel when compiling for
    # CUDA, facedeblur_jax/degrade/walk_pallas.py; the scan elsewhere) or "scan" (lax.scan
    # everywhere); why "auto": docs/benchmarks/config_choices.md. Checkpoints that predate
    # this key ran the scan and keep it (core/compat.py, LEGACY_DEFAULTS).
    config.degrade.trajectory_impl = "auto"
    # Where the fitted stroke sits in its k×k support: "centroid" | "bbox" | "random"
    # (facedeblur_jax/degrade/kernels.py). "bbox": the paper's released 27×27 test kernel
    # has its bounding box within 1 px of the canvas centre but its centroid 3.1 px off.
    # Checkpoints that predate this key trained with "centroid" (core/compat.py).
    config.degrade.center = "bbox"
    # 0: a fresh kernel for every sample of every step (docs/design.md §3). N > 0: sample N
    # kernels on the device once per run and draw from them (the paper's Table 1 trains on
    # 20,000 fixed kernels); takes the sequential walk out of the step
    # (facedeblur_jax/degrade/kernel_pool.py).
    config.degrade.kernel_pool_size = 0
    config.degrade.noise_sigma = 0.01
    # "grouped" | "vmap" | "fft" (same blur up to float rounding); why "fft":
    # docs/benchmarks/config_choices.md.
    config.degrade.blur_method = "fft"
    config.degrade.augment = True
    config.degrade.scale_range = (0.9, 1.1)
    config.degrade.max_shift = 12 / 128  # fraction of the image size (12 px at 128 px)
    config.degrade.max_rotation_deg = 30.0
    config.degrade.fill_mode = "nearest"  # border handling of the affine warp

    # --- data (docs/design.md §7; facedeblur_jax/data) ------------------------------------
    config.data = ml_collections.ConfigDict()
    # "sample" | "faces" | "folder" | "helen" | "celebamask" | "tfds" (data/sources.py).
    # "faces": a folder of aligned faces with labels.csv (split,file,identity), train/ and
    # test/ (the bundled sample's layout); "sample": the bundled faces themselves.
    # The paper's data is CelebA (§3.6): the default is the folder that `facedeblur data
    # prepare celeba --src CELEBA --out DIR` writes (128-px faces, pseudo parsing labels,
    # identity-disjoint train/val/test), read by the "faces" source.
    config.data.source = "faces"
    # The dataset folder; required by every source but "sample" (there is no default
    # location): --config.data.root=DIR, e.g. the prepared CelebA folder. For "tfds" the
    # TFDS data_dir.
    config.data.root = ""
    # Parsing labels mirroring the image tree (<split>/<stem>.png); "" = the source's
    # default (<root>/labels when it exists). Unused by helen/celebamask (labels built in).
    config.data.label_root = ""
    config.data.tfds_name = "face_folder"  # dataset name under `root` when source="tfds"
    config.data.train_split = "train"
    config.data.verify = "header"  # scan at construction: "header" (cheap) | "decode" (full)
    config.data.resize = "crop"  # "crop": short side -> image_size, centre crop | "stretch"
    config.data.num_workers = 8  # grain worker processes; 0 = decode in the main process
    config.data.read_threads = 4  # decoding threads per process
    config.data.host_buffer = 8  # decoded batches kept ready per process
    config.data.prefetch = 2  # batches already on the accelerator ahead of the step

    # --- losses (§3.3; docs/design.md §4) ----------------------------------------------------
    # The paper's λ's (eq. 11). Each phase switches losses on with a multiplier (1 = on);
    # its effective weight is multiplier × λ. ``vgg_weight = 0`` turns L_VGG off everywhere
    # (then no VGG-Face weight file is needed).
    config.loss = ml_collections.ConfigDict()
    config.loss.content_weight = 1.0
    config.loss.structural_weight = 50.0  # λ_s
    config.loss.parsing_weight = 1e-4  # λ_p
    config.loss.vgg_weight = 1e-5  # λ_VGG
    config.loss.adv_weight = 5e-5  # λ_adv
    config.loss.structural_c = 1.0  # c of eq. 7
    config.loss.structural_adaptive = True  # w_k = c / A_k (False: equal weights, Table 4)
    # Floor of A_k in w_k = c / max(A_k, floor), pixels at full resolution (not in the paper:
    # a part of a few pixels must not dominate L_s). 16 px at 128 px lies below the 1st
    # percentile of every key part's area in the bundled sample faces' labels, augmented as in
    # training (eyes 23–24 px, upper lip 22, inner mouth 23; smallest seen 10), so it changes
    # the weight of 0.5 % of upper lips and of no other real part, and tames specks. Scale it
    # by (image_size / 128)² for other sizes. Checkpoints that predate it trained with 0.
    config.loss.structural_min_area = 16.0
    config.loss.vgg_weights_path = ""  # converted VGG-Face weights (facedeblur convert-vgg)
    config.loss.vgg_layers = ("pool2", "pool5")
    # Optional identity loss (not in the paper; losses.identity_loss, docs/design.md §4):
    # cosine distance of MobileFaceNet embeddings of y and y_GT, a substitute where
    # VGG-Face weights are unavailable. 0 = off (MobileFaceNet is not loaded); > 0 needs
    # identity_weights_path (facedeblur convert-mobilefacenet). Listed by the fine and
    # joint phases; it never replaces L_VGG.
    config.loss.identity_weight = 0.0
    config.loss.identity_weights_path = ""

    # --- optimiser (§3.5) ---------------------------------------------------------------
    config.optim = ml_collections.ConfigDict()
    config.optim.b1 = 0.9
    config.optim.b2 = 0.999
    config.optim.eps = 1e-8
    config.optim.grad_clip_norm = 0.0  # per-net global-norm clipping; 0 = off (paper: none)

    # --- the staged schedule (§3.4; docs/design.md §5) as data -------------------------------
    config.phase_order = ("coarse", "parsing_clear", "parsing", "fine", "joint")
    config.phases = ml_collections.ConfigDict()
    # Parsing alone trains on λ_p·L_p: with Adam the scale of a lone loss does not matter.
    config.phases.coarse = phase(200_000, ("coarse",), "content_coarse")
    # §4.1: a parser is first trained on clear faces with labels; §3.4 step 2 then fine-tunes
    # P on G_c's outputs at §3.5's 5e-6. The paper gives no schedule for the clear-image
    # training: its length here is the only P length the paper gives (60k, step 2), and its
    # learning rate 1e-4 — P starts from random weights here, and 5e-6 is a fine-tuning rate
    # (20× below it; the deblurring nets, trained from scratch without BatchNorm, use 4e-5).
    # Demo-scale check (configs/demo.py nets, P alone on clear sample faces, batch 8): mean
    # F-score after 80 / 400 steps 0.010 / 0.012 at 5e-6, 0.015 / 0.097 at 1e-4, 0.078 /
    # 0.283 at 1e-3 — from scratch, 5e-6 barely moves P.
    config.phases.parsing_clear = phase(60_000, ("parsing",), "parsing", parsing_input="clear")
    config.phases.parsing_clear.lr.parsing = 1e-4
    config.phases.parsing = phase(60_000, ("parsing",), "parsing")
    config.phases.fine = phase(
        200_000, ("fine", "disc"), "content_fine", "structural", "vgg", "adv", "identity"
    )
    config.phases.joint = phase(
        100_000,
        ("coarse", "parsing", "fine", "disc"),
        "content_coarse",
        "content_fine",
        "structural",
        "parsing",
        "vgg",
        "adv",
        "identity",
    )

    # --- the training loop (docs/design.md §6) -----------------------------------------------
    config.train = ml_collections.ConfigDict()
    config.train.global_batch_size = 16  # §3.5; sharded over the mesh axis "data"
    config.train.log_every = 100  # steps between logged metrics (TensorBoard + bar)
    config.train.checkpoint_every = 5_000  # steps between checkpoints (and at the end)
    config.train.keep_checkpoints = 3  # keep the last N checkpoints
    # Multi-host: one process per host, all started with the same config and workdir (a
    # folder every host sees). With distributed=True each process first joins the others
    # through jax.distributed.initialize (facedeblur_jax/training/distributed.py). The three keys
    # below: "" / -1 = from $JAX_COORDINATOR_ADDRESS, $JAX_NUM_PROCESSES, $JAX_PROCESS_ID,
    # else from the cluster (SLURM, Open MPI, Cloud TPU, Kubernetes) as JAX detects it.
    config.train.distributed = False
    config.train.coordinator_address = ""  # "host:port" of process 0
    config.train.num_processes = -1
    config.train.process_id = -1  # 0 .. num_processes - 1; 0 runs the coordinator
    # Deadlines of a multi-host run (seconds; distributed.py). A slow peer (a busy host, a
    # stopped process, slow storage) is waited for up to these, then named in one line.
    # - how long a process waits for the coordinator, the other processes, their configs and
    #   start-up checks, and for all to reach the first collective, before it stops with an
    #   error naming what is missing (jax.distributed.initialize's initialization_timeout is
    #   this + 30 s: the error line comes first);
    config.train.distributed_timeout_s = 300
    # - how long a process may go unheard (stopped, swapped out) before JAX takes it for
    #   dead and ends every process (jax.distributed.initialize's heartbeat_timeout_seconds;
    #   JAX's default is 100). It also bounds how long a crashed peer goes unnoticed;
    config.train.distributed_heartbeat_timeout_s = 300
    # - one asynchronous checkpoint save: the write and Orbax's barriers between the
    #   processes (Orbax's AsyncOptions.timeout_secs; also with one process);
    config.train.distributed_checkpoint_timeout_s = 1200
    # - how long a process that has finished (its last checkpoint saved) waits for the others
    #   before it stops with an error naming them; also the deadline of JAX's shutdown
    #   barrier (jax.distributed.initialize's shutdown_timeout_seconds; JAX's default is 300),
    #   which the processes enter together after that wait. A process that fails mid-run
    #   waits at that barrier for its peers up to this long too.
    config.train.distributed_shutdown_timeout_s = 1200
    # A workdir whose latest checkpoint initialises every net of a *fresh* run that it
    # also has with the same shapes (e.g. G_c and P for a fine-phase ablation); "" = off.
    config.train.init_from = ""
    config.train.init_nets = ("coarse", "parsing", "fine")  # which nets init_from may give
    # Persistent XLA compilation cache directory ("" = off): a restarted or resumed run
    # reuses the compiled train steps instead of compiling them again.
    config.train.compilation_cache_dir = ""
    # At the first step of every phase, log the gradient norm each active loss term sends into
    # the trained nets (one metrics line per term; one extra compile per phase).
    config.train.log_grad_norms = True
    # After every phase that trains P: P's per-class F-scores on this many labelled faces of
    # the data source's test split, clear and G_c-deblurred (0 = off).
    config.train.parsing_eval_faces = 64
    # Steps between evaluations on held-out faces during training (config.evals below):
    # 0 = none. Each eval costs a few forward passes of the generator over its images.
    config.train.eval_every = 0

    # --- evaluation during training (docs/design.md §8; facedeblur_jax/evaluators) ----
    # One entry per evaluator, run on process 0 every `every` steps (0: every
    # train.eval_every steps; -1: never) and at the last step; scalars go to TensorBoard and
    # metrics.jsonl as eval/<name>/<metric>.
    config.evals = ml_collections.ConfigDict()
    config.evals.psnr_ssim = eval_entry()  # PSNR/SSIM of blurred, G_c, full (Tables 9/10)
    config.evals.parsing = eval_entry()  # P's mean F-score on clear/blurred/G_c (Table 3)
    return config


def eval_entry() -> ml_collections.ConfigDict:
    """One ``config.evals`` entry: which faces, which kernels, when.

    ``split`` of the training data source, ``max_faces`` of its faces spread evenly over it
    (0 = all); ``kernels``: a bank file from `facedeblur make-kernels`, or "" for
    ``kernels_per_size`` bank kernels per ``degrade.kernel_sizes`` drawn from the bank's
    fixed seed; ``noise_sigma`` after the blur; ``batch_size`` images per jitted call.
    """
    return ml_collections.ConfigDict(
        {
            "every": 0,
            "split": "test",
            "max_faces": 16,
            "kernels": "",
            "kernels_per_size": 2,
            "noise_sigma": 0.01,
            "batch_size": 32,
        }
    )


LOSSES = ("content_coarse", "content_fine", "structural", "parsing", "vgg", "adv", "identity")
LEARNING_RATES = {"coarse": 4e-5, "parsing": 5e-6, "fine": 4e-5, "disc": 4e-5}  # §3.5


def phase(
    steps: int, train: tuple[str, ...], *active: str, parsing_input: str = "coarse"
) -> ml_collections.ConfigDict:
    """One phase record: length, trained nets, loss multipliers (1 = on, 0 = off; the
    weight is multiplier × the λ in ``config.loss``), learning rates per net, and what P
    parses: ``"coarse"`` (G_c's output, the model) or ``"clear"`` (the sharp augmented
    face, no blur and no G_c: only for a phase that trains P on L_p alone).

    Nets: "coarse" (G_c), "parsing" (P), "fine" (G_f, all stages), "disc" (D). Losses:
    content_coarse / content_fine (L_c on G_c / G_f outputs, all scales), structural (L_s on
    every G_f output scale), parsing (L_p), vgg (L_VGG), adv (L_adv) and the optional
    identity (MobileFaceNet cosine distance) on the final output.
    """
    unknown = set(active) - set(LOSSES)
    if unknown:
        raise ValueError(f"unknown loss name(s) {sorted(unknown)}; known: {LOSSES}")
    return ml_collections.ConfigDict(
        {
            "steps": steps,
            "train": train,
            "loss": {name: float(name in active) for name in LOSSES},
            "lr": dict(LEARNING_RATES),
            "parsing_input": parsing_input,
            # What G_f is fed: "predicted" (the model), "zeros" or "ground_truth" (the
            # Table 2 ablations; facedeblur_jax/models/priors.py TRAINING).
            "prior": "predicted",
        }
    )
