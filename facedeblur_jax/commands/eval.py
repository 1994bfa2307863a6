"""``facedeblur eval``: a checkpoint scored on test faces × a kernel bank, written to a folder.

Runs the evaluators of this package on one checkpoint (and the full model of any extra
checkpoints): PSNR / SSIM per kernel size and overall (``psnr_ssim.py``, Tables 9 and 10),
parsing F-scores when the test faces have parsing labels (``parsing.py``, Table 3; all
``N × K`` blurred images), with ``--face-analysis`` detection / identity / recognition
(``face_analysis.py``, Table 11), and with ``--identity-weights FILE`` MobileFaceNet
verification AUC, cosine distance to the clear face and top-1 against the clear test faces
(``identity.py``) on the same probe images. Writes ``results.json``, ``results.md``,
``per_image.npz``, the two plots and ``grid.png`` (``report.py``); refuses before any work
when one of them exists, unless ``--overwrite``.

Faces (``--data``, ``data.py``): the source's test split in source order at the checkpoint's
``image_size`` with its ``data.resize`` policy; ``--max-faces N`` takes N faces spread evenly
over the split (records ``⌊i·total/N⌋``: every identity of a split sorted by identity is
represented, not only the first few).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from collections.abc import Mapping, Sequence

import numpy as np

from facedeblur_jax import commands
from facedeblur_jax.degrade import kernel_bank as bank_lib
from facedeblur_jax.evaluators import face_analysis as fa_lib
from facedeblur_jax.evaluators import identity as identity_lib
from facedeblur_jax.evaluators import parsing as parsing_lib
from facedeblur_jax.evaluators import psnr_ssim, report
from facedeblur_jax.evaluators.faceset import data_spec, load_faces
from facedeblur_jax.serving.loading import load_model
from facedeblur_jax.training.schedule import phases_from_config


def parse_extra(items: Sequence[str]) -> dict[str, str]:
    """``["NAME=DIR", ...]`` → ``{NAME: DIR}`` (unique names, not a built-in row name)."""
    out: dict[str, str] = {}
    reserved = (psnr_ssim.BLURRED, psnr_ssim.COARSE, psnr_ssim.FULL, "parsing")
    reserved += ("ground truth", "clear")
    for item in items:
        name, sep, path = item.partition("=")
        name = name.strip()
        if not sep or not name or not path:
            raise ValueError(f"--extra-checkpoint takes NAME=DIR; got {item!r}")
        if name in out or name in reserved:
            raise ValueError(f"--extra-checkpoint name {name!r} is used twice or reserved")
        out[name] = path
    return out


def run(
    checkpoint: str,
    data: str,
    kernels: str,
    out_dir: str,
    *,
    extra_checkpoints: Mapping[str, str] | None = None,
    max_faces: int | None = None,
    batch_size: int = 64,
    noise_sigma: float = psnr_ssim.NOISE_SIGMA,
    overwrite: bool = False,
    face_analysis: bool = False,
    face_analysis_per_face: int = 1,
    identity_weights: str | None = None,
    priors: Sequence[str] = (),
    grid_rows: int = 8,
    progress: bool = True,
) -> dict:
    """The ``facedeblur eval`` command; returns the results dict it wrote."""
    t0 = time.perf_counter()
    if max_faces is not None and max_faces < 1:
        raise ValueError(f"--max-faces must be >= 1; got {max_faces}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1 (images per call), got {batch_size}")
    if not 0 <= noise_sigma < 1:
        raise ValueError(f"noise sigma must be in [0, 1); got {noise_sigma}")
    paths = report.output_paths(out_dir, overwrite=overwrite)  # refuse before any work
    analyzer = fa_lib.import_face_analysis() if face_analysis else None
    identity_net = (
        identity_lib.load_identity_weights(identity_weights) if identity_weights else None
    )
    if face_analysis and identity_net is None:
        print(identity_lib.HOW_TO_ENABLE, file=sys.stderr)
    overrides, split, gallery_split = data_spec(data)
    bank_path = pathlib.Path(kernels).expanduser().resolve()
    bank = bank_lib.load_bank(bank_path)
    loaded = load_model(checkpoint)
    extra = {name: load_model(path) for name, path in (extra_checkpoints or {}).items()}
    config = loaded.config
    trained_sizes = [int(k) for k in config.degrade.kernel_sizes]
    if set(bank.unique_sizes) != set(trained_sizes):
        print(
            f"note: bank sizes {list(bank.unique_sizes)} differ from the sizes the checkpoint "
            f"was trained with {trained_sizes} (facedeblur make-kernels --config ...)",
            file=sys.stderr,
        )
    faces = load_faces(config, overrides, split, max_faces=max_faces, batch_size=batch_size)
    n, k = len(faces), len(bank)
    if progress:
        print(
            f"eval: {n} faces × {k} kernels = {n * k} images at {loaded.image_size} px, "
            f"batch {batch_size}",
            file=sys.stderr,
        )
    shown = psnr_ssim.grid_pairs(n, k, grid_rows)
    analysed = analyzer is not None or identity_net is not None
    probes = psnr_ssim.pairs_per_face(n, k, face_analysis_per_face) if analysed else []
    scorer = psnr_ssim.Evaluator(
        loaded.model, faces, bank, batch_size=batch_size, noise_sigma=noise_sigma, priors=priors
    )
    ev = scorer.evaluate(
        loaded.variables,
        extra=extra,
        keep=list(dict.fromkeys([*shown, *probes])),
        progress=progress,
    )
    table = psnr_ssim.aggregate(ev["per_image"], bank.sizes, bank.group_labels)
    # The methods after the built-in ones: the fed priors, then the extra checkpoints.
    more_methods = [*scorer.methods[len(scorer.builtin) :], *extra]
    results = report.run_record(
        checkpoint=checkpoint,
        loaded=loaded,
        trained_priors={p.name: p.prior for p in phases_from_config(config)},
        fed_priors=scorer.priors,
        extra=extra,
        extra_paths=extra_checkpoints or {},
        data=data,
        split=split,
        faces=faces,
        max_faces=max_faces,
        bank=bank,
        bank_path=bank_path,
        noise_sigma=noise_sigma,
    )
    results["table"] = table
    results["parsing"] = _parsing(loaded, faces, bank, batch_size, noise_sigma)
    results["grid"] = report.grid_record(faces, bank, shown)
    if analyzer is not None:
        results.update(
            fa_lib.run_face_analysis(
                analyzer,
                ev,
                probes,
                faces,
                builtin=scorer.builtin,
                extra_names=more_methods,
                config=config,
                overrides=overrides,
                gallery_split=gallery_split,
                per_face=face_analysis_per_face,
                batch_size=batch_size,
            )
        )
    if identity_net is not None:
        results["identity"] = _identity(
            identity_net, identity_weights, ev, probes, faces, scorer.builtin, more_methods,
            config, overrides, gallery_split, face_analysis_per_face, batch_size,
        )  # fmt: skip
    timing = dict(ev["timing"])
    timing["total_s"] = time.perf_counter() - t0
    results["timing"] = timing

    report.write_outputs(
        paths, results, ev, table, shown, faces, bank.sizes, list(extra), overwrite=overwrite
    )
    return results


def _parsing(loaded, faces, bank, batch_size: int, noise_sigma: float) -> dict:
    """Table 3 numbers over every (labelled face, kernel) pair, or why there are none."""
    labelled = [i for i in range(len(faces)) if faces.has_labels[i]]
    if not labelled:
        return {"skipped": "the test faces have no parsing labels"}
    pairs = [(i, j) for j in range(len(bank)) for i in labelled]
    scorer = parsing_lib.Evaluator(
        loaded.model, faces, bank, pairs=pairs, batch_size=batch_size, noise_sigma=noise_sigma
    )
    return parsing_lib.summary(scorer.evaluate(loaded.variables))


def _identity(
    variables, weights_path, ev, probes, faces, builtin, extra_names, config, overrides,
    train_split, per_face, batch_size,
) -> dict:  # fmt: skip
    """MobileFaceNet identity numbers of the probe images (``identity.analyze``)."""
    face_idx = np.asarray([i for i, _ in probes])
    methods = (*builtin, *extra_names)
    variants = {m: np.stack([ev["kept"][p][m] for p in probes]) for m in methods}
    identities = faces.identities[face_idx]
    if np.any(identities < 0):
        return {"skipped": "the test faces have no identities (labels.csv)"}
    out = identity_lib.analyze(
        variables,
        faces.images[face_idx],
        variants,
        identities,
        face_idx,
        batch_size=min(batch_size, 64),
    )
    out["weights"] = str(pathlib.Path(weights_path).expanduser().resolve())
    out["probes"] = {
        "num_probes": len(probes),
        "pairs": "face i with bank kernels (i·n + t) mod K, t < n",
        "per_face": per_face,
    }
    out["identities_in_train"] = identity_lib.identities_in_split(
        config, overrides, train_split, sorted(set(identities.tolist()))
    )
    return out


def build_parser() -> argparse.ArgumentParser:
    p = commands.parser(
        "eval",
        "Blurs every test face with every kernel of the bank, deblurs and scores: PSNR/SSIM "
        "per kernel size and overall (Tables 9/10), parsing F-scores when the faces have "
        "parsing labels (Table 3); writes results.json, results.md, per_image.npz, plots and "
        "grid.png to OUT.",
    )
    p.add_argument("--checkpoint", required=True, help=commands.CHECKPOINT_HELP)
    p.add_argument(
        "--data",
        required=True,
        help="'sample' (the bundled faces) or a folder of faces (its test/ split, else every "
        "image in it)",
    )
    p.add_argument("--kernels", required=True, help="bank from 'facedeblur make-kernels'")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--extra-checkpoint",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="another checkpoint whose full model is compared (repeatable)",
    )
    p.add_argument(
        "--max-faces",
        type=int,
        default=None,
        help="N test faces spread over the split (default: all)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="images per jitted call")
    p.add_argument("--noise-sigma", type=float, default=0.01, help="noise std after blur")
    p.add_argument("--grid-rows", type=int, default=8, help="examples in grid.png")
    p.add_argument(
        "--face-analysis",
        action="store_true",
        help="also run facedeblur_jax.faces.recognition (detection, identity, recognition)",
    )
    p.add_argument(
        "--face-analysis-per-face", type=int, default=1, help="kernels per face analysed"
    )
    p.add_argument(
        "--identity-weights",
        default=None,
        metavar="FILE.npz",
        help="MobileFaceNet weights (facedeblur convert-mobilefacenet): verification AUC, "
        "cosine distance to the clear face and top-1 against the clear test faces",
    )
    p.add_argument(
        "--priors",
        default="",
        metavar="NAMES",
        help="comma-separated priors the full model is also scored with, fed to G_f instead "
        "of P's prediction (the Table 2 ablation): zeros, ground_truth (the face's parsing "
        "label), shuffled (another test face's label); the last two need labelled faces",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = commands.parse_without_overrides(
        build_parser(),
        sys.argv[1:] if argv is None else argv,
        "eval takes its config from the checkpoint",
    )
    results = run(
        args.checkpoint,
        args.data,
        args.kernels,
        args.out,
        extra_checkpoints=parse_extra(args.extra_checkpoint),
        max_faces=args.max_faces,
        batch_size=args.batch_size,
        noise_sigma=args.noise_sigma,
        overwrite=args.overwrite,
        face_analysis=args.face_analysis,
        face_analysis_per_face=args.face_analysis_per_face,
        identity_weights=args.identity_weights,
        priors=tuple(x for x in args.priors.split(",") if x) if args.priors else (),
        grid_rows=args.grid_rows,
        progress=not args.no_progress,
    )
    print("\n".join(report.table9_markdown(results["table"])))
    print()
    print("\n".join(report.table10_markdown(results["table"])))
    print(f"wrote {', '.join(report.OUTPUT_FILES)} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
