"""``facedeblur`` command line: ``demo``, ``train``, ``deblur``, ``eval``, ``export`` (here)
and the tools ``make-kernels``, ``convert-vgg``, ``convert-mobilefacenet``, ``make-labels``,
``build-tfds``, ``params``, ``data``, ``export-weights`` (``facedeblur_jax/commands/``, one
module each).

Config overrides use big_vision's form: ``--config.model.features=16``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from facedeblur_jax.commands import HelpFormatter
from facedeblur_jax.config import BUILTIN, parse_value

# Subcommand -> (module under facedeblur_jax.commands whose main(argv) runs it, summary).
TOOLS = {
    "make-kernels": ("make_kernels", "write the fixed test-kernel bank that eval reads (.npz)"),
    "convert-vgg": ("convert_vgg", "convert a VGG-Face release to the perceptual loss's .npz"),
    "convert-mobilefacenet": (
        "convert_mobilefacenet",
        "convert a PyTorch MobileFaceNet checkpoint to the identity network's .npz",
    ),
    "make-labels": ("make_labels", "pseudo parsing labels from dlib landmarks for a folder"),
    "build-tfds": ("build_tfds", "write an image folder as a TFDS ArrayRecord data set"),
    "data": ("data", "prepare a data set: 'facedeblur data prepare celeba --src DIR --out DIR'"),
    "params": ("params", "parameters per network beside the paper's count"),
    "export-weights": (
        "export_weights",
        "the generator of a checkpoint as one weights file (.npz) for deblur, eval, export",
    ),
}

CONFIG_HELP = (
    f"a built-in config ({', '.join(BUILTIN)}), a config file, or configs/NAME.py (the "
    "built-in NAME when no such file exists)"
)
CHECKPOINT_HELP = (
    "workdir, checkpoint folder or weights file (.npz from 'facedeblur export-weights')"
)
OVERRIDES_HELP = (
    "Any config key can be overridden after the other arguments with --config.KEY=VALUE\n"
    "(or --config.KEY VALUE); VALUE is read as a Python literal where it is one. Example:\n"
    "  --config.train.global_batch_size=32 --config.degrade.kernel_sizes='(13, 15)'\n"
    "An unknown key is an error that names it."
)


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
    from facedeblur_jax.commands import demo

    return demo.run(args.config, overrides, workdir=args.workdir, out_dir=args.out)


def _cmd_train(args, overrides) -> int:
    from facedeblur_jax.config import load_config
    from facedeblur_jax.training.loop import train

    config = load_config(args.config, overrides)
    train(config, args.workdir, progress=not args.no_progress)
    return 0


def _cmd_deblur(args, overrides) -> int:
    from facedeblur_jax.serving import photos as deblur_photos

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


def _cmd_compare(args, overrides) -> int:
    from facedeblur_jax.evaluators import compare

    if overrides:
        raise ValueError("compare takes no --config.* args")
    comparison = compare.run(args.spec, args.out, overwrite=args.overwrite)
    print(compare.markdown(comparison))
    print(f"wrote {', '.join(compare.OUTPUT_FILES)} to {args.out}")
    return 0


def _cmd_eval(args, overrides) -> int:
    from facedeblur_jax.commands import eval as command
    from facedeblur_jax.evaluators import report

    if overrides:
        raise ValueError("eval takes its config from the checkpoint; drop the --config.* args")
    results = command.run(
        args.checkpoint,
        args.data,
        args.kernels,
        args.out,
        extra_checkpoints=command.parse_extra(args.extra_checkpoint),
        max_faces=args.max_faces,
        batch_size=args.batch_size,
        noise_sigma=args.noise_sigma,
        overwrite=args.overwrite,
        face_analysis=args.face_analysis,
        face_analysis_per_face=args.face_analysis_per_face,
        identity_weights=args.identity_weights,
        priors=tuple(x for x in args.priors.split(",") if x) if args.priors else (),
        grid_rows=args.grid_rows,
        progress=not args.no_progress,
    )
    print("\n".join(report.table9_markdown(results["table"])))
    print()
    print("\n".join(report.table10_markdown(results["table"])))
    print(f"wrote {', '.join(report.OUTPUT_FILES)} to {args.out}")
    return 0


def _cmd_export(args, overrides) -> int:
    from facedeblur_jax.serving import stablehlo as export

    if overrides:
        raise ValueError("export takes its config from the checkpoint; drop the --config.* args")
    platforms = tuple(p for p in args.platforms.split(",") if p) if args.platforms else None
    path = export.run(
        args.checkpoint, args.out, upto=args.upto, platforms=platforms, overwrite=args.overwrite
    )
    print(f"wrote {path} and {path}.json")
    return 0


def _demo_description() -> str:
    from facedeblur_jax.config import load_config

    cfg = load_config("demo")
    phases = ", ".join(f"{name} {cfg.phases[name].steps}" for name in cfg.phase_order)
    return (
        f"Trains the 'demo' config ({cfg.image_size}x{cfg.image_size} faces, small networks; "
        f"steps per phase: {phases}; batch {cfg.train.global_batch_size}) on the 160 "
        "training faces bundled with the package, then blurs the 40 held-back faces with a "
        "fixed seed and prints mean PSNR/SSIM of the blurred input, of G_c alone and of the "
        "full model. Takes a few minutes on a 2-core CPU. Re-running with the same --workdir "
        "resumes from its checkpoints instead of training again."
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facedeblur",
        description="Semantic face deblurring (Shen et al., IJCV 2020) in JAX.",
        epilog="'facedeblur COMMAND --help' shows a command's options and their defaults.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "demo",
        help="train the demo config on the bundled sample faces, then deblur held-back ones",
        description=_demo_description(),
        epilog=OVERRIDES_HELP,
    )
    p.add_argument("--config", default="demo", help=CONFIG_HELP)
    p.add_argument("--workdir", default="runs/demo", help="checkpoints and logs")
    p.add_argument(
        "--out",
        default=None,
        help="also write blurred | G_c | full | sharp strips here (default: not written)",
    )
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "train",
        help="train (or resume) the staged schedule (config.phase_order)",
        description="Trains G_c, P and G_f through the config's phases (config.phase_order), "
        "writing checkpoints, metrics.jsonl and TensorBoard logs to --workdir. Running the "
        "same command again resumes from the latest checkpoint there.",
        epilog=OVERRIDES_HELP
        + "\n\nExample:\n  facedeblur train --config configs/paper.py --workdir runs/paper \\\n"
        "      --config.data.root=DIR --config.loss.vgg_weights_path=weights/vgg_face.npz\n"
        "Your own faces in DIR/train/, DIR/test/ (README: Training on your own data):\n"
        "  facedeblur train --config configs/paper.py --workdir runs/mine \\\n"
        "      --config.data.source=folder --config.data.root=DIR \\\n"
        "      --config.data.label_root=DIR/labels --config.loss.vgg_weight=0",
    )
    p.add_argument("--config", required=True, help=CONFIG_HELP)
    p.add_argument("--workdir", required=True, help="checkpoints, TensorBoard logs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "deblur",
        help="deblur the faces in photos of any size (or aligned crops with --no-align)",
        description="Finds the faces (dlib), aligns each to the model's input, deblurs it and "
        "pastes it back with a feathered edge; outputs OUT/<stem>.png at the input's size.",
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
        "eval",
        help="PSNR/SSIM on test faces × a kernel bank (paper Tables 9/10 layout)",
        description="Blurs every test face with every kernel of the bank, deblurs and scores: "
        "PSNR/SSIM per kernel size and overall (Tables 9/10), parsing F-scores when the faces "
        "have parsing labels (Table 3); writes results.json, results.md, per_image.npz, plots "
        "and grid.png to OUT.",
    )
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument(
        "--data",
        required=True,
        help="'sample' (the bundled faces) or a folder of faces (its test/ split, else every "
        "image in it)",
    )
    p.add_argument("--kernels", required=True, help="bank from 'facedeblur make-kernels'")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--extra-checkpoint",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="another checkpoint whose full model is compared (repeatable)",
    )
    p.add_argument(
        "--max-faces",
        type=int,
        default=None,
        help="N test faces spread over the split (default: all)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="images per jitted call")
    p.add_argument("--noise-sigma", type=float, default=0.01, help="noise std after blur")
    p.add_argument("--grid-rows", type=int, default=8, help="examples in grid.png")
    p.add_argument(
        "--face-analysis",
        action="store_true",
        help="also run facedeblur_jax.faces.recognition (detection, identity, recognition)",
    )
    p.add_argument(
        "--face-analysis-per-face", type=int, default=1, help="kernels per face analysed"
    )
    p.add_argument(
        "--identity-weights",
        default=None,
        metavar="FILE.npz",
        help="MobileFaceNet weights (facedeblur convert-mobilefacenet): verification AUC, "
        "cosine distance to the clear face and top-1 against the clear test faces",
    )
    p.add_argument(
        "--priors",
        default="",
        metavar="NAMES",
        help="comma-separated priors the full model is also scored with, fed to G_f instead "
        "of P's prediction (the Table 2 ablation): zeros, ground_truth (the face's parsing "
        "label), shuffled (another test face's label); the last two need labelled faces",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser(
        "compare",
        help="ablation tables from several 'facedeblur eval' folders",
        description="Rows (an eval folder and one of its methods) grouped into tables by a "
        "JSON spec; per row PSNR/SSIM, their spread over the test faces, the paired "
        "difference to the table's first row with its 95 percent interval, and identity numbers "
        "when the evals have them. Writes comparison.json, comparison.md and comparison.png "
        "to OUT (facedeblur_jax/evaluators/compare.py describes the spec).",
    )
    p.add_argument("--spec", required=True, help="JSON: {'tables': {...}, 'rows': [...]}")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("export", help="serialise the inference function as StableHLO")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--out", required=True, help="file to write (bytes of jax.export)")
    p.add_argument("--upto", choices=("fine", "coarse"), default="fine", help="output y or y_c")
    p.add_argument(
        "--platforms", default="", help="comma-separated, e.g. cpu,cuda (default: this backend)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=_cmd_export)

    for name, (_, summary) in TOOLS.items():  # listed here, parsed by their own module
        sub.add_parser(name, help=summary, add_help=False)
    for p in sub.choices.values():
        p.formatter_class = HelpFormatter
    return parser


def run_tool(name: str, argv: Sequence[str]) -> int:
    """``facedeblur NAME ARGV``: ``main(ARGV)`` of the tool's module."""
    module = importlib.import_module(f"facedeblur_jax.commands.{TOOLS[name][0]}")
    return int(module.main(list(argv)) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    from facedeblur_jax.training.checkpoint import CheckpointError
    from facedeblur_jax.training.distributed import ClusterError

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in TOOLS:
        try:
            return run_tool(argv[0], argv[1:])
        except (ValueError, FileNotFoundError, FileExistsError, ImportError) as e:
            print(f"facedeblur {argv[0]}: error: {e}", file=sys.stderr)
            return 2
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    try:
        overrides = split_overrides(rest)
        return int(args.func(args, overrides) or 0)
    except (
        ValueError,
        FileNotFoundError,
        FileExistsError,
        ImportError,
        CheckpointError,
        ClusterError,
    ) as e:
        print(f"facedeblur {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
