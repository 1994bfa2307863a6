"""``facedeblur export-weights``: the generator of a training run as one weights file.

    facedeblur export-weights --checkpoint runs/cpu_study --out cpu_study.npz \\
        [--name cpu_study] [--card-json card.json] [--overwrite]

Writes G_c, P and G_f (P's BatchNorm statistics included; no discriminator, no optimiser
state) with the training config, step and provenance to a ``.npz`` that ``facedeblur
deblur``, ``eval`` and ``export`` take as ``--checkpoint``. The file format is
:mod:`facedeblur_jax.serving.weights_file`.
"""

from __future__ import annotations

import pathlib
import sys

from facedeblur_jax import commands
from facedeblur_jax.serving.loading import export_weights

DESCRIPTION = (
    "Writes the generator of a checkpoint (G_c, P with its BatchNorm statistics, G_f; no "
    "discriminator, no optimiser state) as one .npz weights file, with the training config, "
    "the step and provenance (a name and an optional JSON model card). 'facedeblur deblur', "
    "'eval' and 'export' load it with --checkpoint FILE.npz."
)
EPILOG = (
    "Example:\n"
    "  facedeblur export-weights --checkpoint runs/cpu_study --out cpu_study.npz \\\n"
    "      --card-json card.json\n"
    "The card is a JSON object stored as it is, e.g.\n"
    '  {"data": "the training faces (data set, split, size)", "steps": N, "metrics": {...}}\n'
    "Its \"data\" string is what 'facedeblur deblur' prints as the training data. The "
    "config's local paths (data.root, weight files, caches) are cleared in the file."
)


def build_parser():
    parser = commands.parser("export-weights", DESCRIPTION, epilog=EPILOG)
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="training workdir, its checkpoints/ folder, one checkpoints/<step> folder "
        "(default: the latest) or a weights file",
    )
    parser.add_argument("--out", required=True, help="weights file to write (.npz)")
    parser.add_argument(
        "--name", default=None, help="the model's name (default: --out's name without .npz)"
    )
    parser.add_argument(
        "--card-json",
        default=None,
        metavar="FILE",
        help="JSON object stored as the model card: training data, steps, measured numbers",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    name = pathlib.Path(args.out).stem if args.name is None else args.name.strip()
    path, loaded = export_weights(
        args.checkpoint,
        args.out,
        name=name,
        card_json=args.card_json,
        overwrite=args.overwrite,
    )
    counts = {
        group: sum(int(x.size) for x in _leaves(loaded.variables.get(group, {})))
        for group in ("params", "batch_stats")
    }
    print(
        f"wrote {path}: generator {name!r} "
        f"at step {loaded.step}, {loaded.image_size} px; {counts['params']:,} parameters, "
        f"{counts['batch_stats']:,} BatchNorm statistics; {path.stat().st_size / 1e6:.1f} MB"
    )
    return 0


def _leaves(tree):
    if hasattr(tree, "items"):
        for value in tree.values():
            yield from _leaves(value)
    else:
        yield tree


if __name__ == "__main__":
    sys.exit(main())
