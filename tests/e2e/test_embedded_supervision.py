"""``spectral-topics serve`` on its embedded defaults (SQLite store, SQLite broker) keeps its
worker alive and stops on SIGTERM: real processes, real HTTP.

- the worker (its whole process group) is SIGKILLed mid-job: serve logs it, starts a new
  worker, the new worker's reaper re-queues the job once its lease expires, and the job
  succeeds exactly once (one attempt more, one model folder)
- under load (many concurrent HTTP clients) and with a job running, SIGTERM stops serve,
  its API and its worker within seconds (the worker's running job is given
  WORKER_SHUTDOWN_TIMEOUT_S, then cancelled; its message goes back to the broker)
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import psutil
import pytest

from tests.corpus_helpers import synthetic_documents
from tests.e2e.conftest import REPO, free_port, poll_job, service_env, stop_process, wait_for

LEASE_S = 2.0
SIGTERM_BUDGET_S = 15.0  # API_SHUTDOWN_TIMEOUT_S 2 + WORKER_SHUTDOWN_TIMEOUT_S 1 + cold shutdown (~5 s here)


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("supervised-data")
    port = free_port()
    log = data_dir / "serve.log"
    env = service_env(DATA_DIR=data_dir, WORKER_HEARTBEAT_S="0.5", WORKER_STALE_AFTER_S="3", PROGRESS_INTERVAL_S="0",
                      FIT_BACKEND="numpy", ENABLE_TEST_HOOKS="true", JOB_LEASE_S=str(LEASE_S),
                      API_SHUTDOWN_TIMEOUT_S="2", WORKER_SHUTDOWN_TIMEOUT_S="1")
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], env=env,
                                   cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=url, timeout=10)
    try:
        wait_for(lambda: client.get("/health").json()["workers"], 90, "serve to be ready", process, log)
        docs, _ = synthetic_documents(n_docs=200, n_words=40, n_topics=3, doc_length=30, seed=0)
        corpus = client.post("/v1/corpora", json=docs, params={"options": '{"stop_words": null}'})
        assert corpus.status_code == 201, corpus.text
        yield {"url": url, "process": process, "client": client, "log": log, "data_dir": data_dir,
               "corpus_id": corpus.json()["id"]}
    finally:
        client.close()
        stop_process(process)
        for child in psutil.Process().children(recursive=True):
            if child.pid != os.getpid() and "app.cli" in " ".join(child.cmdline()):
                child.kill()


def _fit(serve, hook: dict) -> dict:
    body = {"corpus_id": serve["corpus_id"], "n_topics": 3, "seed": 1, "options": {"refine": False, "test_hook": hook}}
    response = serve["client"].post("/v1/models", json=body)
    assert response.status_code == 202, response.text
    return response.json()


def _worker_pid(serve) -> int | None:
    """The pid of serve's one worker process, None while there is none (being restarted)."""
    children = psutil.Process(serve["process"].pid).children()
    return children[0].pid if len(children) == 1 else None


def _running(serve, job_id: str) -> dict:
    return wait_for(lambda: (lambda j: j if j["state"] == "running" and j["progress"]["stage"] == "test_hook" else None)(
        serve["client"].get(f"/v1/jobs/{job_id}").json()), 60, f"job {job_id} to run", serve["process"], serve["log"])


def test_a_killed_worker_is_restarted_and_the_job_finishes_once(serve):
    accepted = _fit(serve, {"sleep_s": 3})
    _running(serve, accepted["job"]["id"])
    first = _worker_pid(serve)
    assert first is not None
    os.killpg(first, signal.SIGKILL)  # the worker and its pool child, mid-job

    second = wait_for(lambda: (lambda pid: pid if pid not in (None, first) else None)(_worker_pid(serve)), 30,
                      "serve to start a new worker", serve["process"], serve["log"])
    assert second != first
    log = serve["log"].read_text()
    assert f"worker (pid {first}) exited with -9" in log and "restarting in" in log
    health = wait_for(lambda: (lambda b: b if any(w["id"].endswith(f":{second}") for w in b["workers"]) else None)(
        serve["client"].get("/health").json()), 60, "the new worker's heartbeat", serve["process"], serve["log"])
    assert health["status"] in ("ok", "stalled")

    job = poll_job(lambda path: serve["client"].get(path).json(), accepted["job"]["id"], timeout=90)
    assert job["state"] == "succeeded", job
    assert job["attempts"] == 2  # the killed attempt and the one that finished
    models = {p.name for p in (serve["data_dir"] / "models").iterdir()}
    assert models == {accepted["model_id"]}  # one artifact: it ran to the end once
    assert serve["client"].get(f"/v1/models/{accepted['model_id']}/topics").status_code == 200
    assert serve["client"].get("/health").status_code == 200


def test_sigterm_under_load_stops_serve_api_and_worker_within_seconds(serve):
    accepted = _fit(serve, {"sleep_s": 60})  # the worker holds a running job when SIGTERM comes
    _running(serve, accepted["job"]["id"])
    worker = psutil.Process(_worker_pid(serve))
    family = [worker, *worker.children(recursive=True)]
    stop_load = threading.Event()
    answered = []

    async def hammer():
        async with httpx.AsyncClient(base_url=serve["url"], timeout=5) as client:
            async def loop():
                while not stop_load.is_set():
                    try:
                        answered.append((await client.get("/v1/jobs")).status_code)
                    except httpx.HTTPError:
                        answered.append(None)
            await asyncio.gather(*(loop() for _ in range(64)))

    load = threading.Thread(target=lambda: asyncio.run(hammer()), daemon=True)
    load.start()
    wait_for(lambda: len(answered) > 200, 30, "the load to build up")
    started = time.monotonic()
    serve["process"].send_signal(signal.SIGTERM)
    try:
        serve["process"].wait(timeout=SIGTERM_BUDGET_S)
    finally:
        stop_load.set()
        load.join(timeout=10)
    elapsed = time.monotonic() - started
    assert serve["process"].returncode is not None and elapsed < SIGTERM_BUDGET_S, elapsed
    gone, alive = psutil.wait_procs(family, timeout=5)
    assert not alive, [p.pid for p in alive]
    assert 503 in answered or 200 in answered  # the load was real HTTP traffic, answered
    log = serve["log"].read_text()
    # The worker took SIGTERM as a (soft, then cold) shutdown instead of waiting for the 60 s job.
    assert "Initiating Soft Shutdown" in log and "Cold shutdown" in log
