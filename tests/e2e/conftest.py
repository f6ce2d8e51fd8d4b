"""End-to-end fixtures: REAL worker processes (Celery) on real brokers and databases.

Started once per session. Subprocesses get an explicit environment, so the PostgreSQL +
Redis flow and the embedded (SQLite + embedded SQLite broker) flow never see each other's
settings or the CI variables.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.core.ids import new_id
from tests.service_fixtures import pg_schema_url  # noqa: F401  (session fixture)

REPO = Path(__file__).resolve().parents[2]
_SERVICE_VARS = ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "DATA_DIR", "GPU_QUEUE", "CPU_QUEUE", "WORKER_QUEUES")


def service_env(**values) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SERVICE_VARS}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update({k: str(v) for k, v in values.items()})
    return env


def stop_process(process: subprocess.Popen, timeout: float = 30) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, process: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: process exited with {process.returncode}\n"
                                 + (log.read_text()[-4000:] if log else ""))
        try:
            value = predicate()
        except (httpx.HTTPError, OSError):
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + ("\n" + log.read_text()[-4000:] if log else ""))


def poll_job(get_json, job_id: str, timeout: float = 90) -> dict:
    """Poll GET /v1/jobs/{id} until final; returns the job and the states seen on the way."""
    seen = []

    def final():
        job = get_json(f"/v1/jobs/{job_id}")
        seen.append(job["state"])
        return job if job["state"] in ("succeeded", "failed", "cancelled") else None

    job = wait_for(final, timeout, f"job {job_id}")
    job["_states_seen"] = seen
    return job


@pytest.fixture(scope="session")
def pg_redis_worker(pg_schema_url, redis_url, tmp_path_factory):  # noqa: F811
    """A Celery worker process on PostgreSQL + Redis, on queues unique to this session."""
    data_dir = tmp_path_factory.mktemp("pg-redis-data")
    prefix = f"st-{new_id()[:10]}"
    values = dict(DATABASE_URL=pg_schema_url, REDIS_URL=redis_url, DATA_DIR=data_dir, GPU_QUEUE=f"{prefix}-gpu",
                  CPU_QUEUE=f"{prefix}-cpu", WORKER_QUEUES=f"{prefix}-gpu,{prefix}-cpu", PROGRESS_INTERVAL_S="0",
                  WORKER_HEARTBEAT_S="1", FIT_BACKEND="numpy")
    log = data_dir / "worker.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "--concurrency", "1"],
                                   env=service_env(**values), cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield {"values": values, "process": process, "log": log}
    finally:
        stop_process(process)
        import redis

        client = redis.Redis.from_url(redis_url)
        keys = [k for k in client.scan_iter(match=f"*{prefix}*")]
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``spectral-topics serve`` (API + a worker process, SQLite + filesystem broker) on a free
    port, one per test module: {"url", "process", "data_dir", "env", "log"}."""
    data_dir = tmp_path_factory.mktemp("embedded-data")
    port = free_port()
    log = data_dir / "serve.log"
    env = service_env(DATA_DIR=data_dir, WORKER_HEARTBEAT_S="1", PROGRESS_INTERVAL_S="0", FIT_BACKEND="numpy")
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], env=env,
                                   cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/health", timeout=2).json()["workers"], 90, "serve to be ready",
                 process, log)
        yield {"url": url, "process": process, "data_dir": data_dir, "env": env, "log": log}
    finally:
        stop_process(process)
