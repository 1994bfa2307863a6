"""The paper's recipe (Shen et al., IJCV 2020, §3.2–3.6): 128×128 faces, full-size nets.

Every config key the code understands is defined here; other configs start from this one.
"""

import ml_collections

KERNEL_SIZES = (13, 15, 17, 19, 21, 23, 25, 27)


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.image_size = 128  # paper: aligned 128×128 faces

    # --- networks (§3.2, §3.5; DESIGN.md §2) -----------------------------------------
    config.model = ml_collections.ConfigDict()
    config.model.num_classes = 11  # Helen label set, DESIGN.md §2
    config.model.num_fine_stages = 1  # N of Table 8
    config.model.share_fine_weights = False
    config.model.first_kernel = 11  # Table 7
    config.model.features = 64
    config.model.num_resblocks = 6
    config.model.num_scales = 2
    config.model.kernel_size = 5
    config.model.upsample = "transposed"  # 4×4 transposed conv, §3.5
    config.model.residual = True
    config.model.parsing_features = (64, 128, 256, 320, 320, 320)
    config.model.parsing_use_bn = True
    config.model.disc_features = (64, 128, 256, 512, 512, 512)  # 6 strided convs
    config.model.disc_negative_slope = 0.2
    config.model.compute_dtype = "float32"  # or "bfloat16"; params stay float32

    # --- degradation on the accelerator (§3.6, §4.1 augmentation; DESIGN.md §3) --------
    config.degrade = ml_collections.ConfigDict()
    config.degrade.kernel_sizes = KERNEL_SIZES
    config.degrade.kernel_canvas = 27
    config.degrade.anxiety = 0.005  # authors' demo value; None = B&F's 0.1·U
    config.degrade.trajectory_steps = 2000
    config.degrade.trajectory_length = 60.0
    config.degrade.noise_sigma = 0.01
    config.degrade.blur_method = "grouped"  # "grouped" | "vmap" | "fft"
    config.degrade.augment = True
    config.degrade.scale_range = (0.9, 1.1)
    config.degrade.max_shift = 12 / 128  # fraction of the image size (12 px at 128 px)
    config.degrade.max_rotation_deg = 30.0
    config.degrade.fill_mode = "nearest"  # border handling of the affine warp

    # --- data (DESIGN.md §7; facedeblur_jax/data) ------------------------------------
    config.data = ml_collections.ConfigDict()
    # "sample" | "faces" | "folder" | "helen" | "celebamask" | "tfds"
    config.data.source = "faces"
    # Dataset root; "" = the source's default (faces: ../shared/data/faces beside the
    # checkout, sample: the bundled faces). For "tfds" the TFDS data_dir.
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

    # --- training ----------------------------------------------------------------------
    config.train = ml_collections.ConfigDict()
    config.train.global_batch_size = 16  # paper §4.1: batch 16 (all hosts together)
    return config
