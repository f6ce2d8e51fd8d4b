"""Table models. The job row is the source of truth for every job's state.

Every corpus, model and job carries a ``tenant_id``; ids are random hex (see app.core.ids).
JSON columns hold small documents (statistics, options, spectra, timings, metrics); arrays
live in artifact folders whose checksum is recorded here.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.core.db import UTCDateTime, utcnow

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL_JOB_STATES = ("succeeded", "failed", "cancelled")
JOB_KINDS = ("ingest", "fit")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime}


class CorpusRow(Base):
    __tablename__ = "corpora"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    checksum: Mapped[str] = mapped_column(String(64))
    n_documents: Mapped[int] = mapped_column(Integer)
    vocabulary_size: Mapped[int] = mapped_column(Integer)
    stats: Mapped[dict[str, Any]]
    options: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    corpus_id: Mapped[str] = mapped_column(ForeignKey("corpora.id", ondelete="RESTRICT"), index=True)
    job_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|ready|failed|cancelled
    # The request as submitted ("auto" allowed); n_topics/alpha0 hold the fitted values.
    params: Mapped[dict[str, Any]]
    n_topics: Mapped[int | None] = mapped_column(Integer)
    alpha0: Mapped[float | None] = mapped_column(Float)
    seed: Mapped[int] = mapped_column(Integer)
    checksum: Mapped[str | None] = mapped_column(String(64))
    alpha: Mapped[list[Any] | None]
    n_dropped_docs: Mapped[int | None] = mapped_column(Integer)
    m2_eigenvalues: Mapped[list[Any] | None]
    tensor_eigenvalues: Mapped[list[Any] | None]
    timings: Mapped[dict[str, Any] | None]
    diagnostics: Mapped[dict[str, Any] | None]
    quality: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    # A person's names for topics: {"<topic index>": label} (migration 0003_topic_labels).
    topic_labels: Mapped[dict[str, Any] | None]


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("tenant_id", "idempotency_key", name="uq_jobs_tenant_idempotency"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    queue: Mapped[str] = mapped_column(String(128))
    params: Mapped[dict[str, Any]]
    corpus_id: Mapped[str | None] = mapped_column(String(64), index=True)
    model_id: Mapped[str | None] = mapped_column(String(64), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))

    stage: Mapped[str | None] = mapped_column(String(64))
    stage_done: Mapped[int] = mapped_column(Integer, default=0)
    stage_total: Mapped[int] = mapped_column(Integer, default=0)
    stage_started_at: Mapped[datetime | None]
    stage_timings: Mapped[dict[str, Any]] = mapped_column(default=dict)

    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None]
    soft_time_limit_s: Mapped[int] = mapped_column(Integer)
    hard_time_limit_s: Mapped[int] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WorkerRow(Base):
    """A worker's heartbeat: how /health knows which workers (and GPUs) are up."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    queues: Mapped[list[Any]]
    gpu: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class ApiKeyRow(Base):
    """An API key: its public id, its tenant and an HMAC-SHA256 of its secret (never the secret)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    salt: Mapped[str] = mapped_column(String(64))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
