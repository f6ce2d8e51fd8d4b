"""serve's worker runs at idle CPU priority: the command serve supervises, and what
``lower_to_idle_priority`` does to a process (run in a child, never in the test process).
The running worker under ``serve`` is checked in tests/e2e/test_embedded_serve.py."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.cli import _parser, embedded_worker_command
from app.core.settings import Settings
from tests.e2e.conftest import REPO


def test_serve_starts_its_worker_at_idle_priority_by_default():
    command = embedded_worker_command(Settings())
    assert command[1:4] == ["-m", "app.cli", "worker"] and "--idle-priority" in command
    assert _parser().parse_args(command[3:]).idle_priority is True
    niced = embedded_worker_command(Settings(embedded_worker_sched_idle=False, embedded_worker_nice=7))
    assert "--idle-priority" not in niced and niced[-2:] == ["--nice", "7"]


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux only")
def test_lower_to_idle_priority_sets_sched_idle_inherited_by_children():
    script = ("import os; from app.cpu_priority import lower_to_idle_priority; "
              "print(lower_to_idle_priority()); pid = os.fork()\n"
              "if pid == 0:\n    os._exit(0 if os.sched_getscheduler(0) == os.SCHED_IDLE else 3)\n"
              "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), os.sched_getscheduler(0) == os.SCHED_IDLE)")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["SCHED_IDLE", "0", "True"]
    assert os.sched_getscheduler(0) != os.SCHED_IDLE  # the test process itself is untouched
