"""Service settings: one pydantic-settings class, built on demand by :func:`get_settings`.

Nothing here is read at import time. Every variable can be set in the environment
(``DATA_DIR``, ``DATABASE_URL``, ``BROKER_URL`` / ``REDIS_URL``, ...); defaults run the
whole service on one machine with no servers: SQLite under ``DATA_DIR`` and kombu's
SQLAlchemy transport on its own SQLite file, ``DATA_DIR/broker.db``.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_MIB = 1 << 20


class Settings(BaseSettings):
    """All configuration of the API, the workers and the CLI."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    data_dir: Path = Field(default=Path("data"), description="Root of corpora, models, uploads, broker files.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite under DATA_DIR.")
    broker_url: str | None = Field(default=None, description=(
        "Celery broker; default sqla+sqlite:///DATA_DIR/broker.db (kombu's SQLAlchemy transport)."))
    redis_url: str | None = Field(default=None, description="Used as the broker when BROKER_URL is unset.")
    default_tenant: str = Field(default="local", description="The tenant of keyless requests in open mode.")

    # Authentication. Open (no keys) is allowed only on a loopback bind; see app.core.security.
    require_api_keys: bool = Field(default=False, description=(
        "REQUIRE_API_KEYS: every /v1 request needs 'Authorization: Bearer <key>'. When false the API "
        "runs open (keyless requests act as DEFAULT_TENANT) and refuses to bind a non-loopback host."))

    # Queues: fit jobs go to the GPU queue, ingestion to the CPU queue.
    gpu_queue: str = "gpu"
    cpu_queue: str = "cpu"
    worker_queues: str = Field(default="gpu,cpu", description="Comma-separated queues a worker consumes.")
    worker_concurrency: int = Field(default=1, ge=1)
    worker_pool: str = Field(default="prefork", description="prefork | solo | threads")
    worker_heartbeat_s: float = Field(default=5.0, gt=0)
    worker_stale_after_s: float = Field(default=30.0, gt=0)

    # Job limits. The broker's visibility timeout must exceed the hard limit.
    job_soft_time_limit_s: int = Field(default=3300, ge=1)
    job_hard_time_limit_s: int = Field(default=3600, ge=1)
    broker_visibility_timeout_s: int = Field(default=4 * 3600, ge=1)
    job_max_attempts: int = Field(default=3, ge=1)
    retry_backoff_s: float = Field(default=5.0, ge=0)
    retry_backoff_max_s: float = Field(default=300.0, ge=0)
    progress_interval_s: float = Field(default=0.5, ge=0)
    job_lease_s: float = Field(default=60.0, gt=0, description="A running job's lease; its worker renews it.")
    job_requeue_after_s: float = Field(
        default=600.0, gt=0, description="Queued this long untouched: the reconciler sends its task again.")
    enable_test_hooks: bool = Field(default=False, description="Tests only: honour fit option 'test_hook'.")

    # Request and model limits.
    max_body_bytes: int = Field(default=512 * _MIB, ge=1)
    inline_ingest_max_bytes: int = Field(default=4 * _MIB, ge=0)
    min_topics: int = Field(default=2, ge=1)
    max_topics: int = Field(default=1000, ge=1)
    max_infer_documents: int = Field(default=10_000, ge=1)
    # Ingestion limits (wired into app.ingest.IngestLimits) and admission limits for jobs.
    max_documents_per_corpus: int = Field(default=5_000_000, ge=1)
    max_document_bytes: int = Field(default=10 * _MIB, ge=1)
    max_archive_members: int = Field(default=100_000, ge=1)
    max_archive_member_bytes: int = Field(default=512 * _MIB, ge=1)
    max_decompressed_bytes: int = Field(default=4096 * _MIB, ge=1)
    max_upload_total_bytes: int = Field(default=2048 * _MIB, ge=1)
    max_active_jobs_per_tenant: int = Field(default=100, ge=1, description="Queued+running jobs; more -> 429.")
    max_queued_jobs: int = Field(default=10_000, ge=1, description="Queued jobs of all tenants; more -> 503.")
    retry_after_s: int = Field(default=30, ge=1, description="Retry-After sent with 429 and 503 admission refusals.")
    fit_backend: str = Field(default="auto", description="auto | numpy | cupy for fit jobs.")
    gpu_available: bool = Field(default=False, description=(
        "GPU_AVAILABLE: the deployment runs GPU workers, so fits may ask for options.backend='cupy'."))
    fit_memory_budget: int = Field(default=2048 * _MIB, ge=1, description=(
        "FIT_MEMORY_BUDGET: working bytes a fit may need beyond its count matrix, by the worker's "
        "estimate; larger fits fail as bad input."))
    inline_ingest_concurrency: int = Field(default=2, ge=1, le=64, description=(
        "INLINE_INGEST_CONCURRENCY: small uploads ingested in the API process at once; more go to a worker."))
    upload_sweep_age_s: float = Field(default=3600.0, gt=0, description=(
        "Staged uploads older than this and needed by no job are removed when the API starts."))

    # Capacity of one API process, sized together: at most API_MAX_CONCURRENCY requests are
    # handled at once (each holds at most one thread and one database connection at a time),
    # so API_THREADS and DB_POOL_SIZE + DB_MAX_OVERFLOW must cover it (checked below). A
    # request past capacity waits API_QUEUE_WAIT_S for a slot, then answers 503 with
    # Retry-After: API_OVERLOAD_RETRY_AFTER_S.
    api_max_concurrency: int = Field(default=8, ge=1, le=4096, description=(
        "Requests handled at once; the routes are CPU-bound under the GIL, so more in flight only adds latency."))
    api_queue_wait_s: float = Field(default=0.1, ge=0, le=30, description="Wait for a slot before 503.")
    api_overload_retry_after_s: int = Field(default=1, ge=1, le=3600, description="Retry-After of an overload 503.")
    api_threads: int = Field(default=40, ge=1, le=4096, description="Thread pool of sync routes (anyio's limiter).")
    api_max_connections: int = Field(default=1024, ge=1, le=65536, description=(
        "Open connections and requests uvicorn takes at once; past it uvicorn answers 503 itself (without "
        "Retry-After, closing the connection), before parsing the request: a backstop for floods the event "
        "loop could not keep up with. It counts idle keep-alive connections too, so it sits well above "
        "API_MAX_CONCURRENCY: a client with a large connection pool is shed by the API (with Retry-After)."))
    embedded_worker_sched_idle: bool = Field(default=True, description=(
        "EMBEDDED_WORKER_SCHED_IDLE: `serve` runs its worker at idle CPU priority (SCHED_IDLE on Linux, else "
        "nice 19; `worker --idle-priority`): fits use only CPU time the API and other programs leave."))
    embedded_worker_nice: int = Field(default=10, ge=0, le=19, description=(
        "CPU niceness of the worker that `serve` starts when EMBEDDED_WORKER_SCHED_IDLE is off."))
    api_response_cache_bytes: int = Field(default=32 * _MIB, ge=0, le=16 * 1024 * _MIB, description=(
        "API_RESPONSE_CACHE_BYTES: per API process, finished GET topics bodies kept (LRU, total bytes), keyed by "
        "model, top_n and the identity of the artifact's files; 0 turns the cache off."))
    db_pool_size: int = Field(default=16, ge=1, le=1000)
    db_max_overflow: int = Field(default=16, ge=0, le=1000)
    db_pool_timeout_s: float = Field(default=5.0, gt=0, le=300, description="Wait for a pooled connection.")
    api_shutdown_timeout_s: float = Field(default=5.0, ge=0, le=300,
                                          description="On SIGTERM, open requests get this long, then are cancelled.")
    worker_shutdown_timeout_s: float = Field(default=5.0, ge=0, le=3600, description=(
        "On SIGTERM a worker lets running jobs go on this long, then stops them (Celery soft shutdown); "
        "their messages go back to the broker and the lease reaper retries them."))

    @field_validator("job_hard_time_limit_s")
    @classmethod
    def _hard_after_soft(cls, value: int, info) -> int:
        soft = info.data.get("job_soft_time_limit_s")
        if soft is not None and value < soft:
            raise ValueError(f"JOB_HARD_TIME_LIMIT_S={value} must be >= JOB_SOFT_TIME_LIMIT_S={soft}")
        return value

    @field_validator("broker_visibility_timeout_s")
    @classmethod
    def _visibility_after_hard(cls, value: int, info) -> int:
        hard = info.data.get("job_hard_time_limit_s")
        if hard is not None and value <= hard:
            raise ValueError(
                f"BROKER_VISIBILITY_TIMEOUT_S={value} must exceed JOB_HARD_TIME_LIMIT_S={hard}, "
                "or the broker redelivers running tasks"
            )
        return value

    @model_validator(mode="after")
    def _capacity_fits(self) -> "Settings":
        if self.api_threads < self.api_max_concurrency:
            raise ValueError(f"API_THREADS={self.api_threads} must be >= API_MAX_CONCURRENCY={self.api_max_concurrency}")
        if self.db_pool_size + self.db_max_overflow < self.api_max_concurrency:
            raise ValueError(f"DB_POOL_SIZE + DB_MAX_OVERFLOW = {self.db_pool_size + self.db_max_overflow} must be "
                             f">= API_MAX_CONCURRENCY={self.api_max_concurrency}")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'spectral-topics.db').resolve()}"

    @field_validator("broker_url", "redis_url")
    @classmethod
    def _no_filesystem_broker(cls, value: str | None) -> str | None:
        if value and value.startswith("filesystem"):
            raise ValueError("the filesystem broker can hand out half-written messages and is not supported: "
                             "leave BROKER_URL unset for the embedded SQLite broker, or use redis://")
        return value

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or self.redis_url or f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def queues(self) -> list[str]:
        return [q.strip() for q in self.worker_queues.split(",") if q.strip()]


def get_settings(**overrides) -> Settings:
    """Build settings from the environment (plus explicit overrides, e.g. from the CLI)."""
    return Settings(**overrides)
