"""The ``facedeblur`` subcommands, one module each (``facedeblur_jax/cli.py`` lists them).

Each module has ``build_parser()`` and ``main(argv) -> exit status``; ``facedeblur NAME
ARGS`` runs ``main(ARGS)`` of its module (``python -m facedeblur_jax.commands.<module>``
too). ``data`` dispatches once more, to ``prepare_celeba.py`` for ``data prepare celeba``.
This file holds what their parsers share: the help formatter and the help texts of the
common options.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence

from facedeblur_jax.config import BUILTIN, split_overrides

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


class HelpFormatter(argparse.HelpFormatter):
    """``(default: X)`` after each option that has a default; descriptions keep their
    paragraphs and indented (example) lines, the rest is filled to the terminal width.

    Unlike ``argparse.ArgumentDefaultsHelpFormatter`` it says nothing for required
    arguments, flags and ``None`` defaults, and leaves help texts that already describe
    their default alone. Lines never break inside a hyphenated word (``built-in``,
    ``--max-downscale``), whatever the terminal's width.
    """

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks = []
        for paragraph in text.strip("\n").split("\n\n"):
            lines, prose = [], []
            for line in [*paragraph.splitlines(), None]:
                if line is not None and not line.startswith(" "):
                    prose.append(line)
                    continue
                if prose:
                    lines.append(
                        textwrap.fill(
                            " ".join(" ".join(prose).split()),
                            width,
                            break_on_hyphens=False,
                            initial_indent=indent,
                            subsequent_indent=indent,
                        )
                    )
                    prose = []
                if line is not None:
                    lines.append(indent + line)
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or action.required
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or default == []
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


class OneLineErrors(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line, like every other failure of
    the command line: ``PROG: error: MESSAGE (see 'PROG --help')``, exit status 2 (no usage
    block; ``--help`` shows it)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def parser(name: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``facedeblur NAME``."""
    return OneLineErrors(
        prog=f"facedeblur {name}",
        description=description,
        epilog=epilog,
        formatter_class=HelpFormatter,
    )


def parse_with_overrides(
    p: argparse.ArgumentParser, argv: Sequence[str]
) -> tuple[argparse.Namespace, dict[str, object]]:
    """``(args, {"a.b": value})``: ``p``'s arguments, then ``--config.KEY=VALUE`` overrides.

    Raises:
      ValueError: an argument that is neither ``p``'s nor an override (named).
    """
    args, rest = p.parse_known_args(list(argv))
    return args, split_overrides(rest)


def parse_without_overrides(
    p: argparse.ArgumentParser, argv: Sequence[str], why: str
) -> argparse.Namespace:
    """``p``'s arguments; ``--config.*`` overrides are refused with ``why`` (e.g. "deblur
    takes its config from the checkpoint"), anything else unknown by argparse."""
    args, rest = p.parse_known_args(list(argv))
    if any(arg.startswith("--config.") for arg in rest):
        raise ValueError(f"{why}; drop the --config.* args")
    if rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    return args
