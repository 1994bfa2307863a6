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
MOBILEFACENET_CKPT = REPO_ROOT.parent / "shared" / "weights" / "mobilefacenet" / "068.ckpt"


@pytest.fixture(scope="session")
def shared_faces_dir():
    """The full face set beside the checkout (../shared/data/faces), or skip."""
    if not (SHARED_FACES / "labels.csv").is_file():
        pytest.skip(f"{SHARED_FACES} not present on this machine")
    return SHARED_FACES


@pytest.fixture(scope="session")
def mobilefacenet_checkpoint():
    """The public PyTorch MobileFaceNet checkpoint (``068.ckpt``) stored beside the checkout,
    or skip: it is never part of the repository."""
    if not MOBILEFACENET_CKPT.is_file():
        pytest.skip("MobileFaceNet checkpoint not available")
    return MOBILEFACENET_CKPT


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A training workdir of the tiny config, shared by the eval and export tests: a real
    ``train()`` run of the coarse phase only (2 steps; P and G_f keep their initial weights,
    which is all these tests need), so it costs one step compilation instead of four."""
    from facedeblur_jax.config import load_config
    from facedeblur_jax.train import train

    workdir = tmp_path_factory.mktemp("tiny_checkpoint")
    train(load_config("tiny", {"phase_order": ("coarse",)}), workdir, progress=False)
    return workdir
