"""``facedeblur deblur``: deblur the faces in photos (or aligned crops with ``--no-align``).

    facedeblur deblur [--checkpoint DIR|FILE.npz] INPUT... --out DIR [options]

Detection, alignment, paste-back and the outputs: :mod:`facedeblur_jax.serving.photos`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from facedeblur_jax import commands
from facedeblur_jax.serving import photos


def build_parser() -> argparse.ArgumentParser:
    p = commands.parser(
        "deblur",
        "Finds the faces (dlib), aligns each to the model's input, deblurs it and pastes it "
        "back with a feathered edge; outputs OUT/<stem>.png at the input's size.",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="workdir, checkpoint folder or weights file (.npz from 'facedeblur "
        "export-weights'); default: the model bundled with the package, named when it is used",
    )
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--batch-size", type=int, default=32, help="faces per jitted call")
    p.add_argument(
        "--no-align",
        action="store_true",
        help="inputs are aligned face crops: resize each whole image to the model's input",
    )
    p.add_argument(
        "--upsample",
        type=int,
        default=None,
        help="face detector's upsample_num_times (default: 0 and 1 for images up to 1000 px, "
        "0 above); 1 or 2 finds smaller faces, slower",
    )
    p.add_argument(
        "--max-downscale",
        type=float,
        default=photos.MAX_DOWNSCALE,
        metavar="F",
        help="a face whose aligned crop is shrunk more than F times to the model's input is "
        "large: pasted back it would be softer than the photo, so a warning names it "
        "(default 2; 'inf': no face is large)",
    )
    p.add_argument(
        "--large-faces",
        choices=photos.LARGE_FACE_POLICIES,
        default=photos.LARGE_FACES,
        help="what becomes of a large face: 'crop' (default) leaves it as it was in the photo "
        "and writes its deblurred crop as OUT/<stem>_face<k>.png; 'keep' leaves it and "
        "writes nothing for it; 'paste' pastes it back anyway",
    )
    p.add_argument(
        "--resample",
        choices=photos.RESAMPLE_MODES,
        default=photos.RESAMPLE,
        help="how a face larger than the model's input comes back (the model sees it "
        "shrunk): 'output' enlarges the model's output to the face's size (it has only the "
        "model's resolution); 'residual' adds the model's correction, its output minus its "
        "input, enlarged, to the face as it was, keeping the photo's finer detail and its "
        f"noise (default {photos.RESAMPLE!r}: on blurred, noisy 128-px faces with the bundled "
        "64-px model 'residual' measured 0.07 dB and 0.023 SSIM worse, "
        "docs/benchmarks/photo_resolution.md); faces not larger than the input come back "
        "the same either way",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = commands.parse_without_overrides(
        build_parser(),
        sys.argv[1:] if argv is None else argv,
        "deblur takes its config from the checkpoint",
    )
    return photos.run(
        args.checkpoint,
        args.inputs,
        args.out,
        overwrite=args.overwrite,
        batch_size=args.batch_size,
        align=not args.no_align,
        upsample=args.upsample,
        max_downscale=args.max_downscale,
        large_faces=args.large_faces,
        resample=args.resample,
    )


if __name__ == "__main__":
    sys.exit(main())
