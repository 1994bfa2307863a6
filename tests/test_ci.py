"""``.ci/check_demo.py``: CI holds the README's demo table to what the demo prints, within a
tolerance (float results differ across CPUs)."""

from __future__ import annotations

import importlib.util

from tests.conftest import REPO_ROOT

spec = importlib.util.spec_from_file_location("check_demo", REPO_ROOT / ".ci" / "check_demo.py")
check_demo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_demo)

LOG = """held-back sample faces (40), mean over faces, seed 1234:
  blurred  PSNR  {b:.2f} dB  SSIM 0.6617
  G_c      PSNR  {c:.2f} dB  SSIM 0.6894
  full     PSNR  {f:.2f} dB  SSIM 0.6896
"""


def test_the_readme_has_the_three_rows():
    claimed = check_demo.readme_table((REPO_ROOT / "README.md").read_text(encoding="utf-8"))
    assert set(claimed) == {"blurred", "G_c", "full"}
    assert all(10 < p < 60 and 0 < s < 1 for p, s in claimed.values())


def test_rows_within_the_tolerance_pass_and_others_are_named(tmp_path):
    readme = "| blurred input | 22.79 | 0.6617 |\n| G_c alone | 23.29 | 0.6894 |\n"
    readme += "| full model (G_c → P → G_f) | 23.29 | 0.6896 |\n"
    claimed = check_demo.readme_table(readme)
    near = check_demo.demo_output(LOG.format(b=22.80, c=23.35, f=23.35))
    assert check_demo.compare(claimed, near) == []
    far = check_demo.demo_output(LOG.format(b=22.80, c=23.60, f=23.35))
    assert check_demo.compare(claimed, far) == [
        "G_c: README 23.29 dB / 0.6894, demo 23.60 dB / 0.6894"
    ]
    (tmp_path / "README.md").write_text(readme)
    (tmp_path / "demo.log").write_text("no numbers\n")
    assert check_demo.main([str(tmp_path / "README.md"), str(tmp_path / "demo.log")]) == 1
