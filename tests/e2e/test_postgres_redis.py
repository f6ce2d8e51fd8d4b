"""The whole flow on the production stack: PostgreSQL store, Redis broker, a real Celery
worker process; the API in-process (ASGI through httpx). Served topics must match the
known truth of a synthetic LDA corpus."""
from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.core.settings import Settings
from app.main import create_app
from gpu.matching import mean_matched_l1
from tests.corpus_helpers import synthetic_documents, topic_matrix_in_truth_order
from tests.e2e.conftest import poll_job, wait_for


@pytest.fixture(scope="module")
def api(pg_redis_worker, tmp_path_factory):
    values = pg_redis_worker["values"]
    settings = Settings(data_dir=values["DATA_DIR"], database_url=values["DATABASE_URL"], redis_url=values["REDIS_URL"],
                        broker_url=None, gpu_queue=values["GPU_QUEUE"], cpu_queue=values["CPU_QUEUE"],
                        inline_ingest_max_bytes=20_000, default_tenant="e2e-pg")
    with TestClient(create_app(settings)) as client:
        wait_for(lambda: client.get("/health").json()["workers"], 60, "the worker's heartbeat",
                 pg_redis_worker["process"], pg_redis_worker["log"])
        yield client


def _json(client):
    return lambda path: client.get(path).json()


def test_health_sees_postgres_redis_and_the_worker(api):
    body = api.get("/health").json()
    assert body["status"] == "ok"
    assert body["database"]["detail"].startswith("postgresql") and body["broker"]["detail"].startswith("redis")
    # workers the chaos tests killed on the same database may still count as live for
    # WORKER_STALE_AFTER_S; this stack's own worker is among those seen
    assert body["gpu_worker"] is False and len(body["workers"]) >= 1


def test_large_upload_ingested_by_worker_then_fit_recovers_truth(api):
    docs, truth = synthetic_documents(n_docs=400, n_words=50, n_topics=3, doc_length=60, seed=4)
    response = api.post("/v1/corpora", json=docs, params={"options": '{"stop_words": null, "min_df": 1, "max_df": 1.0}'})
    assert response.status_code == 202, response.text  # over INLINE_INGEST_MAX_BYTES: a worker ingests it
    ingest_job = poll_job(_json(api), response.json()["job"]["id"])
    assert ingest_job["state"] == "succeeded", ingest_job
    corpus = api.get(f"/v1/corpora/{response.json()['corpus_id']}").json()
    assert corpus["n_documents"] == 400

    key = {"Idempotency-Key": "e2e-fit-1"}
    request = {"corpus_id": corpus["id"], "n_topics": 3, "seed": 1}
    accepted = api.post("/v1/models", json=request, headers=key).json()
    assert api.post("/v1/models", json=request, headers=key).json()["job"]["id"] == accepted["job"]["id"]
    job = poll_job(_json(api), accepted["job"]["id"])
    assert job["state"] == "succeeded", job
    assert job["attempts"] == 1 and job["progress"]["percent"] == 100.0
    assert {"moments", "whitening", "tensor", "doc_topic"} <= set(job["stage_timings"])

    topics = api.get(f"/v1/models/{accepted['model_id']}/topics", params={"top_n": 50}).json()["topics"]
    learned = topic_matrix_in_truth_order(topics, truth.topic_word.shape[1])
    assert mean_matched_l1(truth.topic_word, learned) < 0.15

    model = api.get(f"/v1/models/{accepted['model_id']}").json()
    assert model["status"] == "ready" and abs(sum(model["alpha"]) - 1.0) < 0.5
    documents = api.get(f"/v1/models/{accepted['model_id']}/documents", params={"limit": 400}).json()
    theta = np.array([d["topics"] for d in documents["documents"]])
    assert theta.shape == (400, 3) and np.allclose(theta.sum(axis=1), 1, atol=1e-4)
    assert [d["doc_id"] for d in documents["documents"][:2]] == ["d0", "d1"]
    assert api.get(f"/v1/models/{accepted['model_id']}/export").status_code == 200


def test_bad_input_fails_the_job_through_the_worker(api):
    corpus = api.post("/v1/corpora", json=[f"aa{i} bb{i}" for i in range(20)],
                      params={"options": '{"min_df": 1, "max_df": 1.0}'}).json()
    accepted = api.post("/v1/models", json={"corpus_id": corpus["id"], "n_topics": 2}).json()
    job = poll_job(_json(api), accepted["job"]["id"])
    assert job["state"] == "failed" and job["error_code"] == "invalid_input" and job["attempts"] == 1
    assert "document" in job["error_message"]
    assert api.get(f"/v1/models/{accepted['model_id']}").json()["status"] == "failed"
