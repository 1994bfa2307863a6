"""``facedeblur`` command line: ``demo`` (more subcommands arrive with training/eval).

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

    return demo.run(args.config, overrides, out_dir=args.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facedeblur", description="Semantic face deblurring (Shen et al. 2020) in JAX."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="run the demo on the bundled sample faces")
    p.add_argument("--config", default="demo", help="config file or built-in name")
    p.add_argument("--out", default=None, help="folder for result images (optional)")
    p.set_defaults(func=_cmd_demo)
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
