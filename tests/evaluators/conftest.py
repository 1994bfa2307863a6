"""Shared by the evaluator tests: a small real kernel bank file (3 sizes × 2 kernels)."""

import pytest

from facedeblur_jax.degrade import kernel_bank


@pytest.fixture(scope="session")
def bank_path(tmp_path_factory):
    bank = kernel_bank.make_bank(sizes=(3, 5, 7), per_size=2, canvas=7, num_steps=200)
    return kernel_bank.save_bank(tmp_path_factory.mktemp("bank") / "bank.npz", bank)
