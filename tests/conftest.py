"""Test-wide setup: 8 fake CPU devices, float32 everywhere, deterministic CPU runs.

The XLA flag must be set before JAX initialises its backend, which is why it lives
at the top of the root conftest (imported by pytest before any test module).
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_FACES = REPO_ROOT.parent / "shared" / "data" / "faces"


@pytest.fixture(scope="session")
def shared_faces_dir():
    """The full face set beside the checkout (../shared/data/faces), or skip."""
    if not (SHARED_FACES / "labels.csv").is_file():
        pytest.skip(f"{SHARED_FACES} not present on this machine")
    return SHARED_FACES
