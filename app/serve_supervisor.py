"""The worker process of ``spectral-topics serve``, kept alive.

:class:`WorkerSupervisor` starts the worker command in its own process group, watches it
from a daemon thread and starts it again whenever it exits while serve is running, after an
exponential backoff (``backoff_s`` doubling up to ``backoff_max_s``; back to ``backoff_s``
once a worker has run ``stable_after_s``). Every exit and restart is logged. :meth:`stop`
sends SIGTERM to the worker's group and SIGKILL after ``stop_timeout_s``; once stopped it
never restarts. :meth:`request_stop` only sends the SIGTERM, so that the worker can stop
while the API drains its requests.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence

log = logging.getLogger("spectral_topics.serve")


class WorkerSupervisor:
    def __init__(self, command: Sequence[str], env: dict[str, str], *, backoff_s: float = 1.0,
                 backoff_max_s: float = 30.0, stable_after_s: float = 60.0, stop_timeout_s: float = 10.0):
        self._command, self._env = list(command), env
        self._backoff_s, self._backoff_max_s, self._stable_after_s = backoff_s, backoff_max_s, stable_after_s
        self._stop_timeout_s = stop_timeout_s
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._terminated: subprocess.Popen | None = None
        self.restarts = 0
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._process.pid if self._process is not None else None

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            # Its own process group: stop() reaches the worker's pool children too, and a
            # terminal's Ctrl-C reaches serve only, which then stops the worker in order.
            self._process = subprocess.Popen(self._command, env=self._env, start_new_session=True)
        log.info("worker started (pid %d)", self._process.pid)

    def _watch(self) -> None:
        delay = self._backoff_s
        while not self._stopping.is_set():
            with self._lock:
                process = self._process
            started = time.monotonic()
            code = process.wait()
            if self._stopping.is_set():
                return
            ran_s = time.monotonic() - started
            if ran_s >= self._stable_after_s:
                delay = self._backoff_s
            log.error("worker (pid %d) exited with %s after %.1f s; restarting in %.1f s",
                      process.pid, code, ran_s, delay)
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, self._backoff_max_s)
            self.restarts += 1
            self._spawn()

    def request_stop(self) -> None:
        """Begin stopping without waiting: no more restarts, SIGTERM to the worker's group.
        Called from serve's signal handler, so it takes no lock; :meth:`stop` then waits."""
        self._stopping.set()
        self._terminate(self._process)

    def _terminate(self, process: subprocess.Popen | None) -> None:
        """SIGTERM to ``process``'s group, once per process (a second one would cut Celery's
        soft shutdown short)."""
        if process is not None and process is not self._terminated and process.poll() is None:
            self._terminated = process
            _signal_group(process, signal.SIGTERM)

    def stop(self) -> int | None:
        """Stop the worker (SIGTERM to its group unless :meth:`request_stop` sent it, SIGKILL
        after the timeout); its exit code."""
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is None:
            return None
        self._terminate(process)  # also a worker started just before the stop began
        if process.poll() is None:
            try:
                process.wait(timeout=self._stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("worker (pid %d) still running %.0f s after SIGTERM: killing it",
                            process.pid, self._stop_timeout_s)
                _signal_group(process, signal.SIGKILL)
                process.wait()
        _signal_group(process, signal.SIGKILL)  # pool children left behind by the worker
        self._thread.join(timeout=5)
        return process.returncode


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
