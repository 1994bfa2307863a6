"""``facedeblur``: the command line. This module only dispatches: ``facedeblur NAME ARGS``
runs ``main(ARGS)`` of the module :data:`COMMANDS` names for ``NAME``
(``facedeblur_jax/commands/``, one module per subcommand), importing it only then.

Every failure is one line on stderr, ``facedeblur NAME: error: ...``: exit status 2 for
input the user can fix — a bad argument, a missing or unreadable file, a checkpoint of
another model, a cluster that does not form — and 1 for a failure during the work (a
command that ran but could not finish, a write that failed); ``core/errors.py`` says which
exceptions are which.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from facedeblur_jax.commands import HelpFormatter, OneLineErrors
from facedeblur_jax.core.errors import WorkFailed, one_line
from facedeblur_jax.training.distributed import ClusterError

# Subcommand -> (module under facedeblur_jax.commands whose main(argv) runs it, summary).
COMMANDS = {
    "demo": (
        "demo",
        "train the demo config on the bundled sample faces, then deblur held-back ones",
    ),
    "train": ("train", "train (or resume) the staged schedule (config.phase_order)"),
    "deblur": (
        "deblur",
        "deblur the faces in photos of any size (or aligned crops with --no-align)",
    ),
    "eval": ("eval", "PSNR/SSIM on test faces × a kernel bank (paper Tables 9/10 layout)"),
    "compare": ("compare", "ablation tables from several 'facedeblur eval' folders"),
    "export": ("export", "serialise the inference function as StableHLO"),
    "make-kernels": ("make_kernels", "write the fixed test-kernel bank that eval reads (.npz)"),
    "convert-vgg": ("convert_vgg", "convert a VGG-Face release to the perceptual loss's .npz"),
    "convert-official": (
        "convert_official",
        "convert the authors' released CVPR'18 weights (MatConvNet) to a weights file",
    ),
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

# What a command raises for input the user can fix (ValueError covers CheckpointError):
# exit status 2.
USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    ImportError,
    ClusterError,
)
# A failure during the work (any other OSError: a write that fails half-way): exit status 1.
WORK_ERRORS = (WorkFailed, OSError)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: lists the subcommands (each parses its own arguments)."""
    parser = OneLineErrors(
        prog="facedeblur",
        description="Semantic face deblurring (Shen et al., IJCV 2020) in JAX.",
        epilog="'facedeblur COMMAND --help' shows a command's options and their defaults.",
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        sub.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv)  # prints the help, or the error naming the command
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(f"facedeblur_jax.commands.{COMMANDS[name][0]}")
    try:
        return int(module.main(rest) or 0)
    except USER_ERRORS as e:
        print(f"facedeblur {name}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except WORK_ERRORS as e:
        print(f"facedeblur {name}: error: {one_line(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
