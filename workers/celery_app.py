"""The worker's Celery app: the shared configuration plus the (thin) tasks.

Built by :func:`create_worker_app` from settings; nothing happens at import time. Tasks
carry a job id only; the logic is in workers.jobs / workers.fit / workers.handlers.
"""
from __future__ import annotations

import logging

from celery import Celery
from sqlalchemy.exc import OperationalError

from app.core.broker import FIT_TASK, INGEST_TASK, enqueue, make_celery
from app.core.context import ServiceContext
from workers.heartbeat import worker_id
from workers.jobs import run_job

log = logging.getLogger(__name__)

HARD_LIMIT_BACKSTOP_S = 10


def create_worker_app(ctx: ServiceContext, handlers: dict | None = None) -> Celery:
    """A Celery app with the fit and ingest tasks bound to ``ctx``."""
    from workers.handlers import HANDLERS

    handlers = handlers or HANDLERS
    celery = make_celery(ctx.settings)

    def _run(task, job_id: str) -> None:
        outcome = run_job(ctx, job_id, worker_id(), handlers)
        log.info("job %s -> %s", job_id, outcome.state)
        if outcome.retry_in is not None:
            raise task.retry(countdown=outcome.retry_in, max_retries=None)

    # run_job records every outcome in the job row; only a database outage escapes it, and
    # then the task itself is retried with backoff (the lease keeps it from running twice).
    task_options = dict(bind=True, acks_late=True, ignore_result=True, autoretry_for=(OperationalError,),
                        retry_backoff=ctx.settings.retry_backoff_s or True,
                        retry_backoff_max=ctx.settings.retry_backoff_max_s, max_retries=10,
                        # The LeaseGuard enforces the hard limit (and names it in the job); this
                        # is the pool's backstop for a prefork child that ignores it.
                        time_limit=ctx.settings.job_hard_time_limit_s + HARD_LIMIT_BACKSTOP_S)

    @celery.task(name=FIT_TASK, **task_options)
    def fit_model(self, job_id: str) -> None:
        _run(self, job_id)

    @celery.task(name=INGEST_TASK, **task_options)
    def ingest_corpus(self, job_id: str) -> None:
        _run(self, job_id)

    return celery


def requeue_job(ctx: ServiceContext, celery: Celery, job) -> None:
    """Send a job's task again (after the reaper found its worker gone)."""
    task = FIT_TASK if job.kind == "fit" else INGEST_TASK
    enqueue(celery, task, job.id, job.queue)
