"""Tenant isolation through the real ASGI app on PostgreSQL with REQUIRE_API_KEYS=true.

Tenant A owns a corpus, a fitted model, a pending model and a queued job. For every /v1
endpoint tenant B (a valid key of its own) cannot read, list, infer on, export, cancel or
delete them: each answers 404 (or an empty listing) and A's objects are unchanged after.
No key, a wrong key and a revoked key give 401 with a JSON error and WWW-Authenticate on
every /v1 endpoint. A coverage check fails when a new /v1 route is not exercised here.
"""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.core.db import transaction
from app.core.ids import new_id
from app.core.security import create_api_key, parse_token, revoke_api_key
from app.main import create_app
from tests.app.helpers import WORDS_DOCS, run_now


@pytest.fixture
def store():
    return "postgres"


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def world(ctx_factory):
    """An app requiring keys; tenant A's objects; keys for A and B and a revoked one for A."""
    ctx = ctx_factory(require_api_keys=True)
    tenant_a, tenant_b = f"a-{new_id()[:10]}", f"b-{new_id()[:10]}"
    with transaction(ctx.sessions) as session:
        key_a = create_api_key(session, tenant_a).token
        key_b = create_api_key(session, tenant_b).token
        revoked = create_api_key(session, tenant_a)
    with transaction(ctx.sessions) as session:
        revoke_api_key(session, revoked.key_id)
    with TestClient(create_app(context=ctx, migrate=False)) as client:
        a = _bearer(key_a)
        corpus = client.post("/v1/corpora", json=WORDS_DOCS, headers=a)
        assert corpus.status_code == 201, corpus.text
        corpus_id = corpus.json()["id"]
        fitted = client.post("/v1/models", json={"corpus_id": corpus_id, "n_topics": 2}, headers=a).json()
        assert run_now(ctx, fitted["job"]["id"]).state == "succeeded"
        pending = client.post("/v1/models", json={"corpus_id": corpus_id, "n_topics": 2, "seed": 1}, headers=a).json()
        yield {"client": client, "a": a, "b": _bearer(key_b), "revoked": _bearer(revoked.token),
               "wrong": _bearer(f"st_{parse_token(key_a)[0]}_{'x' * 43}"), "corpus": corpus_id,
               "model": fitted["model_id"], "fit_job": fitted["job"]["id"], "pending_model": pending["model_id"],
               "queued_job": pending["job"]["id"]}


def _requests(w: dict) -> list[tuple[str, str, str, dict]]:
    """(method, route template, concrete path, httpx kwargs) for every /v1 endpoint, aimed at A's objects."""
    corpus, model, job = w["corpus"], w["model"], w["queued_job"]
    return [
        ("POST", "/v1/corpora", "/v1/corpora", {"json": {"documents": ["new text here", "more words"],
                                                         "options": {"min_df": 1, "max_df": 1.0}}}),
        ("POST", "/v1/corpora/files", "/v1/corpora/files", {"files": {"file": ("a.txt", b"new text here\nmore words\n")},
                                                            "data": {"options": '{"min_df": 1, "max_df": 1.0}'}}),
        ("GET", "/v1/corpora", "/v1/corpora", {}),
        ("GET", "/v1/corpora/{corpus_id}", f"/v1/corpora/{corpus}", {}),
        ("GET", "/v1/corpora/{corpus_id}/vocabulary", f"/v1/corpora/{corpus}/vocabulary", {}),
        ("DELETE", "/v1/corpora/{corpus_id}", f"/v1/corpora/{corpus}", {}),
        ("POST", "/v1/models", "/v1/models", {"json": {"corpus_id": corpus, "n_topics": 2}}),
        ("GET", "/v1/models", "/v1/models", {"params": {"corpus_id": corpus}}),
        ("GET", "/v1/models/{model_id}", f"/v1/models/{model}", {}),
        ("GET", "/v1/models/{model_id}/topics", f"/v1/models/{model}/topics", {}),
        ("GET", "/v1/models/{model_id}/documents", f"/v1/models/{model}/documents", {}),
        ("POST", "/v1/models/{model_id}/infer", f"/v1/models/{model}/infer", {"json": {"texts": ["apple dog"]}}),
        ("GET", "/v1/models/{model_id}/export", f"/v1/models/{model}/export", {}),
        ("GET", "/v1/models/{model_id}/map", f"/v1/models/{model}/map", {}),
        ("GET", "/v1/models/{model_id}/topics/{topic}/terms", f"/v1/models/{model}/topics/0/terms", {}),
        ("GET", "/v1/models/{model_id}/topics/{topic}/documents", f"/v1/models/{model}/topics/0/documents", {}),
        ("GET", "/v1/models/{model_id}/terms/{term}", f"/v1/models/{model}/terms/apple", {}),
        ("PUT", "/v1/models/{model_id}/topics/{topic}/label", f"/v1/models/{model}/topics/0/label", {"json": {"label": "x"}}),
        ("GET", "/v1/models/{model_id}/compare/{other_id}", f"/v1/models/{model}/compare/{model}", {}),
        ("GET", "/v1/models/{model_id}/pyldavis", f"/v1/models/{model}/pyldavis", {}),
        ("DELETE", "/v1/models/{model_id}", f"/v1/models/{model}", {}),
        ("GET", "/v1/jobs", "/v1/jobs", {}),
        ("GET", "/v1/jobs/{job_id}", f"/v1/jobs/{job}", {}),
        ("POST", "/v1/jobs/{job_id}/cancel", f"/v1/jobs/{job}/cancel", {}),
    ]


