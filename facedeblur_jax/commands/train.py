"""``facedeblur train``: train (or resume) the staged schedule of a config.

facedeblur train --config NAME|FILE --workdir DIR [--no-progress] [--config.KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from facedeblur_jax import commands
from facedeblur_jax.config import load_config
from facedeblur_jax.training.loop import train

EXAMPLES = (
    "\n\nExample:\n  facedeblur train --config configs/paper.py --workdir runs/paper \\\n"
    "      --config.data.root=DIR --config.loss.vgg_weights_path=weights/vgg_face.npz\n"
    "Your own faces in DIR/train/, DIR/test/ (README: Training on your own data):\n"
    "  facedeblur train --config configs/paper.py --workdir runs/mine \\\n"
    "      --config.data.source=folder --config.data.root=DIR \\\n"
    "      --config.data.label_root=DIR/labels --config.loss.vgg_weight=0"
)


def build_parser() -> argparse.ArgumentParser:
    p = commands.parser(
        "train",
        "Trains G_c, P and G_f through the config's phases (config.phase_order), writing "
        "checkpoints, metrics.jsonl and TensorBoard logs to --workdir. Running the same "
        "command again resumes from the latest checkpoint there.",
        epilog=commands.OVERRIDES_HELP + EXAMPLES,
    )
    p.add_argument("--config", required=True, help=commands.CONFIG_HELP)
    p.add_argument("--workdir", required=True, help="checkpoints, TensorBoard logs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args, overrides = commands.parse_with_overrides(
        build_parser(), sys.argv[1:] if argv is None else argv
    )
    config = load_config(args.config, overrides)
    train(config, args.workdir, progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
