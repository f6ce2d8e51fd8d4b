"""/v1/models: submit, idempotency, range checks, results, topics, documents, infer, export."""
from __future__ import annotations

import csv
import io
import json
import zipfile

import numpy as np

from tests.app.helpers import WORDS_DOCS, fit_now, upload


def test_submit_returns_202_location_and_a_queued_job(client):
    corpus = upload(client)
    response = client.post("/v1/models", json={"corpus_id": corpus["id"], "n_topics": 2, "alpha0": 0.5, "seed": 3})
    assert response.status_code == 202
    body = response.json()
    assert response.headers["location"] == f"/v1/jobs/{body['job']['id']}"
    assert body["job"]["state"] == "queued" and body["job"]["kind"] == "fit"
    assert body["job"]["model_id"] == body["model_id"]
    model = client.get(f"/v1/models/{body['model_id']}").json()
    assert model["status"] == "pending"
    assert model["params"] == {"corpus_id": corpus["id"], "n_topics": 2, "alpha0": 0.5, "seed": 3,
                               "heldout_fraction": 0.1, "options": {}}
    response = client.get(f"/v1/models/{body['model_id']}/topics")
    assert response.status_code == 409 and response.json()["error"]["code"] == "model_not_ready"


def test_idempotency_key_returns_the_same_job(client):
    corpus = upload(client)
    request = {"corpus_id": corpus["id"], "n_topics": 2}
    first = client.post("/v1/models", json=request, headers={"Idempotency-Key": "k-1"})
    again = client.post("/v1/models", json=request, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    other = client.post("/v1/models", json=request, headers={"Idempotency-Key": "k-2"})
    assert other.json()["job"]["id"] != first.json()["job"]["id"]
    assert len(client.get("/v1/jobs").json()["jobs"]) == 2
    assert len(client.get("/v1/models").json()["models"]) == 2
    changed = client.post("/v1/models", json={**request, "n_topics": 3}, headers={"Idempotency-Key": "k-1"})
    assert changed.status_code == 422
    assert changed.json()["error"]["code"] == "idempotency_key_reused"


def test_request_errors(client):
    corpus = upload(client)  # vocabulary of 10 words
    missing = client.post("/v1/models", json={"corpus_id": "feedbeef", "n_topics": 2})
    assert missing.status_code == 404 and "corpus 'feedbeef'" in missing.json()["error"]["message"]
    for n_topics in (1, 10, 5000):
        response = client.post("/v1/models", json={"corpus_id": corpus["id"], "n_topics": n_topics})
        assert response.status_code == 422, n_topics
        error = response.json()["error"]
        assert error["code"] == "n_topics_out_of_range"
        assert "allowed 2..9" in error["message"] and f"n_topics={n_topics}" in error["message"]
    for bad in ({"n_topics": "many"}, {"n_topics": 2, "alpha0": -1}, {"n_topics": 2, "seed": -5},
                {"n_topics": 2, "unknown": 1}, {"n_topics": 2, "heldout_fraction": 0.9}):
        response = client.post("/v1/models", json={"corpus_id": corpus["id"], **bad})
        assert response.status_code == 422, bad
        assert response.json()["error"]["message"]
    assert client.get("/v1/jobs").json()["jobs"] == []


def test_unknown_model_is_404_everywhere(client):
    for method, path in [("get", "/v1/models/abc123"), ("get", "/v1/models/abc123/topics"),
                         ("get", "/v1/models/abc123/documents"), ("get", "/v1/models/abc123/export"),
                         ("delete", "/v1/models/abc123")]:
        response = getattr(client, method)(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    response = client.post("/v1/models/abc123/infer", json={"texts": ["apple"]})
    assert response.status_code == 404


def test_fitted_model_serves_results(client, ctx):
    corpus = upload(client)
    model_id, job_id = fit_now(ctx, client, corpus["id"], n_topics=2, seed=1)
    model = client.get(f"/v1/models/{model_id}").json()
    assert model["status"] == "ready" and model["n_topics"] == 2
    assert len(model["alpha"]) == 2 and abs(sum(model["alpha"]) - model["alpha_sum"]) < 1e-9
    assert model["alpha0"] == 1.0  # as requested; alpha_sum is what the fit made of it
    assert model["heldout"]["n_documents"] == model["quality"]["n_heldout_docs"] == 4
    assert model["heldout"]["n_fit_documents"] == 36 and "n_heldout_docs" not in model["diagnostics"]
    assert model["n_dropped_docs"] == 0
    assert len(model["m2_eigenvalues"]) >= 2 and len(model["tensor_eigenvalues"]) == 2
    assert set(model["timings"]) and isinstance(model["diagnostics"], dict)
    quality = model["quality"]
    assert quality["n_heldout_docs"] == 4 and quality["n_train_docs"] == 36
    assert -1 <= quality["npmi_mean"] <= 1 and quality["heldout_loglik"] < 0
    assert {w for t in quality["topics"] for w in t["top_words"]} <= set(
        client.get(f"/v1/corpora/{corpus['id']}/vocabulary").json()["words"])

    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "succeeded" and job["attempts"] == 1 and job["progress"]["percent"] == 100.0
    assert {"moments", "whitening", "doc_topic", "saving"} <= set(job["stage_timings"])

    topics = client.get(f"/v1/models/{model_id}/topics", params={"top_n": 5}).json()["topics"]
    assert [len(t["words"]) for t in topics] == [5, 5]
    assert topics[0]["alpha"] >= topics[1]["alpha"]
    fruit, pets = {"apple", "banana", "cherry", "grape", "fruit"}, {"dog", "cat", "mouse", "horse", "pet"}
    tops = [{w["word"] for w in t["words"][:4]} for t in topics]
    assert sorted([tops[0] <= fruit, tops[1] <= fruit]) == [False, True]
    assert any(t <= pets for t in tops)
    for topic in topics:
        weights = [w["weight"] for w in topic["words"]]
        assert weights == sorted(weights, reverse=True)

    page = client.get(f"/v1/models/{model_id}/documents", params={"offset": 1, "limit": 2}).json()
    assert page["total"] == 40 and [d["doc_id"] for d in page["documents"]] == ["1", "2"]
    for doc in page["documents"]:
        assert abs(sum(doc["topics"]) - 1) < 1e-4

    inferred = client.post(f"/v1/models/{model_id}/infer",
                           json={"texts": ["apple banana cherry grape", "dog cat horse", "zzz unknown"]}).json()
    mixtures = np.array(inferred["doc_topic"])
    assert mixtures.shape == (3, 2) and np.allclose(mixtures.sum(axis=1), 1, atol=1e-6)
    assert inferred["n_known_tokens"] == [4, 3, 0]
    fruit_topic = 0 if tops[0] <= fruit else 1
    assert mixtures[0, fruit_topic] > 0.8 and mixtures[1, fruit_topic] < 0.2

    export = client.get(f"/v1/models/{model_id}/export")
    assert export.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(export.content)) as archive:
        assert sorted(archive.namelist()) == ["doc-topics.csv", "topic-terms.csv"]
        terms = list(csv.DictReader(io.StringIO(archive.read("topic-terms.csv").decode())))
        docs = list(csv.DictReader(io.StringIO(archive.read("doc-topics.csv").decode())))
    assert {r["topic"] for r in terms} == {"0", "1"}
    assert json.loads(terms[0]["term"]) == topics[0]["words"][0]["word"]
    assert len(docs) == 40 and json.loads(docs[1]["doc_id"]) == "1"
    assert abs(float(docs[0]["topic_0"]) + float(docs[0]["topic_1"]) - 1) < 1e-4

    assert client.delete(f"/v1/models/{model_id}").status_code == 204
    assert client.get(f"/v1/models/{model_id}").status_code == 404
    assert not ctx.layout.model_dir(model_id).exists()


def test_infer_validation(client, ctx):
    model_id, _ = fit_now(ctx, client, upload(client)["id"])
    assert client.post(f"/v1/models/{model_id}/infer", json={"texts": []}).status_code == 422
    assert client.post(f"/v1/models/{model_id}/infer", json={"documents": ["a"]}).status_code == 422


def test_list_models_by_corpus(client, ctx):
    first, second = upload(client), upload(client, WORDS_DOCS[:8])
    for corpus in (first, second):
        client.post("/v1/models", json={"corpus_id": corpus["id"], "n_topics": 2})
    listed = client.get("/v1/models", params={"corpus_id": first["id"]}).json()["models"]
    assert [m["corpus_id"] for m in listed] == [first["id"]]
