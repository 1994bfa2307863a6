"""``facedeblur convert-official``: the authors' released CVPR'18 weights as a weights file.

    facedeblur convert-official --src DIR [--pair plain|gan] --out official.npz
    facedeblur convert-official --g net_G_P_S_F.mat --p net_P_P_S_F.mat --out official.npz

DIR is a clone of github.com/joanshen0508/Deep-Semantic-Face-Deblurring (or any folder with
the MAT-files). The output is the project's weights file (``serving/weights_file.py``) of a
``model.kind = "cvpr18"`` model (``models/cvpr18.py``), with a model card naming the source
files and their sha256; ``facedeblur deblur``, ``eval``, ``compare``, ``export`` and the
benchmarks take it as ``--checkpoint``. The mapping: ``models/cvpr18_convert.py``.
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import sys
from collections.abc import Sequence

from facedeblur_jax import commands
from facedeblur_jax.config import apply_overrides, reference_config, validate
from facedeblur_jax.core.digest import sha256_file
from facedeblur_jax.models import cvpr18_convert
from facedeblur_jax.serving import weights_file

REPOSITORY = "https://github.com/joanshen0508/Deep-Semantic-Face-Deblurring"
FILES = {
    "plain": ("net_G_P_S_F.mat", "net_P_P_S_F.mat"),
    "gan": ("net_G_P_S_F_GAN.mat", "net_P_P_S_F_GAN.mat"),
}
# What the release's readme says each pair was trained with. Both of its copies
# (readme.md, readme.txt) list "1. net_G_P_S_F_GAN and net_P_P_S_F_GAN: L1 loss + parsing
# Loss + structure loss + feathure loss" and "2. net_G_P_S_F and net_G_P_S_F: ... +
# adversarial loss"; by the file names the two descriptions appear swapped, and nothing in
# the code settles it. The released scripts load the plain pair.
TRAINED_WITH = {
    "plain": (
        "the readme lists this pair with the adversarial loss added (L1 + parsing + "
        "structure + feature + adversarial); its two descriptions appear swapped by the file "
        "names, so it may be the pair without the adversarial loss. The released test "
        "scripts (main_deblur18.m) load this pair."
    ),
    "gan": (
        "the readme lists this pair as L1 + parsing + structure + feature loss (no "
        "adversarial loss), although its name says GAN; the descriptions appear swapped. "
        "No released script loads this pair."
    ),
    "unknown": "the files are not named as in the release; which pair they are is not known.",
}


def build_parser() -> argparse.ArgumentParser:
    p = commands.parser(
        "convert-official",
        "Converts the authors' released CVPR'18 MatConvNet weights (net_G_*.mat + "
        "net_P_*.mat of " + REPOSITORY + ") to a weights file that deblur, eval, compare "
        "and export take as --checkpoint. Every shape is checked against the released "
        "graph (DL_deblur_net18.m). MATLAB v5/v7 MAT-files are read; a v7.3 (HDF5) file is "
        "refused with how to re-save it.",
        epilog="Example:\n  git clone " + REPOSITORY + " official\n"
        "  facedeblur convert-official --src official --out weights/official.npz\n"
        "  facedeblur deblur photo.jpg --checkpoint weights/official.npz --out deblurred",
    )
    p.add_argument("--src", default=None, help="folder holding the released MAT-files")
    p.add_argument(
        "--pair",
        choices=tuple(FILES),
        default="plain",
        help="which released pair to take from --src: plain (net_G_P_S_F.mat, the one the "
        "released scripts load) or gan (net_G_P_S_F_GAN.mat)",
    )
    p.add_argument("--g", default=None, metavar="FILE.mat", help="net_G file (instead of --src)")
    p.add_argument("--p", default=None, metavar="FILE.mat", help="net_P file (instead of --src)")
    p.add_argument("--out", required=True, help="weights file to write (.npz)")
    p.add_argument(
        "--bn",
        choices=cvpr18_convert.BN_MODES,
        default="per_image",
        help="P's normalisation: per_image (each image's own statistics, as the released "
        "script runs) or moments (the stored bm = [mean, sigma] as running averages)",
    )
    p.add_argument("--name", default=None, help="the model's name (default: from --out)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return p


def _sources(args) -> dict[str, pathlib.Path]:
    if args.src is not None and (args.g or args.p):
        raise ValueError("give --src or --g and --p, not both")
    if args.src is not None:
        src = pathlib.Path(args.src).expanduser()
        if not src.is_dir():
            raise FileNotFoundError(f"--src folder not found: {src}")
        g_name, p_name = FILES[args.pair]
        return {"net_G": src / g_name, "net_P": src / p_name}
    if not (args.g and args.p):
        raise ValueError("give --src DIR (a clone of the release) or both --g and --p")
    return {"net_G": pathlib.Path(args.g).expanduser(), "net_P": pathlib.Path(args.p).expanduser()}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    out = pathlib.Path(args.out).expanduser().resolve()
    if out.suffix != ".npz":
        raise ValueError(f"--out must end in .npz; got {out}")
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    name = weights_file.check_name(out.stem if args.name is None else args.name)
    sources = _sources(args)
    structs = {var: cvpr18_convert.read_struct(path, var) for var, path in sources.items()}
    overrides, variables = cvpr18_convert.convert(structs["net_G"], structs["net_P"], bn=args.bn)
    config = validate(apply_overrides(reference_config(), overrides))
    pair = cvpr18_convert.pair_of(sources)
    card = {
        "data": "the authors' released CVPR'18 weights (Shen et al. 2018)",
        "source": REPOSITORY,
        "files": {
            var: {"name": path.name, "sha256": sha256_file(path)} for var, path in sources.items()
        },
        "pair": pair,
        "trained_with": TRAINED_WITH[pair],
        "graph": "DL_deblur_net18.m: P on the blurred 128-px face -> G (two scales, 5 ResBlocks)",
        "normalisation": args.bn,
        "input": "faces aligned as the authors' data, 128×128; 8-bit input divided by 256",
        "converted": datetime.date.today().isoformat(),
        "model": {k.removeprefix("model."): v for k, v in overrides.items() if "model." in k},
    }
    written = weights_file.save_weights(
        config,
        variables,
        out,
        step=0,
        meta={"phase": "released"},
        name=name,
        card=card,
        overwrite=args.overwrite,
    )
    widths = card["model"]
    print(
        f"wrote {written}: the released CVPR'18 model ({pair} pair; P widths "
        f"{widths['parsing_features']}, {widths['num_classes']} classes; G {widths['features']} "
        f"features), normalisation {args.bn}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
