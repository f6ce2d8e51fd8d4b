"""The explorer's /v1 endpoints on a fitted model: map, relevance, top documents, term
lookup, labels (stored, served, exported), comparison, errors, and the pages' headers."""
from __future__ import annotations

import csv
import io
import json
import zipfile

import numpy as np

from tests.app.helpers import WORDS_DOCS, fit_now, upload

FRUIT = {"apple", "banana", "cherry", "grape", "fruit"}


def test_map_terms_documents_and_term_lookup(client, ctx):
    corpus = upload(client)
    model_id, _ = fit_now(ctx, client, corpus["id"])
    topics = client.get(f"/v1/models/{model_id}/map").json()["topics"]
    assert [t["topic"] for t in topics] == [0, 1]
    assert abs(sum(t["share"] for t in topics) - 1) < 1e-9 and all(t["share"] > 0.3 for t in topics)
    assert all(np.isfinite([t["x"], t["y"], t["alpha"]]).all() and t["label"] is None for t in topics)
    # two well separated topics sit apart on the map
    assert np.hypot(topics[0]["x"] - topics[1]["x"], topics[0]["y"] - topics[1]["y"]) > 0.5

    fruit_topic = next(t for t in (0, 1) if client.get(f"/v1/models/{model_id}/topics/{t}/terms",
                                                       params={"lambda": 1, "top_n": 1}).json()["terms"][0]["word"] in FRUIT)
    by_probability = client.get(f"/v1/models/{model_id}/topics/{fruit_topic}/terms", params={"lambda": 1, "top_n": 5}).json()
    weights = [t["weight"] for t in by_probability["terms"]]
    assert weights == sorted(weights, reverse=True) and {t["word"] for t in by_probability["terms"]} <= FRUIT
    by_lift = client.get(f"/v1/models/{model_id}/topics/{fruit_topic}/terms", params={"lambda": 0, "top_n": 5}).json()
    lifts = [np.log(t["weight"] / t["overall"]) for t in by_lift["terms"]]
    assert np.allclose([t["relevance"] for t in by_lift["terms"]], lifts) and lifts == sorted(lifts, reverse=True)

    documents = client.get(f"/v1/models/{model_id}/topics/{fruit_topic}/documents", params={"limit": 3}).json()["documents"]
    assert len(documents) == 3
    for document in documents:
        assert document["snippet"] == WORDS_DOCS[int(document["doc_id"])]
        assert set(document["snippet"].split()) <= FRUIT
        assert document["weight"] == max(document["topics"]) and abs(sum(document["topics"]) - 1) < 1e-4

    found = client.get(f"/v1/models/{model_id}/terms/Cherry").json()
    assert found["term"] == "cherry" and found["topics"][0]["topic"] == fruit_topic
    assert found["topics"][0]["topic_share"] > 0.9
    unknown = client.get(f"/v1/models/{model_id}/terms/zebra")
    assert unknown.status_code == 422 and "zebra" in unknown.json()["error"]["message"]
    assert client.get(f"/v1/models/{model_id}/topics/2/terms").status_code == 422
    assert client.get(f"/v1/models/{model_id}/topics/-1/documents").status_code == 422
    assert client.get(f"/v1/models/{model_id}/topics/0/terms", params={"lambda": 1.5}).status_code == 422
    assert client.get("/v1/models/feedbeef/map").status_code == 404


def test_labels_are_stored_served_exported_and_removed(client, ctx):
    model_id, _ = fit_now(ctx, client, upload(client)["id"])
    label = '<img src=x onerror="alert(1)"> fruit, "quoted"'
    response = client.put(f"/v1/models/{model_id}/topics/1/label", json={"label": label})
    assert response.status_code == 200 and response.json()["topic_labels"] == {"1": label}
    assert client.get(f"/v1/models/{model_id}").json()["topic_labels"] == {"1": label}
    assert client.get(f"/v1/models/{model_id}/map").json()["topics"][1]["label"] == label
    with zipfile.ZipFile(io.BytesIO(client.get(f"/v1/models/{model_id}/export").content)) as archive:
        rows = list(csv.DictReader(io.StringIO(archive.read("topic-terms.csv").decode())))
    # CSV text cells are JSON string literals (see app/artifacts/model_export.py)
    assert {json.loads(r["label"]) for r in rows if r["topic"] == "1"} == {label}
    assert {json.loads(r["label"]) for r in rows if r["topic"] == "0"} == {""}
    assert client.put(f"/v1/models/{model_id}/topics/5/label", json={"label": "x"}).status_code == 422
    assert client.put(f"/v1/models/{model_id}/topics/0/label", json={"label": "x" * 121}).status_code == 422
    assert client.put(f"/v1/models/{model_id}/topics/1/label", json={"label": "  "}).json()["topic_labels"] == {}


def test_compare_matches_topics_one_to_one(client, ctx):
    corpus = upload(client)
    first, _ = fit_now(ctx, client, corpus["id"], seed=1)
    second, _ = fit_now(ctx, client, corpus["id"], seed=2)
    matches = client.get(f"/v1/models/{first}/compare/{second}").json()["matches"]
    assert len(matches) == 2 and len({m["topic_b"] for m in matches}) == 2
    assert matches[0]["similarity"] > 0.9 and matches[0]["similarity"] >= matches[1]["similarity"]
    itself = client.get(f"/v1/models/{first}/compare/{first}").json()["matches"]
    assert all(m["topic_a"] == m["topic_b"] and abs(m["similarity"] - 1) < 1e-9 for m in itself)
    other_corpus = upload(client, WORDS_DOCS[:8])
    third, _ = fit_now(ctx, client, other_corpus["id"])
    response = client.get(f"/v1/models/{first}/compare/{third}")
    assert response.status_code == 422 and response.json()["error"]["code"] == "different_corpora"


def test_pages_and_assets_are_served_with_a_strict_policy(client):
    for path in ("/", "/explore"):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "<script" not in page.text.replace('<script type="module" src="/static/explorer/js/main.js"></script>', "")
    for path in ("/docs", "/redoc"):
        page = client.get(path)
        assert page.status_code == 200 and "script-src 'self';" in page.headers["content-security-policy"]
        assert "cdn" not in page.text.lower() and "http" not in page.text
    for asset in ("/static/docs/swagger-ui-bundle.js", "/static/docs/redoc.standalone.js", "/static/explorer/js/main.js"):
        assert client.get(asset).status_code == 200, asset
