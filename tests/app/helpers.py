"""Helpers for API tests: upload a corpus, run a job with the real job logic in-process."""
from __future__ import annotations

import json

from workers.handlers import HANDLERS
from workers.jobs import run_job

WORDS_DOCS = [
    "apple banana cherry apple banana grape", "dog cat mouse dog cat horse",
    "apple cherry banana fruit grape", "cat dog pet mouse horse",
] * 10


# Upload defaults prune terms in < 5 documents or > 50% of them; these tiny corpora keep all.
KEEP_ALL_TERMS = json.dumps({"min_df": 1, "max_df": 1.0})


def upload(client, docs=WORDS_DOCS, **params):
    params.setdefault("options", KEEP_ALL_TERMS)
    response = client.post("/v1/corpora", json=docs, params=params)
    assert response.status_code == 201, response.text
    return response.json()


def run_now(ctx, job_id: str, worker: str = "test-worker"):
    """Run a queued job through workers.jobs.run_job (the code a Celery task calls)."""
    return run_job(ctx, job_id, worker, HANDLERS)


def submit_fit(client, corpus_id: str, n_topics: int = 2, **body) -> dict:
    """POST /v1/models; the 202 body (model_id and the queued job)."""
    response = client.post("/v1/models", json={"corpus_id": corpus_id, "n_topics": n_topics, **body})
    assert response.status_code == 202, response.text
    return response.json()


def fit_now(ctx, client, corpus_id: str, n_topics: int = 2, **body):
    accepted = submit_fit(client, corpus_id, n_topics, **body)
    outcome = run_now(ctx, accepted["job"]["id"])
    assert outcome.state == "succeeded", client.get(f"/v1/jobs/{accepted['job']['id']}").json()
    return accepted["model_id"], accepted["job"]["id"]
