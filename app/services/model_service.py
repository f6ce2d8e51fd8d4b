"""Topic models from the API's side: submit a fit, read results, infer, export, delete."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.api.fit_options import check_fit_options
from app.api.schemas import ModelCreate
from app.artifacts.artifact_files import ArtifactCorrupt, remove_path
from app.artifacts.model_artifact import (
    load_alpha,
    load_doc_topic,
    load_topic_word,
    top_words,
)
from app.artifacts.model_export import ModelExport, export_npz, export_zip, pyldavis_data, topic_labels
from app.core.api_errors import ApiError
from app.core.broker import FIT_TASK
from app.core.context import ServiceContext
from app.core.db import transaction
from app.core.ids import new_id
from app.core.tables import FINAL_JOB_STATES, CorpusRow, JobRow, ModelRow
from app.core.tenant_queries import get_owned
from app.ingest import vectorize_texts
from app.services.corpus_service import get_corpus
from app.services.job_service import finish_job, new_job, request_hash, submit


def check_model_request(ctx: ServiceContext, request: ModelCreate, vocabulary_size: int) -> None:
    """422 with the allowed range for n_topics; alpha0 must be positive."""
    settings = ctx.settings
    if request.n_topics != "auto":
        upper = min(settings.max_topics, vocabulary_size - 1)
        if not settings.min_topics <= request.n_topics <= upper:
            raise ApiError(422, "n_topics_out_of_range",
                           f"n_topics={request.n_topics} is out of range: allowed {settings.min_topics}..{upper} "
                           f"(MAX_TOPICS={settings.max_topics}, corpus vocabulary size {vocabulary_size})")
    if request.alpha0 != "auto" and not (np.isfinite(request.alpha0) and request.alpha0 > 0):
        raise ApiError(422, "alpha0_out_of_range", f"alpha0={request.alpha0} must be a finite number > 0")
    check_fit_options(settings, request.options, request.n_topics)


def submit_fit(ctx: ServiceContext, tenant_id: str, request: ModelCreate,
               idempotency_key: str | None) -> JobRow:
    """Create the model row and its fit job (idempotent per key), then enqueue."""
    with ctx.sessions() as session:
        corpus = get_corpus(session, tenant_id, request.corpus_id)
    check_model_request(ctx, request, corpus.vocabulary_size)
    params = request.model_dump(mode="json")
    model_id = new_id()
    job = new_job(ctx, tenant_id=tenant_id, kind="fit", queue=ctx.settings.gpu_queue, params=params,
                  idempotency_key=idempotency_key, payload_hash=request_hash(params),
                  corpus_id=corpus.id, model_id=model_id)
    model = ModelRow(
        id=model_id, tenant_id=tenant_id, corpus_id=corpus.id, job_id=job.id, status="pending", params=params,
        n_topics=None if request.n_topics == "auto" else request.n_topics,
        alpha0=None if request.alpha0 == "auto" else float(request.alpha0), seed=request.seed,
    )
    try:
        return submit(ctx, job, FIT_TASK, [model])
    except IntegrityError:  # the corpus was deleted meanwhile (the foreign key holds): 404 as if before
        with ctx.sessions() as session:
            get_corpus(session, tenant_id, request.corpus_id)
        raise


def get_model(session: Session, tenant_id: str, model_id: str) -> ModelRow:
    return get_owned(session, ModelRow, tenant_id, model_id, "model")


def ready_model(session: Session, tenant_id: str, model_id: str) -> ModelRow:
    row = get_model(session, tenant_id, model_id)
    if row.status != "ready":
        raise ApiError(409, "model_not_ready", f"model {model_id!r} is {row.status}, not ready (job {row.job_id})")
    return row


def load_ready_model(ctx: ServiceContext, tenant_id: str, model_id: str) -> ModelRow:
    """:func:`ready_model` in a session of its own, closed before the caller reads artifacts
    from disk (a request never holds a pooled connection across work that needs none)."""
    with ctx.sessions() as session:
        return ready_model(session, tenant_id, model_id)


def delete_model(ctx: ServiceContext, tenant_id: str, model_id: str) -> None:
    """Delete the row and the files; a queued or running fit is cancelled first."""
    with transaction(ctx.sessions) as session:
        row = get_model(session, tenant_id, model_id)
        job = session.get(JobRow, row.job_id)
        if job is not None and job.state not in FINAL_JOB_STATES:
            job.cancel_requested = True
            finish_job(session, job, "cancelled", "cancelled", "the model was deleted")
        session.delete(row)
    remove_path(ctx.layout.model_dir(model_id))


def model_folder(ctx: ServiceContext, row: ModelRow) -> Path:
    """The folder of a ready model, verified against its recorded checksum (re-hashed only
    when one of its files changed); ArtifactCorrupt (500 artifact_corrupt) otherwise."""
    folder = ctx.layout.model_dir(row.id)
    if not row.checksum:
        raise ArtifactCorrupt(f"model {row.id} has no recorded checksum")
    ctx.verified_artifacts.verify(folder, row.checksum)
    return folder


def corpus_of(ctx: ServiceContext, row: ModelRow):
    """The model's corpus (409 when it was deleted)."""
    with ctx.sessions() as session:
        corpus = session.get(CorpusRow, row.corpus_id)
    if corpus is None:
        raise ApiError(409, "corpus_missing", f"the corpus {row.corpus_id!r} of model {row.id!r} is gone")
    return ctx.corpus(corpus.id, corpus.checksum)


