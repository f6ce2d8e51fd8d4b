"""Job rows from the API's side: create (with idempotency), read, list, cancel.

A job is committed before its task is enqueued, so a worker never receives an id the
database does not know yet. The worker side (lease, progress, outcome) is workers.jobs.
"""
from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.api_errors import ApiError
from app.core.broker import enqueue
from app.core.context import ServiceContext
from app.core.db import transaction, utcnow
from app.core.ids import new_id
from app.core.limits import check_job_admission
from app.core.tables import FINAL_JOB_STATES, JobRow, ModelRow
from app.core.tenant_queries import get_owned

log = logging.getLogger(__name__)


def request_hash(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def new_job(ctx: ServiceContext, *, tenant_id: str, kind: str, queue: str, params: dict[str, Any],
            idempotency_key: str | None = None, payload_hash: str | None = None, **fields) -> JobRow:
    settings = ctx.settings
    return JobRow(
        id=new_id(), tenant_id=tenant_id, kind=kind, state="queued", queue=queue, params=params,
        idempotency_key=idempotency_key, request_hash=payload_hash, stage=None, stage_done=0, stage_total=0,
        stage_timings={}, attempts=0, max_attempts=settings.job_max_attempts,
        soft_time_limit_s=settings.job_soft_time_limit_s, hard_time_limit_s=settings.job_hard_time_limit_s,
        cancel_requested=False, **fields,
    )


def find_idempotent(session: Session, tenant_id: str, key: str, payload_hash: str) -> JobRow | None:
    """The job created earlier with ``key``; 422 if that key came with a different request."""
    job = session.scalar(select(JobRow).where(JobRow.tenant_id == tenant_id, JobRow.idempotency_key == key))
    if job is not None and job.request_hash != payload_hash:
        raise ApiError(422, "idempotency_key_reused",
                       f"Idempotency-Key {key!r} was already used with a different request")
    return job


def submit(ctx: ServiceContext, job: JobRow, task_name: str, extra_rows: list = ()) -> JobRow:
    """Commit ``job`` (and rows created with it), then enqueue its task.

    With an idempotency key already used for the same request the earlier job is returned
    and nothing is enqueued (nor are ``extra_rows`` stored).
    """
    if job.idempotency_key:
        with transaction(ctx.sessions) as session:
            existing = find_idempotent(session, job.tenant_id, job.idempotency_key, job.request_hash)
        if existing is not None:
            return existing
    try:
        with transaction(ctx.sessions) as session:
            check_job_admission(session, ctx.settings, job.tenant_id)
            session.add(job)
            session.flush()  # the job row first: the model row refers to it by id
            session.add_all(extra_rows)
    except IntegrityError:
        if not job.idempotency_key:
            raise
        with transaction(ctx.sessions) as session:  # lost a race with the same key
            existing = find_idempotent(session, job.tenant_id, job.idempotency_key, job.request_hash)
        if existing is None:
            raise
        return existing
    try:
        enqueue(ctx.celery, task_name, job.id, job.queue)
    except Exception as exc:  # broker down: the job must not sit queued forever
        log.error("could not enqueue job %s", job.id, exc_info=True)
        mark_final(ctx, job.id, "failed", "broker_unavailable",
                   f"could not enqueue the job ({exc.__class__.__name__}: the task queue is unreachable)",
                   release_idempotency_key=True)
        raise ApiError(503, "broker_unavailable", "the task queue is unreachable; try again later",
                       headers={"Retry-After": str(ctx.settings.retry_after_s)}) from exc
    return job


def mark_final(ctx: ServiceContext, job_id: str, state: str, code: str | None, message: str | None, *,
               release_idempotency_key: bool = False) -> None:
    """Finish a job that is not final yet; ``release_idempotency_key`` frees its key, so a
    retry of the same request (after a failed enqueue) creates a new job."""
    with transaction(ctx.sessions) as session:
        job = session.get(JobRow, job_id)
        if job is not None and job.state not in FINAL_JOB_STATES:
            finish_job(session, job, state, code, message)
        if job is not None and release_idempotency_key:
            job.idempotency_key = None


def finish_job(session: Session, job: JobRow, state: str, code: str | None = None, message: str | None = None) -> None:
    """Move ``job`` to a final state and its model (if any) with it."""
    now = utcnow()
    job.state = state
    job.error_code = code
    job.error_message = message
    job.finished_at = now
    job.lease_owner = None
    job.lease_expires_at = None
    if job.model_id and state != "succeeded":
        model = session.get(ModelRow, job.model_id)
        if model is not None:
            model.status = state
            model.finished_at = now


def get_job(session: Session, tenant_id: str, job_id: str) -> JobRow:
    return get_owned(session, JobRow, tenant_id, job_id, "job")


def cancel_job(ctx: ServiceContext, tenant_id: str, job_id: str) -> JobRow:
    """Cancel a queued job at once; ask a running one to stop at its next progress report."""
    with transaction(ctx.sessions) as session:
        job = get_job(session, tenant_id, job_id)
        if job.state in FINAL_JOB_STATES:
            raise ApiError(409, "job_finished", f"job {job_id!r} is already {job.state}; it cannot be cancelled")
        job.cancel_requested = True
        if job.state == "queued":
            finish_job(session, job, "cancelled", "cancelled", "cancelled before it started")
        return job


def job_percent(job: JobRow) -> float:
    if job.state == "succeeded":
        return 100.0
    if job.stage_total <= 0:
        return 0.0
    return round(100.0 * min(job.stage_done, job.stage_total) / job.stage_total, 1)
