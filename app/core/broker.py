"""The Celery application as a client and as a worker share this configuration.

The API only sends tasks by name (it never imports the task code or gpu/); workers add
their tasks to the same configuration (see workers.celery_app). Results are ignored: the
job row in the database is the source of truth.
"""
from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from app.core.settings import Settings

FIT_TASK = "spectral_topics.fit_model"
INGEST_TASK = "spectral_topics.ingest_corpus"


def broker_transport_options(settings: Settings) -> dict:
    url = settings.resolved_broker_url
    if url.startswith("filesystem"):
        folder = settings.broker_folder
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
        }
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
        timezone="UTC",
    )
    return celery


def enqueue(celery: Celery, task_name: str, job_id: str, queue: str) -> None:
    """Send a task carrying only the job id (call after the job row is committed)."""
    celery.send_task(task_name, args=[job_id], queue=queue, exchange=queue, routing_key=queue)
