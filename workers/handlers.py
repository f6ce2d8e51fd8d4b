"""Job kind -> the function that does its work (called by workers.jobs.run_job)."""
from __future__ import annotations

from app.core.context import ServiceContext
from app.core.tables import JobRow
from app.services.corpus_service import ingest_staged
from workers.fit import run_fit


def run_ingest(ctx: ServiceContext, job: JobRow, progress) -> None:
    """Ingest the staged upload of ``job`` into its pre-assigned corpus id."""
    ingest_staged(ctx, job.params["upload_id"], job.params["corpus_id"], job.tenant_id, progress=progress)


HANDLERS = {"fit": run_fit, "ingest": run_ingest}
