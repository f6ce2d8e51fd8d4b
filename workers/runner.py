"""Start a Celery worker process on settings (used by ``spectral-topics worker``).

A GPU worker (queue ``gpu``) should run ``--pool solo`` or concurrency 1: one job at a time
per device. CUDA is never initialised in this parent process: the GPU probe runs in a
subprocess, and gpu/ is imported only inside the task.
"""
from __future__ import annotations

import logging
import os
import socket

from celery.signals import worker_process_init

from app.core.broker import prepare_broker
from app.core.context import build_context
from app.core.settings import Settings
from app.migrations import upgrade_database
from app.services.corpus_service import sweep_stale_uploads
from workers.celery_app import create_worker_app, requeue_job
from workers.heartbeat import Heartbeat, probe_gpu, worker_id

log = logging.getLogger(__name__)

STALE_AFTER_S = 24 * 3600  # temporary files and staged uploads older than this are debris


def run_worker(settings: Settings, *, queues: list[str] | None = None, pool: str | None = None,
               concurrency: int | None = None, loglevel: str = "INFO") -> None:
    """Run a worker until it is told to stop (SIGTERM / SIGINT: warm shutdown)."""
    logging.basicConfig(level=loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    queues = queues or settings.queues
    ctx = build_context(settings)
    ctx.corpus_cache_size = 0  # a worker loads a corpus once per job; do not hold it after
    upgrade_database(ctx.engine)
    ctx.layout.sweep_tmp(older_than_s=STALE_AFTER_S)
    sweep_stale_uploads(ctx, older_than_s=STALE_AFTER_S)
    celery = create_worker_app(ctx)
    prepare_broker(celery)

    def _after_fork(**_kwargs):
        # Connections must not be shared with the parent process.
        ctx.engine.dispose(close=False)

    worker_process_init.connect(_after_fork, weak=False)
    gpu = settings.gpu_queue in queues and probe_gpu()
    concurrency = concurrency or settings.worker_concurrency
    pool = pool or settings.worker_pool
    if gpu and pool != "solo" and concurrency > 1:
        log.warning("a GPU worker runs one job at a time per device: concurrency %d -> 1", concurrency)
        concurrency = 1
    heartbeat = Heartbeat(ctx, worker_id(), queues, gpu, requeue=lambda job: requeue_job(ctx, celery, job))
    heartbeat.start()
    log.info("worker %s consuming %s (gpu=%s)", worker_id(), queues, gpu)
    try:
        worker = celery.Worker(
            queues=queues, pool=pool, concurrency=concurrency,
            loglevel=loglevel, hostname=f"spectral-{os.getpid()}@{socket.gethostname()}",
            without_mingle=True, without_gossip=True,
        )
        worker.start()
    finally:
        worker_process_init.disconnect(_after_fork)
        heartbeat.stop()
        ctx.close()
