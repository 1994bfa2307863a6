"""``facedeblur convert-vgg``: a public VGG-Face release -> the checkpoint the perceptual
loss reads.

    facedeblur convert-vgg --input vgg_face_dag.pth --out weights/vgg_face.npz

Inputs: Albanie's vgg_face_dag.pth (and other PyTorch state_dict layouts), the MatConvNet
vgg_face_dag.mat (DagNN) or vgg-face.mat (SimpleNN). See
facedeblur_jax/models/vgg_convert.py for the layouts and their channel orders.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

from facedeblur_jax import commands
from facedeblur_jax.models.vgg import CONV_LAYERS, save_vgg_face
from facedeblur_jax.models.vgg_convert import SOURCE_CHANNELS, convert_vgg_face


def main(argv: list[str] | None = None) -> int:
    parser = commands.parser(
        "convert-vgg",
        "Converts a public VGG-Face release (Albanie's vgg_face_dag.pth, other PyTorch "
        "state_dicts, or the MatConvNet vgg_face_dag.mat / vgg-face.mat) to the .npz that "
        "config.loss.vgg_weights_path names. Prints every converted layer.",
    )
    parser.add_argument("--input", required=True, help="vgg_face_dag.pth / .mat release file")
    parser.add_argument("--out", required=True, help="checkpoint to write (.npz)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument(
        "--source-channels",
        choices=SOURCE_CHANNELS,
        default="auto",
        help="channel order the input's conv1_1 expects; auto: the layout's known order",
    )
    parser.add_argument(
        "--skip-vgg-face-check",
        action="store_true",
        help="convert even if fc8 / averageImage say this is not VGG-Face",
    )
    args = parser.parse_args(argv)

    out = pathlib.Path(args.out).expanduser().resolve()
    try:
        if out.suffix != ".npz":
            raise ValueError(f"--out must end in .npz; got {out}")
        if out.exists() and not args.overwrite:
            raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
        src = pathlib.Path(args.input).expanduser().resolve()
        converted = convert_vgg_face(
            src,
            source_channels=args.source_channels,
            check_vgg_face=not args.skip_vgg_face_check,
        )
        source = f"{src.name} ({converted.layout}, {converted.source_channels})"
        written = save_vgg_face(converted.params, out, source=source, overwrite=args.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError, ImportError) as e:
        print(f"facedeblur convert-vgg: error: {e}", file=sys.stderr)
        return 2

    print(f"input   {src}")
    print(f"layout  {converted.layout}; conv1_1 of the source expects {converted.source_channels}")
    total = 0
    for name, _, _ in CONV_LAYERS:
        kernel = converted.params[name]["kernel"]
        n = int(np.prod(kernel.shape)) + int(converted.params[name]["bias"].size)
        total += n
        print(f"  {name:<8} kernel {tuple(kernel.shape)!s:<20} {n:>12,}")
    print(f"  {'total':<8} {'':<27} {total:>12,}  ({len(CONV_LAYERS)} conv layers)")
    if converted.ignored:
        print(f"ignored {', '.join(converted.ignored)} (not needed for features)")
    for note in converted.notes:
        print(f"note    {note}")
    print(f"wrote   {written} (expects RGB input in [0, 1]; mean subtracted inside VGGFace)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
