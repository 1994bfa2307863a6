"""evaluators.report: strict JSON with non-finite numbers, the Markdown tables."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from facedeblur_jax.evaluators import psnr_ssim, report
from tests.evaluators import strict_json

SIZES = np.asarray([3, 3, 5, 5])


def _scores(pred, target) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in psnr_ssim.per_image_metrics(pred, target).items()}


def test_identity_deblurring_gives_inf_psnr_handled_everywhere(tmp_path):
    from facedeblur_jax.core import imageio, sample_data

    faces = [imageio.load_image(f.path) for f in sample_data.sample_faces("test")[:2]]
    sharp = jnp.asarray(np.stack(faces), jnp.float32) / 255.0
    same = _scores(sharp, sharp)  # "deblurring" that returns the unblurred ground truth
    assert np.all(np.isposinf(same["psnr"])) and np.allclose(same["ssim"], 1.0, atol=1e-5)
    offset = _scores(jnp.clip(sharp + 0.1, 0, 1), sharp)
    per_image = {
        "identity": {"psnr": np.tile(same["psnr"][:, None], (1, 4)), "ssim": np.ones((2, 4))},
        "mixed": {  # one perfect image among finite ones
            "psnr": np.asarray([[np.inf, 20.0, 30.0, 40.0], [25.0, 35.0, 45.0, 50.0]]),
            "ssim": np.full((2, 4), 0.5),
        },
        "finite": {"psnr": np.tile(offset["psnr"][:, None], (1, 4)), "ssim": np.ones((2, 4))},
    }
    table = psnr_ssim.aggregate(per_image, SIZES)
    o = table["overall"]
    assert math.isinf(o["identity"]["psnr_mean"]) and math.isinf(o["identity"]["psnr_worst"])
    assert math.isnan(o["identity"]["psnr_std"]) and o["identity"]["psnr_inf"] == 8
    assert math.isinf(o["mixed"]["psnr_mean"]) and o["mixed"]["psnr_worst"] == 20.0
    assert o["mixed"]["psnr_inf"] == 1 and math.isinf(table["per_size"]["mixed"]["3"]["psnr"])
    assert table["per_size"]["mixed"]["5"]["psnr"] == 41.25  # (30+40+45+50)/4
    assert math.isfinite(o["finite"]["psnr_mean"]) and o["finite"]["psnr_inf"] == 0

    path = tmp_path / "t.json"
    report.write_json(path, {"table": table})
    back = strict_json.loads(path.read_text())["table"]["overall"]
    assert back["identity"]["psnr_mean"] == "inf" and back["identity"]["psnr_std"] == "nan"
    assert float(back["mixed"]["psnr_mean"]) == math.inf and back["mixed"]["psnr_worst"] == 20.0
    md = "\n".join(report.table10_markdown(table))
    assert "| identity | ∞ | ∞ | 1.000 ± 0.000 | 1.000 |" in md
    assert "| mixed | ∞ | 20.00 |" in md


def test_markdown_tables_layout():
    psnr = np.asarray([[21.0, 22.0, 23.0, 24.0]])
    per_image = {
        "blurred input": {"psnr": psnr, "ssim": psnr / 30},
        "full model": {"psnr": psnr + 1, "ssim": psnr / 29},
    }
    table = psnr_ssim.aggregate(per_image, SIZES)
    t9 = report.table9_markdown(table)
    assert t9[0] == "| Method | 3×3 PSNR | 3×3 SSIM | 5×5 PSNR | 5×5 SSIM |"
    assert t9[2] == "| blurred input | 21.50 | 0.717 | 23.50 | 0.783 |"
    assert t9[3].startswith("| full model | 22.50 | 0.741 | 24.50 |")
    t10 = report.table10_markdown(table)
    assert t10[0] == "| Method | Average PSNR | Worst PSNR | Average SSIM | Worst SSIM |"
    assert t10[2] == "| blurred input | 22.50 ± 1.12 | 21.00 | 0.750 ± 0.037 | 0.700 |"


def test_table9_shows_an_extra_group_as_its_own_columns():
    psnr = np.asarray([[10.0, 20.0, 30.0, 40.0, 99.0], [20.0, 30.0, 40.0, 50.0, 97.0]])
    sizes, groups = np.asarray([3, 3, 5, 5, 5]), ["3", "3", "5", "5", "released27"]
    table = psnr_ssim.aggregate({"m": {"psnr": psnr, "ssim": psnr / 100}}, sizes, groups)
    t9 = report.table9_markdown(table)
    assert t9[0].endswith("| 5×5 SSIM | released27 PSNR | released27 SSIM |")
    assert t9[2] == "| m | 20.00 | 0.200 | 40.00 | 0.400 | 98.00 | 0.980 |"
    t10 = report.table10_markdown(table)
    assert t10[2].startswith("| m | 30.00 ± ")  # the drawn kernels only


def test_table3_layout():
    parsing = {
        "inputs": ["clear", "blurred", "deblurred"],
        "classes": ["skin", "nose"],
        "f_score": {
            "clear": {"skin": 0.9151, "nose": 0.8},
            "blurred": {"skin": 0.5, "nose": float("nan")},
            "deblurred": {"skin": 0.25, "nose": 0.125},
        },
        "average": {"clear": 0.85755, "blurred": 0.5, "deblurred": 0.1875},
    }
    lines = report.table3_markdown(parsing)
    assert lines[0] == "| Class | clear | blurred | deblurred |"
    assert lines[2] == "| skin | 0.915 | 0.500 | 0.250 |"
    assert lines[3] == "| nose | 0.800 | n/a | 0.125 |"
    assert lines[4] == "| average | 0.858 | 0.500 | 0.188 |"
