"""``facedeblur build-tfds``: an image folder (+ parsing labels) as a TFDS ArrayRecord data set.

    facedeblur build-tfds --root DIR --data-dir OUT [--label-root LABELS] [--splits train,test]

Train from it with ``--config.data.source=tfds --config.data.root=OUT``; the builder and
the reader are ``facedeblur_jax/data/tfds_builder.py``.
"""

from __future__ import annotations

import logging
import pathlib
import sys
from collections.abc import Sequence

from facedeblur_jax import commands
from facedeblur_jax.data import validate


def build_parser():
    p = commands.parser(
        "build-tfds",
        "Writes the images under --root/<split>/ (with their parsing labels from "
        "--label-root, mirroring --root, and identities from --root/labels.csv) as the "
        "'face_folder' TFDS data set in ArrayRecord files under --data-dir; train from it "
        "with --config.data.source=tfds --config.data.root=DATA_DIR. A data set already "
        "prepared there is kept, not rewritten.",
    )
    p.add_argument("--root", required=True, help="image folder with <split>/ sub-folders")
    p.add_argument("--data-dir", required=True, help="TFDS data_dir to write")
    p.add_argument("--label-root", default=None, help="label folder mirroring --root")
    p.add_argument("--splits", default="train,test", help="comma-separated sub-folders")
    p.add_argument(
        "--verify",
        default="header",
        choices=validate.VERIFY_MODES,
        help="check each file's header, or decode it completely",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for flag, folder in (("--root", args.root), ("--label-root", args.label_root)):
        if folder is not None and not pathlib.Path(folder).is_dir():  # before TFDS' import
            print(
                f"facedeblur build-tfds: error: {flag} {folder!r} is not a folder", file=sys.stderr
            )
            return 2
    import tensorflow_datasets as tfds  # deferred: slow to import (one command needs it)

    from facedeblur_jax.data import tfds_builder  # deferred: imports tensorflow_datasets

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    tfds.disable_progress_bar()
    try:
        path = tfds_builder.build(
            args.root,
            args.data_dir,
            label_root=args.label_root,
            splits=[s for s in args.splits.split(",") if s],
            verify=args.verify,
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"facedeblur build-tfds: error: {e}", file=sys.stderr)
        return 2
    print(f"data set in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
