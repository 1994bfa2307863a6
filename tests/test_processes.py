"""The tests' progress-based time limit (tests/processes.py): a silent, idle child is taken
for hung; one that writes output, changes a watched folder or computes is waited for past
the idle limit."""

import sys

import pytest

from tests import processes

IDLE = 3.0  # s: each child below lives about twice as long


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_silent_idle_child_is_killed_after_the_idle_limit():
    with pytest.raises(processes.Stalled, match="no progress for 3 s"):
        processes.run(_python("import time; time.sleep(120)"), idle=IDLE)


def test_a_child_that_writes_output_is_waited_for():
    code = "import time\nfor i in range(12):\n    print(i, flush=True); time.sleep(0.5)"
    done = processes.run(_python(code), idle=IDLE)
    assert done.returncode == 0 and done.stdout.split() == [str(i) for i in range(12)]


def test_a_child_that_changes_a_watched_folder_is_waited_for(tmp_path):
    code = (
        "import pathlib, sys, time\n"
        "for i in range(12):\n"
        "    (pathlib.Path(sys.argv[1]) / str(i)).mkdir(); time.sleep(0.5)"
    )
    done = processes.run([*_python(code), str(tmp_path)], watch=[tmp_path], idle=IDLE)
    assert done.returncode == 0 and len(list(tmp_path.iterdir())) == 12


def test_a_silent_child_that_computes_is_waited_for():
    code = "import time\nend = time.monotonic() + 2 * %r\nwhile time.monotonic() < end:\n    pass"
    assert processes.run(_python(code % IDLE), idle=IDLE).returncode == 0


def test_the_ceiling_ends_a_child_that_keeps_twitching():
    code = "import time\nwhile True:\n    print('.', flush=True); time.sleep(0.2)"
    with pytest.raises(processes.Stalled, match="ceiling of 2 s"):
        processes.run(_python(code), idle=IDLE, ceiling=2.0)
