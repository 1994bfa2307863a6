"""``facedeblur`` command line: ``train``, ``deblur``, ``demo``.

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
    from facedeblur_jax import deblur_files

    if overrides:
        raise ValueError("deblur takes its config from the checkpoint; drop the --config.* args")
    return deblur_files.run(
        args.checkpoint,
        args.inputs,
        args.out,
        overwrite=args.overwrite,
        batch_size=args.batch_size,
        align=not args.no_align,
        upsample=args.upsample,
    )


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

    p = sub.add_parser("train", help="train (or resume) the 4-phase schedule")
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
    p.set_defaults(func=_cmd_deblur)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    try:
        overrides = split_overrides(rest)
        return int(args.func(args, overrides) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"facedeblur {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
