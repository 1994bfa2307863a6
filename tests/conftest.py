"""Test-wide setup: 8 fake CPU devices, float32 everywhere, deterministic CPU runs.

The XLA flag must be set before JAX initialises its backend, which is why it lives
at the top of the root conftest (imported by pytest before any test module).
"""

import os

from tests.processes import FAST_COMPILE  # imports no JAX

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    _flags += " --xla_force_host_platform_device_count=8"
# The tests' programs are tiny: compiling them fast (LLVM's optimisations off) halves the
# suite's time, and running them slower costs nothing. The processes the tests start
# inherit the flag, so results compared across processes come from the same compiler.
if "xla_backend_optimization_level" not in _flags:
    _flags += f" {FAST_COMPILE}"
os.environ["XLA_FLAGS"] = _flags.strip()

# One persistent XLA compilation cache for the whole session, inherited by the processes
# the tests start: the tiny configs' programs, which many tests train with again, compile
# once instead of once per train() call. Set JAX_COMPILATION_CACHE_DIR to keep your own.
_SESSION_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import tempfile

    _SESSION_CACHE = tempfile.mkdtemp(prefix="facedeblur-tests-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _SESSION_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# Optional data for the tests that need more than the bundled faces: set the environment
# variable named below to its path; each test that needs it skips without it.
FACES_ENV, OFFICIAL_KERNEL_ENV = "FACEDEBLUR_FACES", "FACEDEBLUR_OFFICIAL_KERNEL"
MOBILEFACENET_ENV = "FACEDEBLUR_MOBILEFACENET"
_BESIDE = REPO_ROOT.parent / "shared"


def _optional_path(env: str, default: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(os.environ.get(env) or default)


@pytest.fixture(scope="session")
def shared_faces_dir():
    """The 20-identity face set (a folder with labels.csv, train/, test/), or skip."""
    root = _optional_path(FACES_ENV, _BESIDE / "data" / "faces")
    if not (root / "labels.csv").is_file():
        pytest.skip(f"face set not available: set {FACES_ENV}=DIR (a folder with labels.csv)")
    return root


@pytest.fixture(scope="session")
def official_kernel_path():
    """The authors' released 27×27 test kernel as ``.npy``, or skip."""
    path = _optional_path(
        OFFICIAL_KERNEL_ENV, _BESIDE / "reference" / "official_test_kernel_27.npy"
    )
    if not path.is_file():
        pytest.skip(f"official test kernel not available: set {OFFICIAL_KERNEL_ENV}=FILE.npy")
    return path


@pytest.fixture(scope="session")
def mobilefacenet_checkpoint():
    """The public PyTorch MobileFaceNet checkpoint (``068.ckpt``), or skip: it is never part
    of the repository."""
    path = _optional_path(MOBILEFACENET_ENV, _BESIDE / "weights" / "mobilefacenet" / "068.ckpt")
    if not path.is_file():
        pytest.skip(f"MobileFaceNet checkpoint not available: set {MOBILEFACENET_ENV}=FILE")
    return path


@pytest.fixture(scope="session")
def bank_path(tmp_path_factory):
    """A small real kernel bank file (3 sizes × 2 kernels), for the evaluator and eval tests."""
    from facedeblur_jax.degrade import kernel_bank

    bank = kernel_bank.make_bank(sizes=(3, 5, 7), per_size=2, canvas=7, num_steps=200)
    return kernel_bank.save_bank(tmp_path_factory.mktemp("bank") / "bank.npz", bank)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A training workdir of the tiny config, shared by the eval and export tests: a real
    ``train()`` run of the coarse phase only (2 steps; P and G_f keep their initial weights,
    which is all these tests need), so it costs one step compilation instead of four."""
    from facedeblur_jax.config import load_config
    from facedeblur_jax.training.loop import train

    workdir = tmp_path_factory.mktemp("tiny_checkpoint")
    train(load_config("tiny", {"phase_order": ("coarse",)}), workdir, progress=False)
    return workdir


@pytest.fixture(scope="session")
def tiny_weights_file(tiny_checkpoint, tmp_path_factory):
    """The generator of :func:`tiny_checkpoint` as a weights file (``facedeblur
    export-weights``' function), named ``tiny`` with a one-entry card."""
    from facedeblur_jax.serving.loading import export_weights

    folder = tmp_path_factory.mktemp("tiny_weights")
    card = folder / "card.json"
    card.write_text('{"data": "the bundled sample faces"}')
    path, _ = export_weights(tiny_checkpoint, folder / "tiny.npz", name="tiny", card_json=card)
    return path


@pytest.fixture(scope="session")
def tiny_demo_run(tmp_path_factory):
    """``facedeblur demo --config tiny``: all five phases of the tiny config trained into
    ``runs/notebook_tiny`` and evaluated, run once for the demo test and the notebooks
    (which find the finished run there and train nothing). Returns ``(runs dir, workdir,
    printed output, strips folder)``."""
    import contextlib
    import io

    from facedeblur_jax import cli

    runs = tmp_path_factory.mktemp("runs")
    workdir, strips = runs / "notebook_tiny", runs / "strips"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        argv = ["demo", "--config", "tiny", "--workdir", str(workdir), "--out", str(strips)]
        assert cli.main(argv) == 0
    return runs, workdir, printed.getvalue(), strips


# A busy machine on purpose: FACEDEBLUR_TEST_CPU_HOG=N starts N busy loops (one per core to
# keep busy) when the session starts and stops them when it ends, so that the suite runs as
# on a laptop or a shared node doing other work (its time limits are progress-based:
# tests/processes.py). Each loop ends by itself after FACEDEBLUR_TEST_CPU_HOG_S seconds
# (default 4 h) or when pytest is gone. Off by default.
CPU_HOG_ENV, CPU_HOG_SECONDS_ENV = "FACEDEBLUR_TEST_CPU_HOG", "FACEDEBLUR_TEST_CPU_HOG_S"
_HOG_LOOP = """
import os, sys, time
end, parent = time.monotonic() + float(sys.argv[1]), os.getppid()
while time.monotonic() < end and os.getppid() == parent:
    for _ in range(200_000):
        pass
"""
_hogs: list = []
_hog_started, _hog_note = 0.0, ""


def _start_cpu_hog() -> None:
    import subprocess
    import sys
    import time

    global _hog_started
    text = os.environ.get(CPU_HOG_ENV, "").strip()
    if not text or text == "0":
        return
    if not text.isdigit():
        raise pytest.UsageError(f"{CPU_HOG_ENV}={text!r}: the number of busy loops to start")
    seconds = float(os.environ.get(CPU_HOG_SECONDS_ENV) or 4 * 3600)
    for _ in range(int(text)):
        _hogs.append(subprocess.Popen([sys.executable, "-c", _HOG_LOOP, str(seconds)]))
    _hog_started = time.monotonic()


def _stop_cpu_hog() -> None:
    import time

    global _hog_note
    if not _hogs:
        return
    for proc in _hogs:
        if proc.poll() is None:
            proc.kill()
    for proc in _hogs:
        proc.wait()
    seconds = time.monotonic() - _hog_started
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    _hog_note = f"{len(_hogs)} busy loop(s) ran for {seconds:.0f} s; load average at the end {load}"
    _hogs.clear()


def pytest_sessionstart(session):
    """Starts the CPU hog (:data:`CPU_HOG_ENV`) in the main pytest process only."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        _start_cpu_hog()


def pytest_sessionfinish(session, exitstatus):
    """Stops the CPU hog; removes the session's compilation cache (only the one this
    conftest made)."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        return
    _stop_cpu_hog()
    if _SESSION_CACHE:
        import shutil

        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _hog_note:
        terminalreporter.write_line(f"{CPU_HOG_ENV}: {_hog_note}")


# The files that take longest, in the order a worker should start them: under
# ``--dist loadfile`` each file runs whole on one worker, in collection order, and these
# (collected last by name) would otherwise start near the end, leaving one worker idle
# while the other finishes them. Longest first, the rest fill in behind.
LONGEST_FILES = (
    "tests/training/test_loop.py",
    "tests/training/test_multihost.py",
    "tests/training/test_step.py",
    "tests/bench/test_throughput.py",
    "tests/test_notebooks.py",
    "tests/test_bad_input.py",
)


def pytest_collection_modifyitems(session, config, items):
    """Moves the tests of :data:`LONGEST_FILES` to the front (in that order), the others
    keeping theirs."""

    def rank(item):
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FILES.index(path) if path in LONGEST_FILES else len(LONGEST_FILES)

    items.sort(key=rank)  # stable