def ready_model_topics(ctx: ServiceContext, tenant_id: str, model_id: str, top_n: int) -> list[dict[str, Any]]:
    """:func:`topics` of a ready model of the tenant (404 / 409 otherwise)."""
    return topics(ctx, load_ready_model(ctx, tenant_id, model_id), top_n)


def topics(ctx: ServiceContext, row: ModelRow, top_n: int) -> list[dict[str, Any]]:
    folder = model_folder(ctx, row)
    topic_word = load_topic_word(folder)
    alpha = load_alpha(folder)
    vocabulary = corpus_of(ctx, row).vocabulary
    return [
        {"topic": i, "alpha": float(alpha[i]), "words": [{"word": w, "weight": p} for w, p in words]}
        for i, words in enumerate(top_words(topic_word, vocabulary, top_n))
    ]


def documents(ctx: ServiceContext, row: ModelRow, offset: int, limit: int) -> tuple[int, list[dict[str, Any]]]:
    doc_topic = load_doc_topic(model_folder(ctx, row))
    doc_ids = corpus_of(ctx, row).doc_ids
    total = doc_topic.shape[0]
    block = np.asarray(doc_topic[offset : offset + limit], dtype=np.float64)
    return total, [{"doc_id": str(doc_ids[offset + i]), "topics": [float(x) for x in r]} for i, r in enumerate(block)]


def infer(ctx: ServiceContext, row: ModelRow, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) topic mixtures of new texts, tokenized with the corpus' options and vocabulary;
    also the number of known tokens per text."""
    from gpu.inference import infer_doc_topic

    if len(texts) > ctx.settings.max_infer_documents:
        raise ApiError(422, "too_many_texts", f"{len(texts)} texts sent; at most {ctx.settings.max_infer_documents} "
                                              "per request (MAX_INFER_DOCUMENTS)")
    folder = model_folder(ctx, row)
    corpus = corpus_of(ctx, row)
    counts = vectorize_texts(texts, corpus.vocabulary, corpus.options)
    doc_topic = infer_doc_topic(counts, load_topic_word(folder), load_alpha(folder))
    return np.asarray(doc_topic), np.asarray(counts.sum(axis=1)).ravel().astype(int)


EXPORT_FORMATS = ("zip", "npz", "pyldavis")


def export_parts(ctx: ServiceContext, row: ModelRow) -> ModelExport:
    """The model's arrays with its corpus' vocabulary, document ids, lengths and term counts."""
    folder = model_folder(ctx, row)
    corpus = corpus_of(ctx, row)
    topic_word = load_topic_word(folder)
    counts = corpus.counts
    return ModelExport(
        topic_word=topic_word, alpha=load_alpha(folder), doc_topic=np.asarray(load_doc_topic(folder)),
        vocabulary=list(corpus.vocabulary), doc_ids=[str(d) for d in corpus.doc_ids],
        doc_lengths=np.asarray(counts.sum(axis=1)).ravel(), term_frequency=np.asarray(counts.sum(axis=0)).ravel(),
        labels=topic_labels(getattr(row, "topic_labels", None), topic_word.shape[0]),
    )


def export(ctx: ServiceContext, row: ModelRow, top_n: int | None, fmt: str = "zip") -> bytes | dict[str, Any]:
    """``zip`` (CSV files, ``top_n`` terms per topic: all when None), ``npz`` (bytes) or
    ``pyldavis`` (a JSON-ready dict for ``pyLDAvis.prepare``)."""
    parts = export_parts(ctx, row)
    if fmt == "npz":
        return export_npz(parts)
    if fmt == "pyldavis":
        return pyldavis_data(parts)
    return export_zip(parts, top_n=top_n)
