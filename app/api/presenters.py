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


def _heldout(row: ModelRow) -> tuple[dict | None, dict | None]:
    """(the held-out summary, diagnostics): the estimator's own validation split is renamed in
    the diagnostics so that one model never shows two different 'n_heldout_docs'."""
    diagnostics = dict(row.diagnostics) if isinstance(row.diagnostics, dict) else row.diagnostics
    refine_docs = diagnostics.pop("n_heldout_docs", None) if isinstance(diagnostics, dict) else None
    if refine_docs is not None:
        diagnostics["n_refinement_validation_documents"] = refine_docs
    if row.status != "ready":
        return None, diagnostics
    quality = row.quality or {}
    summary = {"fraction": (row.params or {}).get("heldout_fraction", 0.0),
               "n_documents": quality.get("n_heldout_docs", 0), "n_fit_documents": quality.get("n_train_docs"),
               "n_refinement_validation_documents": refine_docs}
    return summary, diagnostics


def _requested_alpha0(row: ModelRow) -> float | None:
    requested = (row.params or {}).get("alpha0")
    return float(requested) if isinstance(requested, (int, float)) else row.alpha0


def model_public(row: ModelRow) -> ModelPublic:
    heldout, diagnostics = _heldout(row)
    return ModelPublic(
        id=row.id, corpus_id=row.corpus_id, job_id=row.job_id, status=row.status, params=row.params,
        n_topics=row.n_topics, alpha0=_requested_alpha0(row), alpha_sum=float(sum(row.alpha)) if row.alpha else None,
        heldout=heldout, seed=row.seed, alpha=row.alpha, n_dropped_docs=row.n_dropped_docs,
        m2_eigenvalues=row.m2_eigenvalues, tensor_eigenvalues=row.tensor_eigenvalues, timings=row.timings,
        diagnostics=diagnostics, quality=row.quality, created_at=row.created_at, finished_at=row.finished_at,
        topic_labels=row.topic_labels or {},
    )
