"""Chaos: real Celery worker processes on real PostgreSQL and a PRIVATE redis-server (its own
port; the shared one at 127.0.0.1:6379 is left alone), killed and restarted under running
jobs. Jobs are made slow or crashing with the test-only fit option ``test_hook``
(workers/test_hooks.py), honoured only because the worker runs with ENABLE_TEST_HOOKS=true.

After every test: each succeeded job has exactly one model directory, no other model
directory exists, nothing is left in the temporary folder, and no job is queued or running.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.core.context import build_context
from app.core.ids import new_id
from app.core.settings import Settings
from app.core.tables import JobRow, ModelRow
from app.main import create_app
from tests.corpus_helpers import synthetic_documents
from tests.e2e.conftest import (
    REPO,
    free_port,
    poll_job,
    service_env,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server on PATH")

LEASE_S = 1.5


class PrivateRedis:
    """A throw-away redis-server without persistence: a restart loses every message."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis.from_url(self.url)

        def ready() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_for(ready, 20, "the private redis-server", self.process)
        client.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory):
    server = PrivateRedis(tmp_path_factory.mktemp("private-redis"))
    server.start()
    yield server
    server.kill()


class Stack:
    """The API (in-process) and worker processes sharing one data dir, database and broker."""

    def __init__(self, database_url: str, redis: PrivateRedis, data_dir: Path, **limits):
        prefix = f"chaos-{new_id()[:10]}"
        self.redis = redis
        self.data_dir = data_dir
        self.values = dict(
            DATABASE_URL=database_url, REDIS_URL=redis.url, DATA_DIR=data_dir, GPU_QUEUE=f"{prefix}-gpu",
            CPU_QUEUE=f"{prefix}-cpu", WORKER_QUEUES=f"{prefix}-gpu,{prefix}-cpu", PROGRESS_INTERVAL_S="0",
            WORKER_HEARTBEAT_S="0.5", FIT_BACKEND="numpy", ENABLE_TEST_HOOKS="true", JOB_LEASE_S=str(LEASE_S),
            JOB_REQUEUE_AFTER_S="2", RETRY_BACKOFF_S="0.2", RETRY_BACKOFF_MAX_S="1",
            **{k.upper(): str(v) for k, v in limits.items()})
        settings = Settings(**{k.lower(): v for k, v in self.values.items()}, broker_url=None,
                            default_tenant=f"chaos-{new_id()[:8]}", inline_ingest_max_bytes=1 << 22)
        self.ctx = build_context(settings)
        self.workers: list[subprocess.Popen] = []

    def start_worker(self, pool: str = "prefork") -> subprocess.Popen:
        log = self.data_dir / f"worker-{len(self.workers)}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker", "--concurrency", "1", "--pool", pool, "--loglevel", "INFO"],
                env=service_env(**self.values), cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        process.log = log
        self.workers.append(process)
        return process

    def close(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                stop_process(process, timeout=15)
            _kill_group(process)
        self.ctx.close()

    def job(self, job_id: str) -> JobRow:
        with self.ctx.sessions() as session:
            return session.get(JobRow, job_id)

    def assert_clean(self, client: TestClient, succeeded_models: set[str]) -> None:
        """No duplicate or orphan artifacts, no job left queued or running."""
        models_dir = self.data_dir / "models"
        on_disk = {p.name for p in models_dir.iterdir()} if models_dir.exists() else set()
        assert on_disk == succeeded_models
        tmp = self.data_dir / "tmp"
        assert not tmp.exists() or list(tmp.iterdir()) == []
        with self.ctx.sessions() as session:
            jobs = session.scalars(select(JobRow).where(JobRow.tenant_id == self.ctx.settings.default_tenant)).all()
            models = session.scalars(select(ModelRow).where(ModelRow.tenant_id == self.ctx.settings.default_tenant))
            ready = {m.id for m in models if m.status == "ready"}
        assert [j.id for j in jobs if j.state in ("queued", "running")] == []
        assert ready == succeeded_models


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture
def stack_factory(pg_schema_url, private_redis, tmp_path):
    made = []

    def make(**limits) -> Stack:
        stack = Stack(pg_schema_url, private_redis, tmp_path / f"data-{len(made)}", **limits)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.close()


def _api(stack: Stack):
    return TestClient(create_app(stack.ctx.settings))


def _fit(client: TestClient, hook: dict | None) -> dict:
    docs, _ = synthetic_documents(n_docs=150, n_words=30, n_topics=3, doc_length=40, seed=3)
    corpus = client.post("/v1/corpora", json=docs, params={"options": '{"stop_words": null}'})
    assert corpus.status_code == 201, corpus.text
    options = {"refine": False}
    if hook:
        options["test_hook"] = hook
    accepted = client.post("/v1/models", json={"corpus_id": corpus.json()["id"], "n_topics": 3, "seed": 1,
                                                "options": options})
    assert accepted.status_code == 202, accepted.text
    return accepted.json()


def _get(client):
    return lambda path: client.get(path).json()


def _running_pid(stack: Stack, job_id: str, timeout: float = 30) -> int:
    """The pid of the process running ``job_id`` (its lease owner is host:pid), once in the hook."""
    def running():
        job = stack.job(job_id)
        return job.lease_owner if job.state == "running" and job.stage == "test_hook" else None

    owner = wait_for(running, timeout, f"job {job_id} running in its test hook", stack.workers[-1],
                     stack.workers[-1].log)
    return int(owner.rsplit(":", 1)[1])


def test_sigkill_of_the_worker_child_mid_job_still_succeeds_once(stack_factory):
    stack = stack_factory()
    worker = stack.start_worker()
    with _api(stack) as client:
        accepted = _fit(client, {"sleep_s": 2})
        child = _running_pid(stack, accepted["job"]["id"])
        assert child != worker.pid
        os.kill(child, signal.SIGKILL)
        job = poll_job(_get(client), accepted["job"]["id"], timeout=45)
        assert job["state"] == "succeeded", job
        assert job["attempts"] == 2 and worker.poll() is None
        assert client.get(f"/v1/models/{accepted['model_id']}/topics").status_code == 200
        stack.assert_clean(client, {accepted["model_id"]})


def test_sigkill_of_the_whole_worker_then_a_new_one_finishes_the_job(stack_factory):
    stack = stack_factory()
    first = stack.start_worker()
    with _api(stack) as client:
        accepted = _fit(client, {"sleep_s": 2})
        _running_pid(stack, accepted["job"]["id"])
        os.killpg(first.pid, signal.SIGKILL)  # the parent and its pool child
        first.wait()
        stack.start_worker()
        job = poll_job(_get(client), accepted["job"]["id"], timeout=45)
        assert job["state"] == "succeeded", job
        assert job["attempts"] == 2
        stack.assert_clean(client, {accepted["model_id"]})


def test_redis_restarted_with_its_data_gone_the_reconciler_resends_the_job(stack_factory, private_redis):
    stack = stack_factory()
    with _api(stack) as client:
        accepted = _fit(client, None)  # its message waits in Redis: no worker yet
        job_id = accepted["job"]["id"]
        private_redis.kill()
        private_redis.start()  # same port, empty: the message is gone
        import redis

        assert redis.Redis.from_url(private_redis.url).dbsize() == 0
        assert stack.job(job_id).state == "queued"
        stack.start_worker()
        job = poll_job(_get(client), job_id, timeout=45)
        assert job["state"] == "succeeded", job
        assert job["attempts"] == 1
        stack.assert_clean(client, {accepted["model_id"]})


def test_a_job_that_kills_its_worker_every_time_fails_at_the_attempt_cap(stack_factory):
    stack = stack_factory(job_max_attempts=2)
    worker = stack.start_worker()
    with _api(stack) as client:
        accepted = _fit(client, {"kill": "always"})
        job = poll_job(_get(client), accepted["job"]["id"], timeout=45)
        assert job["state"] == "failed" and job["error_code"] == "attempts_exhausted", job
        assert job["attempts"] == 2
        assert "gave up after 2 of 2 attempts (the attempt cap" in job["error_message"]
        assert client.get(f"/v1/models/{accepted['model_id']}").json()["status"] == "failed"
        assert worker.poll() is None  # the pool replaced its child each time
        stack.assert_clean(client, set())


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_a_job_over_its_hard_limit_fails_with_the_limit_named(stack_factory, pool):
    stack = stack_factory(job_soft_time_limit_s=1, job_hard_time_limit_s=3)
    worker = stack.start_worker(pool)
    with _api(stack) as client:
        # Blocks without progress reports and ignores the soft limit, like a long C call.
        accepted = _fit(client, {"block_s": 60})
        job = poll_job(_get(client), accepted["job"]["id"], timeout=45)
        assert job["state"] == "failed" and job["error_code"] == "time_limit", job
        assert "hard time limit of 3 s" in job["error_message"] and job["attempts"] == 1
        if pool == "prefork":
            assert worker.poll() is None  # only the pool child was stopped
        else:
            wait_for(lambda: worker.poll() is not None, 15, "the solo worker to exit")  # its supervisor restarts it
        stack.assert_clean(client, set())


def test_a_solo_worker_stops_at_the_hard_limit_after_its_model_was_deleted_mid_fit(stack_factory):
    stack = stack_factory(job_soft_time_limit_s=1, job_hard_time_limit_s=3)
    worker = stack.start_worker("solo")
    with _api(stack) as client:
        accepted = _fit(client, {"block_s": 60})
        wait_for(lambda: stack.job(accepted["job"]["id"]).state == "running", 20, "the fit to start", worker,
                 worker.log)
        assert client.delete(f"/v1/models/{accepted['model_id']}").status_code == 204
        wait_for(lambda: worker.poll() is not None, 15, "the solo worker to stop at the hard limit")
        assert worker.returncode == 75  # HARD_LIMIT_EXIT_CODE: its supervisor restarts it
        assert client.get(f"/v1/jobs/{accepted['job']['id']}").json()["state"] == "cancelled"


def test_redis_restarted_empty_under_a_running_worker_loses_nothing(stack_factory, private_redis):
    stack = stack_factory()
    stack.start_worker()
    with _api(stack) as client:
        running = _fit(client, {"sleep_s": 3})
        _running_pid(stack, running["job"]["id"])
        waiting = _fit(client, None)  # queued behind it, its message in Redis
        private_redis.kill()
        private_redis.start()
        jobs = [poll_job(_get(client), accepted["job"]["id"], timeout=45) for accepted in (running, waiting)]
        assert [job["state"] for job in jobs] == ["succeeded", "succeeded"], jobs
        assert [job["attempts"] for job in jobs] == [1, 1]
        assert stack.workers[-1].poll() is None
        stack.assert_clean(client, {running["model_id"], waiting["model_id"]})
