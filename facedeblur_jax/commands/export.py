"""``facedeblur export``: the inference function, parameters baked in, as StableHLO.

    facedeblur export --checkpoint DIR|FILE.npz --out FILE [--upto fine|coarse]
        [--platforms cpu,cuda] [--overwrite]

What is written and how to load it: :mod:`facedeblur_jax.serving.stablehlo`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from facedeblur_jax import commands
from facedeblur_jax.serving import stablehlo


def build_parser() -> argparse.ArgumentParser:
    p = commands.parser(
        "export",
        "Serialises the trained model's inference function (parameters baked in, symbolic "
        "batch size) as StableHLO with jax.export; FILE.json beside it says how to load it.",
    )
    p.add_argument("--checkpoint", required=True, help=commands.CHECKPOINT_HELP)
    p.add_argument("--out", required=True, help="file to write (bytes of jax.export)")
    p.add_argument("--upto", choices=("fine", "coarse"), default="fine", help="output y or y_c")
    p.add_argument(
        "--platforms", default="", help="comma-separated, e.g. cpu,cuda (default: this backend)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = commands.parse_without_overrides(
        build_parser(),
        sys.argv[1:] if argv is None else argv,
        "export takes its config from the checkpoint",
    )
    platforms = tuple(p for p in args.platforms.split(",") if p) if args.platforms else None
    path = stablehlo.run(
        args.checkpoint, args.out, upto=args.upto, platforms=platforms, overwrite=args.overwrite
    )
    print(f"wrote {path} and {path}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