def test_every_v1_route_is_covered(world):
    paths = world["client"].app.openapi()["paths"]
    routes = {(method.upper(), path) for path, item in paths.items() if path.startswith("/v1") for method in item}
    covered = {(method, template) for method, template, _, _ in _requests(world)}
    assert routes == covered, f"routes not covered by the isolation tests: {routes - covered}"


@pytest.mark.parametrize("credentials", ["none", "wrong", "revoked", "malformed", "basic"])
def test_every_v1_endpoint_needs_a_valid_key(world, credentials):
    client = world["client"]
    headers = {"none": {}, "wrong": world["wrong"], "revoked": world["revoked"],
               "malformed": {"Authorization": "Bearer nonsense"},
               "basic": {"Authorization": "Basic dXNlcjpwYXNz"}}[credentials]
    for method, template, path, kwargs in _requests(world):
        response = client.request(method, path, headers=headers, **kwargs)
        assert response.status_code == 401, (method, template, response.text)
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer"), (method, template)
    health = client.get("/health")
    assert health.status_code in (200, 503)  # health stays open for load balancers


def test_other_tenant_cannot_see_or_touch_anything(world):
    client, a, b = world["client"], world["a"], world["b"]
    corpus, model, queued_job = world["corpus"], world["model"], world["queued_job"]
    own_ids = {corpus, model, world["pending_model"], world["fit_job"], queued_job}

    for method, template, path, kwargs in _requests(world):
        response = client.request(method, path, headers=b, **kwargs)
        if template in ("/v1/corpora", "/v1/corpora/files") and method == "POST":
            assert response.status_code == 201  # B may upload its own corpus
            continue
        if method == "GET" and template in ("/v1/corpora", "/v1/models", "/v1/jobs"):
            assert response.status_code == 200, (template, response.text)
            listed = {item["id"] for items in response.json().values() for item in items}
            assert not listed & own_ids, (template, listed & own_ids)
            continue
        assert response.status_code == 404, (method, template, response.status_code, response.text)
        assert response.json()["error"]["code"] == "not_found"
        # Indistinguishable from an id that does not exist at all.
        missing = new_id()
        for real in own_ids:
            if real in path or real in str(kwargs):
                probe = client.request(method, path.replace(real, missing), headers=b,
                                       **({"json": {**kwargs["json"], "corpus_id": missing}} if "json" in kwargs
                                          and "corpus_id" in kwargs["json"] else kwargs))
                assert probe.status_code == 404
                assert probe.json()["error"]["message"] == response.json()["error"]["message"].replace(real, missing)

    # B's own listing of models filtered by A's corpus id is empty, and B's jobs list holds only B's.
    assert client.get("/v1/models", params={"corpus_id": corpus}, headers=b).json()["models"] == []
    assert all(j["kind"] == "ingest" or j["id"] not in own_ids
               for j in client.get("/v1/jobs", headers=b).json()["jobs"])

    # A's objects are all still there and unchanged.
    assert client.get(f"/v1/corpora/{corpus}", headers=a).status_code == 200
    assert client.get(f"/v1/models/{model}/topics", headers=a).status_code == 200
    assert client.get(f"/v1/models/{model}/export", headers=a).status_code == 200
    assert client.get(f"/v1/models/{model}", headers=a).json()["topic_labels"] == {}  # B's label never landed
    assert client.get(f"/v1/models/{model}/map", headers=a).status_code == 200
    assert client.post(f"/v1/models/{model}/infer", json={"texts": ["apple"]}, headers=a).status_code == 200
    assert client.get(f"/v1/jobs/{queued_job}", headers=a).json()["state"] == "queued"
    assert {m["id"] for m in client.get("/v1/models", headers=a).json()["models"]} == {model, world["pending_model"]}
    assert {c["id"] for c in client.get("/v1/corpora", headers=a).json()["corpora"]} == {corpus}
    # And A can act on them: cancel its queued job, delete its fitted model.
    assert client.post(f"/v1/jobs/{queued_job}/cancel", headers=a).json()["state"] == "cancelled"
    assert client.delete(f"/v1/models/{model}", headers=a).status_code == 204


def test_idempotency_keys_are_per_tenant(world):
    """The same Idempotency-Key from another tenant must not return A's job."""
    client, corpus = world["client"], world["corpus"]
    body = {"corpus_id": corpus, "n_topics": 2, "seed": 7}
    first = client.post("/v1/models", json=body, headers={**world["a"], "Idempotency-Key": "k1"})
    assert first.status_code == 202
    other = client.post("/v1/models", json=body, headers={**world["b"], "Idempotency-Key": "k1"})
    assert other.status_code == 404  # B cannot fit on A's corpus, and does not get A's job back


def test_ids_are_random(world):
    ids = [world["corpus"], world["model"], world["pending_model"], world["fit_job"], world["queued_job"]]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids) and len(set(ids)) == len(ids)
