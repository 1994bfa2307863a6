"""``facedeblur make-kernels``: the deterministic test-kernel bank ``facedeblur eval`` reads.

    facedeblur make-kernels --out kernels/test_bank.npz                  # paper: 8×10
    facedeblur make-kernels --config configs/demo.py --out demo.npz      # 7..13 on 13
    facedeblur make-kernels --out bank.npz --extra released27=kernel27.npy

Defaults are the paper's protocol (§5.1: 10 kernels for each of the sizes 13, 15, …, 27 on
a 27×27 canvas, anxiety 0.005, 2000 trajectory samples, bounding boxes centred).
``--config`` takes the sizes, canvas, anxiety, trajectory and placement from a config's
``degrade`` section (so the bank matches what the model was trained on); explicit flags
override it. The key derivation, the file layout and why the bank never meets a training
draw are in ``facedeblur_jax/degrade/kernel_bank.py``.
``--extra NAME=FILE.npy`` adds a kernel read from a file (checked 2-D, finite, >= 0;
renormalised to sum 1, which is printed when its sum was off; centred on the canvas) as its
own group, reported by ``facedeblur eval`` as one more column beside the sizes. The same
arguments always give a byte-identical file; it is never overwritten unless
``--overwrite``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from facedeblur_jax import commands
from facedeblur_jax.config import load_config
from facedeblur_jax.core import imageio
from facedeblur_jax.core.digest import sha256_file
from facedeblur_jax.core.outputs import check_output_file
from facedeblur_jax.degrade import kernel_bank, kernels


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None


def _extra(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE.npy, got {text!r}")
    return name, path


def _anxiety(text: str) -> float | None:
    return None if text.lower() in ("none", "bf") else float(text)


def build_parser() -> argparse.ArgumentParser:
    p = commands.parser(
        "make-kernels",
        "Writes the fixed test-kernel bank (.npz) that 'facedeblur eval --kernels' reads. "
        "Defaults: the paper's protocol (10 kernels for each size 13, 15, ..., 27 on a 27x27 "
        "canvas); --config matches a config's kernels instead, explicit flags override "
        "both. The same arguments always give a byte-identical file.",
    )
    p.add_argument("--out", required=True, help="bank file to write (.npz)")
    p.add_argument(
        "--config",
        default=None,
        help="take sizes, canvas, anxiety, trajectory and placement from this config "
        "(name or file)",
    )
    p.add_argument(
        "--sizes",
        type=_ints,
        default=None,
        help="odd support sizes, e.g. 13,15,17 (default: the config's, else "
        f"{','.join(map(str, kernels.DEFAULT_SIZES))})",
    )
    p.add_argument(
        "--per-size", type=int, default=kernel_bank.DEFAULT_PER_SIZE, help="kernels per size"
    )
    p.add_argument(
        "--canvas",
        type=int,
        default=None,
        help="odd grid side >= the largest size (default: the config's, else the largest size)",
    )
    p.add_argument(
        "--anxiety",
        type=_anxiety,
        default=argparse.SUPPRESS,
        help="trajectory anxiety; 'none': Boracchi & Foi's 0.1·U (default: the config's, else "
        f"{kernels.DEFAULT_ANXIETY})",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"trajectory samples (default: the config's, else {kernels.DEFAULT_NUM_STEPS})",
    )
    p.add_argument(
        "--center",
        choices=kernels.CENTERS,
        default=None,
        help="placement of each stroke in its support (default: the config's, else "
        f"{kernels.DEFAULT_CENTER})",
    )
    p.add_argument("--seed", type=int, default=kernel_bank.BANK_SEED, help="root seed")
    p.add_argument(
        "--extra",
        action="append",
        default=[],
        type=_extra,
        metavar="NAME=FILE.npy",
        help="also store this 2-D kernel file as its own group NAME (repeatable); "
        "e.g. a released test kernel, reported by facedeblur eval beside the sizes",
    )
    p.add_argument("--preview", default=None, help="also write a PNG of every kernel here")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return p


def bank_kwargs(args: argparse.Namespace) -> dict:
    """``make_bank`` arguments: defaults < ``--config`` < explicit flags."""
    kwargs: dict = {}
    if args.config:
        kwargs.update(kernel_bank.bank_kwargs_from_config(load_config(args.config)))
    if args.sizes is not None:
        kwargs["sizes"] = args.sizes
    if args.canvas is not None:
        kwargs["canvas"] = args.canvas
    elif "sizes" in kwargs and "canvas" not in kwargs:
        kwargs["canvas"] = max(kwargs["sizes"])
    if hasattr(args, "anxiety"):
        kwargs["anxiety"] = args.anxiety
    if args.steps is not None:
        kwargs["num_steps"] = args.steps
    if args.center is not None:
        kwargs["center"] = args.center
    kwargs["per_size"] = args.per_size
    kwargs["seed"] = args.seed
    return kwargs


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = pathlib.Path(args.out).expanduser().resolve()
    preview = pathlib.Path(args.preview).expanduser().resolve() if args.preview else None
    for path, flag in ((out, "--out"), (preview, "--preview")):
        if path is not None:
            check_output_file(path, overwrite=args.overwrite, flag=flag)
    kwargs = bank_kwargs(args)
    extras = [(n, pathlib.Path(f).expanduser()) for n, f in args.extra]
    for _, path in extras:  # a bad extra file fails before the bank is drawn
        kernel_bank.load_extra_kernel(path, kwargs.get("canvas", kernels.DEFAULT_CANVAS))
    bank = kernel_bank.make_bank(**kwargs)
    if extras:
        bank = kernel_bank.with_extras(bank, extras)
    kernel_bank.save_bank(out, bank, overwrite=args.overwrite)
    if preview is not None:
        imageio.save_image(preview, kernel_bank.preview(bank), overwrite=args.overwrite)
    prov = bank.provenance()
    print(
        f"wrote {out}: {len(bank)} kernels, sizes {prov['sizes']} × {prov['per_size']} on a "
        f"{prov['canvas']}×{prov['canvas']} canvas, anxiety {prov['anxiety']}, "
        f"{prov['steps']} steps, center {prov['center']}, seed {prov['seed']}; "
        f"sha256 {sha256_file(out)}"
    )
    for e in bank.extras:
        note = f", renormalised from sum {e['sum']:.6g}" if e["renormalised"] else ""
        print(
            f"  extra kernel {e['name']!r}: {e['file']} {e['shape'][0]}×{e['shape'][1]}, "
            f"size {e['size']}{note}"
        )
    if preview is not None:
        print(f"wrote {preview}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
