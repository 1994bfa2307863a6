"""``facedeblur params``: the parameter count of each network and the total next to the paper's.

facedeblur params --config configs/paper.py [--config.model.num_fine_stages=2]
"""

from __future__ import annotations

import json
import sys

from facedeblur_jax import commands
from facedeblur_jax.cli import split_overrides
from facedeblur_jax.config import load_config
from facedeblur_jax.models.param_count import PAPER_TOTAL, param_counts


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
    # Table 8: with shared fine weights the count stays at N = 1's 14.80 M.
    paper = PAPER_TOTAL[1] if config.model.share_fine_weights else PAPER_TOTAL.get(n)
    if args.json:
        print(json.dumps({"counts": counts, "paper_total": paper}, indent=2))
        return 0
    print(f"{'network':<18}{'parameters':>14}")
    for name, value in counts.items():
        if name != "generator_total":
            print(f"{name:<18}{value:>14,}")
    total = counts["generator_total"]
    print(f"{'total G_c+P+G_f':<18}{total:>14,}  ({total / 1e6:.2f} M)")
    if paper:
        print(
            f"{'paper (Table 8)':<18}{int(paper):>14,}  ({paper / 1e6:.2f} M, N = {n}); "
            f"ours / paper = {total / paper:.3f}"
        )
    print(
        "D is not part of the paper's count. P's widths are not in the paper (see "
        "facedeblur_jax/models/parsing_net.py)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
