"""The ``facedeblur`` subcommands that are tools around the model: ``make-kernels``,
``convert-vgg``, ``convert-mobilefacenet``, ``make-labels``, ``build-tfds``, ``params``,
``data`` (``data prepare celeba``: ``prepare_celeba.py``), ``export-weights``. One module
per subcommand, each with ``build_parser()`` and ``main(argv) -> exit status``;
``facedeblur NAME ARGS`` runs ``main(ARGS)`` of its module (``python -m
facedeblur_jax.commands.<module>`` too).
"""

from __future__ import annotations

import argparse
import textwrap


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


def parser(name: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``facedeblur NAME``."""
    return argparse.ArgumentParser(
        prog=f"facedeblur {name}",
        description=description,
        epilog=epilog,
        formatter_class=HelpFormatter,
    )
