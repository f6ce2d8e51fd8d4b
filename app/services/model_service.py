"""Topic models from the API's side: submit a fit, read results, infer, export, delete."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.api.fit_options import check_fit_options
from app.api.schemas import ModelCreate, TopicsPublic
from app.artifacts.artifact_files import ArtifactCorrupt, folder_identity, remove_path
from app.artifacts.model_artifact import (
    load_alpha,
    load_doc_topic,
    load_topic_word,
    top_words,
)
from app.artifacts.model_export import ModelExport, export_npz, export_zip, pyldavis_data, topic_labels
from app.core.api_errors import ApiError, not_found
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
        raise _not_ready(model_id, row.status, row.job_id)
    return row


def _not_ready(model_id: str, status: str, job_id: str | None) -> ApiError:
    return ApiError(409, "model_not_ready", f"model {model_id!r} is {status}, not ready (job {job_id})")


def _corpus_missing(corpus_id: str, model_id: str) -> ApiError:
    return ApiError(409, "corpus_missing", f"the corpus {corpus_id!r} of model {model_id!r} is gone")


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
    return _verified_folder(ctx, row.id, row.checksum)[0]


def _verified_folder(ctx: ServiceContext, model_id: str, checksum: str | None) -> tuple[Path, tuple]:
    """(folder, the file identity it was verified at) of a model's artifacts."""
    folder = ctx.layout.model_dir(model_id)
    if not checksum:
        raise ArtifactCorrupt(f"model {model_id} has no recorded checksum")
    return folder, ctx.verified_artifacts.verify(folder, checksum)


def corpus_of(ctx: ServiceContext, row: ModelRow):
    """The model's corpus (409 when it was deleted)."""
    with ctx.sessions() as session:
        corpus = session.get(CorpusRow, row.corpus_id)
    if corpus is None:
        raise _corpus_missing(row.corpus_id, row.id)
    return ctx.corpus(corpus.id, corpus.checksum)


# Built once (an immutable statement; SQLAlchemy caches its compiled form): what GET topics
# needs of the model and its corpus, for one tenant's model.
_TOPICS_QUERY = (
    select(ModelRow.status, ModelRow.job_id, ModelRow.checksum, ModelRow.corpus_id, CorpusRow.id, CorpusRow.checksum)
    .outerjoin(CorpusRow, CorpusRow.id == ModelRow.corpus_id)
    .where(ModelRow.id == bindparam("model_id"), ModelRow.tenant_id == bindparam("tenant_id"))
)


def topics_body(ctx: ServiceContext, tenant_id: str, model_id: str, top_n: int) -> bytes:
    """The JSON body of ``GET /v1/models/{model_id}/topics`` (a ``TopicsPublic``).

    One database query, for the few columns needed: the model must belong to ``tenant_id``
    (404 otherwise, as if missing) and be ready (409), its corpus must exist (409). The
    artifact folder is verified against its recorded checksum (``ArtifactCorrupt`` -> 500)
    at its current file identity (inode, size, mtime of every file), and the body is then
    served from ``ctx.response_cache`` under (model id, checksums, top_n, that identity):
    a replaced or touched file changes the key, so it is verified and read again, never
    served stale. Another tenant never reaches the cache (the ownership check comes first).
    """
    with ctx.engine.connect() as connection:  # a plain read: no ORM session, no row objects
        found = connection.execute(_TOPICS_QUERY, {"model_id": model_id, "tenant_id": tenant_id}).first()
    if found is None:
        raise not_found("model", model_id)
    status, job_id, checksum, corpus_id, corpus_found, corpus_checksum = found
    if status != "ready":
        raise _not_ready(model_id, status, job_id)
    folder, identity = _verified_folder(ctx, model_id, checksum)
    if corpus_found is None:
        raise _corpus_missing(corpus_id, model_id)
    key = ("topics", model_id, checksum, corpus_checksum, top_n, identity)
    body = ctx.response_cache.get(key)
    if body is not None:
        return body
    vocabulary = ctx.corpus(corpus_id, corpus_checksum).vocabulary
    listed = _topic_list(load_topic_word(folder), load_alpha(folder), vocabulary, top_n)
    body = TopicsPublic(model_id=model_id, topics=listed).model_dump_json().encode()
    if folder_identity(folder) == identity:  # unchanged while it was read: safe to keep
        ctx.response_cache.put(key, body)
    return body


def _topic_list(topic_word: np.ndarray, alpha: np.ndarray, vocabulary, top_n: int) -> list[dict[str, Any]]:
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
