"""CI: the numbers `facedeblur demo` printed against the README's demo table, within a tolerance.

    python .ci/check_demo.py README.md demo.log

Float results differ across CPUs (the same run gives 23.29 dB on one 2-core CPU and 23.35 dB
on another), so the README's table is a claim checked to :data:`PSNR_TOL` dB and
:data:`SSIM_TOL`, not to the last digit. Exit status 1 names every row outside them.
"""

from __future__ import annotations

import pathlib
import re
import sys

PSNR_TOL, SSIM_TOL = 0.2, 0.01
ROWS = {"blurred input": "blurred", "G_c alone": "G_c", "full model": "full"}


def readme_table(text: str) -> dict[str, tuple[float, float]]:
    """``{"blurred": (psnr, ssim), "G_c": ..., "full": ...}`` from the README's demo table."""
    out = {}
    for label, name in ROWS.items():
        m = re.search(rf"^\| {re.escape(label)}[^|]*\| ([\d.]+) \| ([\d.]+) \|", text, re.M)
        if m:
            out[name] = (float(m.group(1)), float(m.group(2)))
    return out


def demo_output(text: str) -> dict[str, tuple[float, float]]:
    """The same rows from what ``facedeblur demo`` printed."""
    rows = re.findall(r"^\s+(blurred|G_c|full)\s+PSNR\s+([\d.]+) dB\s+SSIM ([\d.]+)", text, re.M)
    return {name: (float(p), float(s)) for name, p, s in rows}


def compare(claimed: dict, printed: dict) -> list[str]:
    """One line per row outside the tolerance (or missing)."""
    problems = []
    for name in ROWS.values():
        if name not in claimed or name not in printed:
            problems.append(
                f"{name}: missing in {'the README' if name not in claimed else 'the log'}"
            )
            continue
        (cp, cs), (pp, ps) = claimed[name], printed[name]
        if abs(cp - pp) > PSNR_TOL or abs(cs - ps) > SSIM_TOL:
            problems.append(f"{name}: README {cp:.2f} dB / {cs:.4f}, demo {pp:.2f} dB / {ps:.4f}")
    return problems


def main(argv: list[str]) -> int:
    readme, log = (pathlib.Path(a).read_text(encoding="utf-8") for a in argv)
    claimed, printed = readme_table(readme), demo_output(log)
    for name in ROWS.values():
        print(f"demo {name:<8} README {claimed.get(name)}  printed {printed.get(name)}")
    problems = compare(claimed, printed)
    for line in problems:
        print(
            f"CI: the README's demo table is off by more than ±{PSNR_TOL} dB / ±{SSIM_TOL}: {line}",
            file=sys.stderr,
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
