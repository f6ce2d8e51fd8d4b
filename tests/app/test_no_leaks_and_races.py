"""What the service says about its own failures (no hosts, ports or paths), a failed enqueue
that frees its Idempotency-Key, deleting a corpus while a model is submitted on it, and
partial uploads swept when the API starts."""
from __future__ import annotations

import os
import threading
import time

import httpx
from fastapi.testclient import TestClient

from app.main import create_app
from app.services.corpus_service import MANIFEST
from tests.app.helpers import WORDS_DOCS, run_now, submit_fit, upload
from tests.app.live_server import serve_api

UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"


def test_health_and_broker_errors_name_no_host_port_or_path(ctx_factory):
    ctx = ctx_factory(broker_url=UNREACHABLE_BROKER)
    with TestClient(create_app(context=ctx, migrate=False)) as client:
        health = client.get("/health")
        assert health.json()["broker"] == {"ok": False, "detail": "broker unreachable"}
        corpus = upload(client)
        refused = client.post("/v1/models", json={"corpus_id": corpus["id"], "n_topics": 2})
        job = client.get("/v1/jobs").json()["jobs"][0]
    assert refused.status_code == 503 and refused.headers["retry-after"]
    components = str([health.json()["database"], health.json()["broker"]])
    for text in (components, refused.text, job["error_message"]):
        assert "127.0.0.1" not in text and ":1" not in text and str(ctx.layout.root) not in text


def test_a_failed_enqueue_does_not_consume_the_idempotency_key(ctx_factory):
    down = ctx_factory(broker_url=UNREACHABLE_BROKER)
    request = {"n_topics": 2}
    with TestClient(create_app(context=down, migrate=False)) as client:
        request["corpus_id"] = upload(client)["id"]
        first = client.post("/v1/models", json=request, headers={"Idempotency-Key": "retry-me"})
        assert first.status_code == 503
    up = ctx_factory(default_tenant=down.settings.default_tenant)  # the broker is back (same store, tenant)
    with TestClient(create_app(context=up, migrate=False)) as client:
        retry = client.post("/v1/models", json=request, headers={"Idempotency-Key": "retry-me"})
        assert retry.status_code == 202, retry.text
        assert retry.json()["job"]["state"] == "queued"
        again = client.post("/v1/models", json=request, headers={"Idempotency-Key": "retry-me"})
        assert again.json()["job"]["id"] == retry.json()["job"]["id"]


def test_infrastructure_failures_store_the_class_not_the_message(client, ctx):
    from workers.jobs import run_job

    job_id = submit_fit(client, upload(client)["id"])["job"]["id"]

    def failing(ctx_, job, progress):
        raise OSError(f"cannot write {ctx.layout.root}/models/x: redis://10.0.0.7:6379 down")

    for _ in range(3):
        run_job(ctx, job_id, "w", {"fit": failing})
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "failed" and job["error_code"] == "infrastructure" and "OSError" in job["error_message"]
    assert str(ctx.layout.root) not in job["error_message"] and "10.0.0.7" not in job["error_message"]


def test_deleting_a_corpus_while_a_model_is_submitted_answers_409_or_404_never_500(ctx):
    with serve_api(ctx) as url, httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(10):
            corpus_id = http.post("/v1/corpora", json=WORDS_DOCS).json()["id"]
            barrier, answers = threading.Barrier(2), {}

            def submit():
                barrier.wait()
                answers["model"] = http.post("/v1/models", json={"corpus_id": corpus_id, "n_topics": 2})

            def delete():
                barrier.wait()
                answers["delete"] = http.delete(f"/v1/corpora/{corpus_id}")

            threads = [threading.Thread(target=submit), threading.Thread(target=delete)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            model, deleted = answers["model"].status_code, answers["delete"].status_code
            assert (model, deleted) in {(202, 409), (404, 204)}, (answers["model"].text, answers["delete"].text)


def test_partial_uploads_are_swept_when_the_api_starts(ctx_factory):
    ctx = ctx_factory(inline_ingest_max_bytes=10)  # uploads are staged for a worker job
    client = TestClient(create_app(context=ctx, migrate=False))
    uploads = ctx.settings.uploads_dir
    old, fresh, streaming = uploads / "old-partial", uploads / "fresh-partial", uploads / "still-streaming"
    for folder in (old, fresh, streaming):
        folder.mkdir(parents=True)
        (folder / "0").write_bytes(b"half a body")
    hours_ago = time.time() - 2 * 3600
    for path in (old / "0", old, streaming):
        os.utime(path, (hours_ago, hours_ago))
    queued = client.post("/v1/corpora", json=WORDS_DOCS)
    assert queued.status_code == 202
    needed = next(p for p in uploads.iterdir() if (p / MANIFEST).exists())
    os.utime(needed, (hours_ago, hours_ago))
    for path in needed.iterdir():
        os.utime(path, (hours_ago, hours_ago))
    with TestClient(create_app(context=ctx, migrate=False)):
        remaining = {p.name for p in uploads.iterdir()}
    assert remaining == {"fresh-partial", "still-streaming", needed.name}
    assert run_now(ctx, queued.json()["job"]["id"]).state == "succeeded"
