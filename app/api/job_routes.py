"""/v1/jobs: poll, list and cancel jobs."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query

from app.api.deps import MAX_OFFSET, Context, SessionDep, Tenant, error_responses
from app.api.presenters import job_public
from app.api.schemas import JobList, JobPublic
from app.core.tables import JobRow
from app.core.tenant_queries import list_owned
from app.services.job_service import cancel_job, get_job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("", response_model=JobList, summary="List jobs, newest first")
def list_all(session: SessionDep, tenant: Tenant,
             state: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None,
             kind: Literal["ingest", "fit"] | None = None,
             offset: int = Query(0, ge=0, le=MAX_OFFSET), limit: int = Query(50, ge=1, le=500)) -> JobList:
    jobs = list_owned(session, JobRow, tenant, offset=offset, limit=limit, state=state, kind=kind)
    return JobList(jobs=[job_public(j) for j in jobs])


@router.get("/{job_id}", response_model=JobPublic, responses=error_responses(404),
            summary="A job's state, stage, percent, timings, attempts and failure message")
def read(job_id: str, session: SessionDep, tenant: Tenant) -> JobPublic:
    return job_public(get_job(session, tenant, job_id))


@router.post("/{job_id}/cancel", response_model=JobPublic, responses=error_responses(404, 409),
             summary="Cancel a queued job now, or a running one at its next stage boundary")
def cancel(job_id: str, ctx: Context, tenant: Tenant) -> JobPublic:
    return job_public(cancel_job(ctx, tenant, job_id))
