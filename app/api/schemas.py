"""Request and response bodies of the public API (separate from the table models)."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api.fit_options import FitOptions


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable error code, e.g. not_found, validation_error.")
    message: str = Field(description="What went wrong, for a person.")


class ErrorPublic(BaseModel):
    error: ErrorDetail


class ProgressPublic(BaseModel):
    stage: str | None
    done: int
    total: int
    percent: float = Field(description="Percent of the current stage done (100 once the job succeeded).")


class JobPublic(BaseModel):
    id: str
    kind: Literal["ingest", "fit"]
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: ProgressPublic
    stage_timings: dict[str, float] = Field(description="Seconds spent in each finished stage.")
    attempts: int
    max_attempts: int
    cancel_requested: bool
    error_code: str | None
    error_message: str | None = Field(description="Why the job failed or was cancelled.")
    corpus_id: str | None
    model_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobList(BaseModel):
    jobs: list[JobPublic]


class CorpusPublic(BaseModel):
    id: str
    corpus_id: str = Field(description="The same as id: a 201 and a 202 upload both answer corpus_id.")
    name: str | None
    checksum: str
    n_documents: int
    vocabulary_size: int
    stats: dict[str, Any]
    options: dict[str, Any]
    created_at: datetime


class CorpusList(BaseModel):
    corpora: list[CorpusPublic]


class CorpusAccepted(BaseModel):
    """202: a large upload is ingested by a worker; poll the job."""

    corpus_id: str
    job: JobPublic


class Vocabulary(BaseModel):
    corpus_id: str
    offset: int
    total: int
    words: list[str]


class ModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    corpus_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    n_topics: Annotated[int, Field(strict=True)] | Literal["auto"] = Field(description="Number of topics, or 'auto'.")
    alpha0: Annotated[float, Field(strict=True, gt=0, le=1000, allow_inf_nan=False)] | Literal["auto"] = Field(
        default=1.0, description="Dirichlet concentration sum(alpha), in (0, 1000], or 'auto'.")
    seed: Annotated[int, Field(strict=True)] = Field(default=0, ge=0, le=2**32 - 1)
    heldout_fraction: Annotated[float, Field(strict=True)] = Field(default=0.1, ge=0.0, le=0.5, description=(
        "Share of documents held out of the fit to measure quality (NPMI, held-out likelihood); "
        "0 fits on every document and skips the measures."))
    options: FitOptions = Field(default_factory=FitOptions, description="Bounded estimator options.")


class ModelAccepted(BaseModel):
    model_id: str
    job: JobPublic


class ModelPublic(BaseModel):
    id: str
    corpus_id: str
    job_id: str
    status: Literal["pending", "ready", "failed", "cancelled"]
    params: dict[str, Any] = Field(description="The request as submitted.")
    n_topics: int | None
    alpha0: float | None = Field(description=(
        "The requested Dirichlet concentration (the chosen one for 'auto'); the fitted alpha may sum to "
        "another value: see alpha_sum."))
    alpha_sum: float | None = Field(default=None, description=(
        "sum(alpha) of the fitted model: refinement re-fits alpha's shape to the documents and its scale on "
        "held-out documents, so it differs from alpha0."))
    heldout: dict[str, Any] | None = Field(default=None, description=(
        "The held-out split (heldout_fraction of the documents, seeded): n_documents measured for quality, "
        "n_fit_documents the model learned from; the refinement's own validation documents (taken from the "
        "fit documents) are n_refinement_validation_documents."))
    seed: int
    alpha: list[float] | None
    n_dropped_docs: int | None
    m2_eigenvalues: list[float] | None
    tensor_eigenvalues: list[float] | None
    timings: dict[str, Any] | None
    diagnostics: dict[str, Any] | None
    quality: dict[str, Any] | None
    created_at: datetime
    finished_at: datetime | None
    topic_labels: dict[str, str] = Field(default_factory=dict, description="A person's names for topics: {topic: label}.")


class ModelList(BaseModel):
    models: list[ModelPublic]


class TopicWord(BaseModel):
    word: str
    weight: float


class TopicPublic(BaseModel):
    topic: int
    alpha: float
    words: list[TopicWord]


class TopicsPublic(BaseModel):
    model_id: str
    topics: list[TopicPublic]


class DocumentTopics(BaseModel):
    doc_id: str
    topics: list[float]


class DocumentsPublic(BaseModel):
    model_id: str
    offset: int
    limit: int
    total: int
    documents: list[DocumentTopics]


class InferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(min_length=1, description="New documents as raw text.")


class InferResponse(BaseModel):
    model_id: str
    doc_topic: list[list[float]] = Field(description="(n_texts, n_topics) topic mixtures, rows sum to 1.")
    n_known_tokens: list[int] = Field(description="Tokens of each text found in the model's vocabulary.")


class PyLDAvisData(BaseModel):
    """The arguments of ``pyLDAvis.prepare(**data)``; rows of both matrices sum to 1."""

    topic_term_dists: list[list[float]] = Field(description="(n_topics, n_terms) topic-word distributions.")
    doc_topic_dists: list[list[float]] = Field(description="(n_documents, n_topics) document mixtures.")
    doc_lengths: list[int] = Field(description="Tokens of each training document (corpus order).")
    vocab: list[str] = Field(description="Terms in column order.")
    term_frequency: list[int] = Field(description="Corpus count of each term.")


class ComponentHealth(BaseModel):
    ok: bool
    detail: str


class WorkerPublic(BaseModel):
    id: str
    queues: list[str]
    gpu: bool
    last_seen: datetime


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded", "stalled", "down"]
    database: ComponentHealth
    broker: ComponentHealth
    workers: list[WorkerPublic]
    gpu_worker: bool
    stranded_queues: list[str] = Field(default_factory=list,
                                       description="Queues holding queued jobs that no live worker consumes.")
