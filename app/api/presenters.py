"""Table rows -> public response bodies."""
from __future__ import annotations

from app.api.schemas import CorpusPublic, JobPublic, ModelPublic, ProgressPublic
from app.core.tables import CorpusRow, JobRow, ModelRow
from app.services.job_service import job_percent


def job_public(job: JobRow) -> JobPublic:
    return JobPublic(
        id=job.id, kind=job.kind, state=job.state,
        progress=ProgressPublic(stage=job.stage, done=job.stage_done, total=job.stage_total, percent=job_percent(job)),
        stage_timings=job.stage_timings or {}, attempts=job.attempts, max_attempts=job.max_attempts,
        cancel_requested=job.cancel_requested, error_code=job.error_code, error_message=job.error_message,
        corpus_id=job.corpus_id, model_id=job.model_id, created_at=job.created_at, started_at=job.started_at,
        finished_at=job.finished_at,
    )


def corpus_public(row: CorpusRow) -> CorpusPublic:
    return CorpusPublic(id=row.id, corpus_id=row.id, name=row.name, checksum=row.checksum, n_documents=row.n_documents,
                        vocabulary_size=row.vocabulary_size, stats=row.stats, options=row.options,
                        created_at=row.created_at)


def model_public(row: ModelRow) -> ModelPublic:
    return ModelPublic(
        id=row.id, corpus_id=row.corpus_id, job_id=row.job_id, status=row.status, params=row.params,
        n_topics=row.n_topics, alpha0=row.alpha0, seed=row.seed, alpha=row.alpha, n_dropped_docs=row.n_dropped_docs,
        m2_eigenvalues=row.m2_eigenvalues, tensor_eigenvalues=row.tensor_eigenvalues, timings=row.timings,
        diagnostics=row.diagnostics, quality=row.quality, created_at=row.created_at, finished_at=row.finished_at,
    )
