"""Worker heartbeats in the database (what /health reads), the lease reaper, and pruning
of the embedded broker's delivered messages.

The GPU probe runs in a short-lived subprocess, so the worker's own process never
initialises CUDA before its pool forks.
"""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable

from app.core.broker import prune_delivered
from app.core.context import ServiceContext
from app.core.db import transaction, utcnow
from app.core.tables import JobRow, WorkerRow
from workers.fork_guard import ForkGuard
from workers.jobs import reap_expired_leases

log = logging.getLogger(__name__)

_PROBE = "from gpu.backend import gpu_available; print(int(gpu_available()))"


def probe_gpu(timeout_s: float = 60.0) -> bool:
    """True when CuPy sees a CUDA device, asked in a child process (CUDA is not fork-safe)."""
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=timeout_s,
                             check=False)
        return out.stdout.strip().endswith("1")
    except (OSError, subprocess.TimeoutExpired):
        return False


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def beat(ctx: ServiceContext, ident: str, queues: list[str], gpu: bool) -> None:
    now = utcnow()
    with transaction(ctx.sessions) as session:
        row = session.get(WorkerRow, ident)
        if row is None:
            session.add(WorkerRow(id=ident, hostname=socket.gethostname(), queues=queues, gpu=gpu,
                                  started_at=now, last_seen=now))
        else:
            row.last_seen, row.queues, row.gpu = now, queues, gpu


def forget(ctx: ServiceContext, ident: str) -> None:
    with transaction(ctx.sessions) as session:
        row = session.get(WorkerRow, ident)
        if row is not None:
            session.delete(row)


class Heartbeat:
    """A daemon thread: heartbeat every WORKER_HEARTBEAT_S, reap expired leases, prune the
    embedded broker's delivered messages."""

    def __init__(self, ctx: ServiceContext, ident: str, queues: list[str], gpu: bool,
                 requeue: Callable[[JobRow], None]):
        self._ctx, self._ident, self._queues, self._gpu, self._requeue = ctx, ident, queues, gpu, requeue
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._fork_guard = ForkGuard()  # the pool never forks in the middle of a beat's transactions

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            forget(self._ctx, self._ident)
        except Exception:  # the database may already be gone at shutdown
            log.warning("could not remove heartbeat row %s", self._ident, exc_info=True)

    def _run(self) -> None:
        while True:
            try:
                with self._fork_guard:
                    beat(self._ctx, self._ident, self._queues, self._gpu)
                    reap_expired_leases(self._ctx, self._requeue)
                    prune_delivered(self._ctx.settings)
            except Exception:
                log.warning("heartbeat failed", exc_info=True)
            if self._stop.wait(self._ctx.settings.worker_heartbeat_s):
                return
