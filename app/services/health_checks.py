"""Reachability of the database, the broker and the workers (from their heartbeats), and
the queues whose jobs no live worker would take.

The details are for an unauthenticated /health: the kind of component and whether it
answers, never a host, port, path or driver message (those go to the log).
"""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select, text

from app.core.context import ServiceContext
from app.core.db import utcnow
from app.core.tables import JobRow, WorkerRow

log = logging.getLogger(__name__)


def check_database(ctx: ServiceContext) -> tuple[bool, str]:
    try:
        with ctx.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True, f"{ctx.engine.dialect.name} reachable"
    except Exception:  # any driver error means unreachable
        log.warning("health: the database is unreachable", exc_info=True)
        return False, f"{ctx.engine.dialect.name} unreachable"


def check_broker(ctx: ServiceContext, timeout_s: float = 2.0) -> tuple[bool, str]:
    try:
        with ctx.celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout_s)
            transport = connection.transport_cls
        return True, f"{transport} reachable"
    except Exception:
        log.warning("health: the broker is unreachable", exc_info=True)
        return False, "broker unreachable"


def live_workers(ctx: ServiceContext) -> list[WorkerRow]:
    """Workers whose last heartbeat is recent (WORKER_STALE_AFTER_S)."""
    cutoff = utcnow() - timedelta(seconds=ctx.settings.worker_stale_after_s)
    with ctx.sessions() as session:
        return list(session.scalars(select(WorkerRow).where(WorkerRow.last_seen >= cutoff).order_by(WorkerRow.id)))


def stranded_queues(ctx: ServiceContext, workers: list[WorkerRow]) -> list[str]:
    """This deployment's queues (GPU_QUEUE, CPU_QUEUE) that hold queued jobs while no live
    worker consumes them: those jobs wait for nothing, so /health answers 503."""
    own = {ctx.settings.gpu_queue, ctx.settings.cpu_queue}
    served = {queue for worker in workers for queue in worker.queues}
    with ctx.sessions() as session:
        waiting = session.scalars(select(JobRow.queue).where(JobRow.state == "queued", JobRow.queue.in_(own))
                                  .distinct())
        return sorted(set(waiting) - served)
