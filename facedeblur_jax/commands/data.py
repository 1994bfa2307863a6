"""``facedeblur data``: data set preparation.

    facedeblur data prepare celeba --src DIR --out OUT [...]

``prepare DATASET`` runs ``main(ARGS)`` of the data set's preparation module
(``facedeblur data prepare DATASET --help`` lists its options).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from facedeblur_jax import commands
from facedeblur_jax.commands import prepare_celeba

# Data set -> (its preparation module, with main(argv), and a summary).
PREPARERS = {
    "celeba": (
        prepare_celeba,
        "CelebA (img_celeba or img_align_celeba) -> aligned faces, pseudo parsing labels, "
        "labels.csv and manifest.json in identity-disjoint train/val/test splits",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    p = commands.parser(
        "data",
        "Data set preparation. 'facedeblur data prepare DATASET --help' shows the options "
        "of one data set's preparation.\n\n"
        + "\n".join(f"  {name}: {summary}" for name, (_, summary) in PREPARERS.items()),
    )
    p.add_argument("action", choices=("prepare",), help="what to do")
    p.add_argument("dataset", choices=tuple(PREPARERS), help="which data set")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the data set's options")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # "prepare celeba --help" is the data set's help, not this parser's.
    if len(argv) >= 2 and argv[0] == "prepare" and argv[1] in PREPARERS:
        args = argparse.Namespace(action="prepare", dataset=argv[1], args=argv[2:])
    else:
        args = build_parser().parse_args(argv)
    return int(PREPARERS[args.dataset][0].main(args.args) or 0)


if __name__ == "__main__":
    sys.exit(main())
