"""The Celery application as a client and as a worker share this configuration.

The API only sends tasks by name (it never imports the task code or gpu/); workers add
their tasks to the same configuration (see workers.celery_app). Results are ignored: the
job row in the database is the source of truth.

The embedded broker (no BROKER_URL / REDIS_URL) is kombu's SQLAlchemy transport on its own
SQLite file, ``DATA_DIR/broker.db`` (WAL journal, 30 s busy timeout). A message is one row,
inserted in one transaction, so a consumer can never read a half-written message (kombu's
filesystem transport could: the file exists before it is written). A consumer takes a row
under ``BEGIN IMMEDIATE`` and marks it invisible, so no two consumers get the same row.
kombu never makes a taken row visible again (unacknowledged messages are restored on a
clean shutdown as new rows), so :func:`prune_delivered` deletes taken rows. A consumer
killed between taking a row and leasing its job loses that message; the job stays queued
and the reconciler sends it again after JOB_REQUEUE_AFTER_S (as after a Redis restart).
"""
from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from celery import Celery
from kombu import Exchange, Queue

from app.core.settings import Settings

FIT_TASK = "spectral_topics.fit_model"
INGEST_TASK = "spectral_topics.ingest_corpus"


SQLITE_PREFIX = "sqla+sqlite:///"
BUSY_TIMEOUT_S = 30.0
_MESSAGE_TABLE = "kombu_message"


def sqlite_broker_path(settings: Settings) -> Path | None:
    """The SQLite file of the embedded broker, or None for any other broker."""
    url = settings.resolved_broker_url
    return Path(url[len(SQLITE_PREFIX):]) if url.startswith(SQLITE_PREFIX) else None


def _open_sqlite(path: Path, **kwargs) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, **kwargs)


def _sqlite_connector(path: Path):
    """A DB-API connection factory for kombu's engine: WAL with ``synchronous=NORMAL``
    (a commit is durable against a crashed process, not against a power cut, like the
    service's own SQLite store), a 30 s busy timeout, usable from any thread."""
    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection
    return connect


def broker_transport_options(settings: Settings) -> dict:
    path = sqlite_broker_path(settings)
    if path is not None:
        # WAL is a property of the file: set once here, every later connection uses it.
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(_open_sqlite(path)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
        # kombu passes these to sqlalchemy.create_engine (and accepts no other keys).
        return {"creator": _sqlite_connector(path)}
    # Redis / SQS style brokers redeliver unacknowledged tasks after this many seconds:
    # it must exceed the hard time limit (checked in Settings).
    return {"visibility_timeout": settings.broker_visibility_timeout_s}


def _queue(name: str) -> Queue:
    """A queue bound to its own direct exchange by its own name, so routing never mixes queues."""
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def make_celery(settings: Settings, name: str = "spectral_topics") -> Celery:
    """A Celery app configured for ``settings`` (no tasks registered)."""
    celery = Celery(name, broker=settings.resolved_broker_url, set_as_current=False)
    celery.conf.update(
        broker_transport_options=broker_transport_options(settings),
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.job_hard_time_limit_s,
        task_soft_time_limit=settings.job_soft_time_limit_s,
        task_queues=[_queue(settings.gpu_queue), _queue(settings.cpu_queue)],
        task_default_queue=settings.cpu_queue,
        task_default_exchange=settings.cpu_queue,
        task_default_routing_key=settings.cpu_queue,
        task_routes={FIT_TASK: {"queue": settings.gpu_queue}, INGEST_TASK: {"queue": settings.cpu_queue}},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        # SIGTERM: running tasks get this long, then the worker stops them (cold shutdown).
        worker_soft_shutdown_timeout=settings.worker_shutdown_timeout_s,
        timezone="UTC",
    )
    return celery


def enqueue(celery: Celery, task_name: str, job_id: str, queue: str) -> None:
    """Send a task carrying only the job id (call after the job row is committed)."""
    celery.send_task(task_name, args=[job_id], queue=queue, exchange=queue, routing_key=queue)


def prepare_broker(celery: Celery) -> None:
    """Create the broker's queues (and, embedded, its tables) once, before several
    processes start consuming, so they never race to create them."""
    with celery.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in celery.conf.task_queues:
            queue.bind(channel).declare()


def prune_delivered(settings: Settings) -> int:
    """Delete the embedded broker's taken messages (rows kombu never reads again); returns
    how many. A no-op for other brokers."""
    path = sqlite_broker_path(settings)
    if path is None or not path.exists():
        return 0
    with contextlib.closing(_open_sqlite(path)) as connection:
        try:
            return connection.execute(f"DELETE FROM {_MESSAGE_TABLE} WHERE visible = 0").rowcount
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0
            raise
