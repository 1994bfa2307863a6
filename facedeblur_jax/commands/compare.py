"""``facedeblur compare``: ablation tables from several ``facedeblur eval`` folders.

    facedeblur compare --spec SPEC.json --out DIR [--overwrite]

The spec's format and the statistics are :mod:`facedeblur_jax.evaluators.compare`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from facedeblur_jax import commands
from facedeblur_jax.evaluators import compare


def build_parser() -> argparse.ArgumentParser:
    p = commands.parser(
        "compare",
        "Rows (an eval folder and one of its methods) grouped into tables by a JSON spec; per "
        "row PSNR/SSIM, their spread over the test faces, the paired difference to the "
        "table's first row with its 95 percent interval (between every pair of rows in a "
        "table of three or more), identity numbers when the evals have them, and P's parsing "
        "F-scores of the evals the spec lists under 'parsing'. Writes comparison.json, "
        "comparison.md and comparison.png to OUT (facedeblur_jax/evaluators/compare.py "
        "describes the spec).",
    )
    p.add_argument(
        "--spec", required=True, help="JSON: {'tables': {...}, 'rows': [...], 'parsing': [...]}"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = commands.parse_without_overrides(
        build_parser(), sys.argv[1:] if argv is None else argv, "compare takes no config"
    )
    comparison = compare.run(args.spec, args.out, overwrite=args.overwrite)
    print(compare.markdown(comparison))
    print(f"wrote {', '.join(compare.OUTPUT_FILES)} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
