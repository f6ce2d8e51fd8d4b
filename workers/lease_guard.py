"""Keeps a running job's lease alive and enforces its hard time limit.

The lease is short (``JOB_LEASE_S``) and renewed by this thread while the job runs, so a
killed worker is noticed within one lease: the reconciler (workers.jobs.reap_expired_leases)
then sends the job again. The hard limit is enforced here, whatever the pool: Celery's own
``time_limit`` kills only prefork children and is not enforced at all under the solo pool,
and a thread busy in NumPy cannot be interrupted. So at the limit the job is failed with
the limit named and the process running it exits; a prefork parent replaces its child, a
solo worker must be restarted by its supervisor (systemd, compose ``restart:``).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import update

from app.core.context import ServiceContext
from app.core.db import transaction, utcnow
from app.core.tables import JobRow
from app.services.job_service import finish_job

log = logging.getLogger(__name__)

HARD_LIMIT_EXIT_CODE = 75


def hard_limit_message(limit_s: float) -> str:
    return f"job ran past its hard time limit of {limit_s:g} s (JOB_HARD_TIME_LIMIT_S); it was stopped"


def _exit_process() -> None:
    os._exit(HARD_LIMIT_EXIT_CODE)


class LeaseGuard:
    """A daemon thread renewing the lease of job ``job_id`` held by ``worker_id``.

    Every ``lease_s / 3`` seconds it extends ``lease_expires_at`` to now + ``lease_s``
    (only while the job is still running under this owner). Once ``hard_limit_s`` has
    passed since :meth:`start` without :meth:`stop`, it fails the job (error ``time_limit``)
    if it is still ours and calls ``on_hard_limit`` (default: exit this process at once)
    in every case: a job cancelled, deleted or taken over meanwhile may still be running here.
    """

    def __init__(self, ctx: ServiceContext, job_id: str, worker_id: str, hard_limit_s: float, *,
                 on_hard_limit: Callable[[], None] = _exit_process, clock: Callable[[], float] = time.monotonic):
        self._ctx, self._job_id, self._owner = ctx, job_id, worker_id
        self._lease_s = float(ctx.settings.job_lease_s)
        self._hard_limit_s = float(hard_limit_s)
        self._on_hard_limit = on_hard_limit
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)
        self._deadline = 0.0

    def __enter__(self) -> "LeaseGuard":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self._deadline = self._clock() + self._hard_limit_s
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        interval = max(self._lease_s / 3.0, 0.05)
        renewing = True
        while not self._stop.wait(min(interval, max(self._deadline - self._clock(), 0.0))):
            if self._clock() >= self._deadline:
                self._enforce_hard_limit()
                return
            if not renewing:
                continue
            try:
                # Finished, cancelled, deleted or taken over: stop renewing, but keep the
                # hard limit: the work may still be running in this process until stop().
                renewing = self.renew()
            except Exception:  # a database hiccup: try again; the lease has slack
                log.warning("could not renew the lease of job %s", self._job_id, exc_info=True)

    def renew(self) -> bool:
        """Extend the lease; False when the job is no longer running under this owner."""
        now = utcnow()
        with transaction(self._ctx.sessions) as session:
            return bool(session.execute(
                update(JobRow).where(JobRow.id == self._job_id, JobRow.lease_owner == self._owner,
                                     JobRow.state == "running")
                .values(lease_expires_at=now + timedelta(seconds=self._lease_s))
                .execution_options(synchronize_session=False)
            ).rowcount)

    def _enforce_hard_limit(self) -> None:
        """Fail the job if it is still ours, then stop the process whatever the row says."""
        if self._stop.is_set():
            return
        try:
            with transaction(self._ctx.sessions) as session:
                job = session.get(JobRow, self._job_id, with_for_update=True)
                if job is not None and job.state == "running" and job.lease_owner == self._owner:
                    finish_job(session, job, "failed", "time_limit", hard_limit_message(job.hard_time_limit_s))
        except Exception:  # the database is down: the process must stop all the same
            log.exception("could not record the hard time limit of job %s", self._job_id)
        if self._stop.is_set():
            return
        log.error("job %s ran past its hard time limit of %g s; stopping this process", self._job_id,
                  self._hard_limit_s)
        self._on_hard_limit()
