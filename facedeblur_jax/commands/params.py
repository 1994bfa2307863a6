"""``facedeblur params``: the parameter count of each network and the total next to the paper's.

facedeblur params --config configs/paper.py [--config.model.num_fine_stages=2]

The paper publishes totals only (Table 8, Table 12), and they contradict each other and
the text; see facedeblur_jax/models/param_count.py. For the released CVPR'18 model
(``--config cvpr18``, ``model.kind = "cvpr18"``) it prints P and G, with no paper count.
"""

from __future__ import annotations

import json
import sys

from facedeblur_jax import commands
from facedeblur_jax.config import load_config, split_overrides
from facedeblur_jax.models.param_count import (
    PAPER_TABLE12,
    PAPER_TOTAL,
    net_label,
    paper_total,
    param_counts,
)


def _m(n: float) -> str:
    return f"{n / 1e6:.2f} M"


def main(argv: list[str] | None = None) -> int:
    parser = commands.parser(
        "params",
        "Prints the parameters of each network and their total beside the paper's.",
        epilog="Config overrides: --config.KEY=VALUE, e.g. --config.model.num_fine_stages=2",
    )
    parser.add_argument("--config", default="paper", help="config file or built-in name")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args, rest = parser.parse_known_args(argv)
    config = load_config(args.config, split_overrides(rest))
    counts = param_counts(config)
    n = config.model.num_fine_stages
    paper = paper_total(config.model)
    if args.json:
        print(
            json.dumps(
                {
                    "kind": config.model.kind,
                    "counts": counts,
                    "paper_total": paper,
                    "paper_table8": {str(k): v for k, v in PAPER_TOTAL.items()},
                    "paper_table12": PAPER_TABLE12,
                },
                indent=2,
            )
        )
        return 0
    if config.model.kind == "cvpr18":
        _print_cvpr18(counts)
        return 0
    step = PAPER_TOTAL[2] - PAPER_TOTAL[1]
    fine = [k for k in counts if k.startswith("fine")]
    notes = {
        "coarse": "not published",
        "parsing": "not published (nor are its widths)",
        **{k: f"not published; Table 8 adds {_m(step)} per extra G_f" for k in fine},
    }
    print(f"{'network':<16}{'parameters':>14}  paper")
    for name in ("coarse", "parsing", *fine):
        print(f"{net_label(name):<16}{counts[name]:>14,}  {notes[name]}")
    total = counts["generator_total"]
    vs = (
        f"Table 8 (N = {n}{', shared' if config.model.share_fine_weights else ''}): "
        f"{_m(paper)}, ours / paper = {total / paper:.3f}"
        if paper
        else f"Table 8 has no N = {n}"
    )
    print(f"{'total G_c+P+G_f':<16}{total:>14,}  {vs}; Table 12: {PAPER_TABLE12 / 1e6:.1f} M")
    print(f"{net_label('disc'):<16}{counts['disc']:>14,}  not part of the paper's count")
    print(
        "Table 8 (14.80 M at N = 1) and Table 12 (26.6 M for the same model) disagree, and "
        f"Table 8's {_m(step)} per extra G_f is not the {_m(counts[fine[0]])} of a G_f "
        "laid out as the text says (§3.5). P's widths are our choice "
        "(facedeblur_jax/models/parsing_net.py)."
    )
    return 0


def _print_cvpr18(counts: dict[str, int]) -> None:
    """The released CVPR'18 model: P and one G (the release has no G_c, G_f or D)."""
    note = "widths of the config (configs/cvpr18.py: stand-ins for the released ones)"
    print(f"{'network':<16}{'parameters':>14}  note")
    for name in ("parsing", "generator"):
        print(f"{net_label(name):<16}{counts[name]:>14,}  {note}")
    print(f"{'total P+G':<16}{counts['generator_total']:>14,}")
    print(
        "The authors' released CVPR'18 graph (P -> G, model.kind = 'cvpr18'); the IJCV "
        "paper's Table 8 and Table 12 count its cascade G_c + P + G_f and do not apply."
    )


if __name__ == "__main__":
    sys.exit(main())
