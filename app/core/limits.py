"""Configurable limits: ingestion caps from settings, and admission of new jobs.

Admission is checked when a job is submitted: a tenant with ``MAX_ACTIVE_JOBS_PER_TENANT``
queued or running jobs gets 429, and a queue already holding ``MAX_QUEUED_JOBS`` queued jobs
(all tenants) gets 503; both carry ``Retry-After``. The counts are read just before the insert,
so concurrent submissions can overshoot a limit by at most the number of them in flight.
"""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.api_errors import ApiError
from app.core.settings import Settings
from app.core.tables import JobRow
from app.ingest import IngestLimits

ACTIVE_JOB_STATES = ("queued", "running")


def ingest_limits(settings: Settings) -> IngestLimits:
    """The :class:`IngestLimits` the settings ask for."""
    return IngestLimits(
        max_documents=settings.max_documents_per_corpus, max_document_bytes=settings.max_document_bytes,
        max_archive_members=settings.max_archive_members, max_member_bytes=settings.max_archive_member_bytes,
        max_decompressed_bytes=settings.max_decompressed_bytes, max_total_bytes=settings.max_upload_total_bytes,
    )


def check_job_admission(session: Session, settings: Settings, tenant_id: str) -> None:
    """Raise 429 (tenant's active jobs) or 503 (queue length) when a new job would exceed a limit."""
    retry = {"Retry-After": str(settings.retry_after_s)}
    active = session.scalar(select(func.count()).select_from(JobRow).where(
        JobRow.tenant_id == tenant_id, JobRow.state.in_(ACTIVE_JOB_STATES)))
    if active >= settings.max_active_jobs_per_tenant:
        raise ApiError(429, "too_many_active_jobs",
                       f"tenant has {active} queued or running jobs, the limit is "
                       f"MAX_ACTIVE_JOBS_PER_TENANT={settings.max_active_jobs_per_tenant}; retry later",
                       headers=retry)
    queued = session.scalar(select(func.count()).select_from(JobRow).where(JobRow.state == "queued"))
    if queued >= settings.max_queued_jobs:
        raise ApiError(503, "queue_full",
                       f"the job queue holds {queued} queued jobs, the limit is "
                       f"MAX_QUEUED_JOBS={settings.max_queued_jobs}; retry later", headers=retry)
