"""TEST ONLY: fit option ``test_hook``, honoured only with ``ENABLE_TEST_HOOKS=true`` in the
worker's environment (never set in production; without it the option is passed on to the
estimator, which rejects it as bad input). The chaos tests use it to make a fit slow or
crash deterministically.

    {"sleep_s": 5}        sleep 5 s, reporting progress (stage "test_hook") every 0.1 s
    {"block_s": 5}        sleep 5 s without progress, ignoring Celery's soft limit (a long C call)
    {"kill": "always"}    SIGKILL the process running the job, on every attempt
"""
from __future__ import annotations

import os
import signal
import time
from typing import Any

from gpu.errors import InvalidInput

OPTION = "test_hook"


def run_test_hook(hook: dict[str, Any], progress) -> None:
    """Do what ``hook`` says (see the module docstring); ValueError for unknown keys."""
    unknown = set(hook) - {"sleep_s", "block_s", "kill"}
    if unknown:
        raise InvalidInput(f"options.test_hook: unknown keys {sorted(unknown)}")
    if hook.get("kill") == "always":
        os.kill(os.getpid(), signal.SIGKILL)
    if hook.get("sleep_s"):
        total = float(hook["sleep_s"])
        steps = max(int(total / 0.1), 1)
        for step in range(steps):
            progress("test_hook", step, steps)
            time.sleep(total / steps)
        progress("test_hook", steps, steps)
    if hook.get("block_s"):
        _block(float(hook["block_s"]))


def _block(seconds: float) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0.0)))
        except SoftTimeLimitExceeded:
            continue
