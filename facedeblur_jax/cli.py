"""``facedeblur`` command line: ``train``, ``deblur``, ``demo``, ``eval``, ``export``.

Config overrides use big_vision's form: ``--config.model.features=16``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from facedeblur_jax.config import parse_value


def split_overrides(rest: Sequence[str]) -> dict[str, object]:
    """``["--config.a.b=1", "--config.c", "x"]`` -> ``{"a.b": 1, "c": "x"}``.

    Anything else is an error naming the argument.
    """
    out: dict[str, object] = {}
    items = list(rest)
    while items:
        arg = items.pop(0)
        if not arg.startswith("--config."):
            raise SystemExit(f"facedeblur: unrecognised argument {arg!r}")
        key = arg[len("--config.") :]
        if "=" in key:
            key, value = key.split("=", 1)
        elif items:
            value = items.pop(0)
        else:
            raise SystemExit(f"facedeblur: {arg} needs a value")
        out[key] = parse_value(value)
    return out


def _cmd_demo(args, overrides) -> int:
    from facedeblur_jax import demo

    return demo.run(args.config, overrides, workdir=args.workdir, out_dir=args.out)


def _cmd_train(args, overrides) -> int:
    from facedeblur_jax.config import load_config
    from facedeblur_jax.train import train

    config = load_config(args.config, overrides)
    train(config, args.workdir, progress=not args.no_progress)
    return 0


def _cmd_deblur(args, overrides) -> int:
    from facedeblur_jax.faces import deblur_photos

    if overrides:
        raise ValueError("deblur takes its config from the checkpoint; drop the --config.* args")
    return deblur_photos.run(
        args.checkpoint,
        args.inputs,
        args.out,
        overwrite=args.overwrite,
        batch_size=args.batch_size,
        align=not args.no_align,
        upsample=args.upsample,
        max_downscale=args.max_downscale,
        large_faces=args.large_faces,
    )


def _cmd_eval(args, overrides) -> int:
    from facedeblur_jax import evaluate

    if overrides:
        raise ValueError("eval takes its config from the checkpoint; drop the --config.* args")
    results = evaluate.run(
        args.checkpoint,
        args.data,
        args.kernels,
        args.out,
        extra_checkpoints=evaluate.parse_extra(args.extra_checkpoint),
        max_faces=args.max_faces,
        batch_size=args.batch_size,
        noise_sigma=args.noise_sigma,
        overwrite=args.overwrite,
        face_analysis=args.face_analysis,
        face_analysis_per_face=args.face_analysis_per_face,
        grid_rows=args.grid_rows,
        progress=not args.no_progress,
    )
    print("\n".join(evaluate.table9_markdown(results["table"])))
    print()
    print("\n".join(evaluate.table10_markdown(results["table"])))
    print(f"wrote {', '.join(evaluate.OUTPUT_FILES)} to {args.out}")
    return 0


def _cmd_export(args, overrides) -> int:
    from facedeblur_jax import export

    if overrides:
        raise ValueError("export takes its config from the checkpoint; drop the --config.* args")
    platforms = tuple(p for p in args.platforms.split(",") if p) if args.platforms else None
    path = export.run(
        args.checkpoint, args.out, upto=args.upto, platforms=platforms, overwrite=args.overwrite
    )
    print(f"wrote {path} and {path}.json")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facedeblur", description="Semantic face deblurring (Shen et al. 2020) in JAX."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "demo", help="train the demo config on the bundled sample faces, then deblur them"
    )
    p.add_argument("--config", default="demo", help="config file or built-in name")
    p.add_argument("--workdir", default="runs/demo", help="checkpoints and logs")
    p.add_argument("--out", default=None, help="folder for result strips (optional)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("train", help="train (or resume) the staged schedule (config.phase_order)")
    p.add_argument("--config", required=True, help="config file (configs/*.py) or name")
    p.add_argument("--workdir", required=True, help="checkpoints, TensorBoard logs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "deblur",
        help="deblur the faces in photos of any size (or aligned crops with --no-align)",
        description="Finds the faces (dlib), aligns each to the model's input, deblurs it and "
        "pastes it back with a feathered edge; outputs OUT/<stem>.png at the input's size.",
    )
    p.add_argument("--checkpoint", required=True, help="workdir or checkpoint folder")
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--batch-size", type=int, default=32)
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
        default=2.0,
        metavar="F",
        help="a face whose aligned crop is shrunk more than F times to the model's input is "
        "large: pasted back it would be softer than the photo, so a warning names it "
        "(default 2; 'inf': no face is large)",
    )
    p.add_argument(
        "--large-faces",
        choices=("crop", "keep", "paste"),
        default="crop",
        help="what becomes of a large face: 'crop' (default) leaves it as it was in the photo "
        "and writes its deblurred crop as OUT/<stem>_face<k>.png; 'keep' leaves it and "
        "writes nothing for it; 'paste' pastes it back anyway",
    )
    p.set_defaults(func=_cmd_deblur)

    p = sub.add_parser(
        "eval", help="PSNR/SSIM on test faces × a kernel bank (paper Tables 9/10 layout)"
    )
    p.add_argument("--checkpoint", required=True, help="workdir or checkpoint folder")
    p.add_argument(
        "--data", required=True, help="'sample', 'faces' (../shared/data/faces) or a folder"
    )
    p.add_argument("--kernels", required=True, help="bank from tools/make_test_kernels.py")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--extra-checkpoint",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="another checkpoint whose full model is compared (repeatable)",
    )
    p.add_argument("--max-faces", type=int, default=None, help="N test faces spread over the split")
    p.add_argument("--batch-size", type=int, default=64, help="images per jitted call")
    p.add_argument("--noise-sigma", type=float, default=0.01, help="noise std after blur")
    p.add_argument("--grid-rows", type=int, default=8, help="examples in grid.png")
    p.add_argument(
        "--face-analysis",
        action="store_true",
        help="also run facedeblur_jax.faces.analysis (detection, identity, recognition)",
    )
    p.add_argument(
        "--face-analysis-per-face", type=int, default=1, help="kernels per face analysed"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("export", help="serialise the inference function as StableHLO")
    p.add_argument("--checkpoint", required=True, help="workdir or checkpoint folder")
    p.add_argument("--out", required=True, help="file to write (bytes of jax.export)")
    p.add_argument("--upto", choices=("fine", "coarse"), default="fine", help="output y or y_c")
    p.add_argument(
        "--platforms", default="", help="comma-separated, e.g. cpu,cuda (default: this backend)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=_cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    try:
        overrides = split_overrides(rest)
        return int(args.func(args, overrides) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as e:
        print(f"facedeblur {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
