"""Configurable limits: jobs per tenant (429), queue length (503), ingestion caps from
settings, the streamed body count, and open mode on loopback."""
from __future__ import annotations

import asyncio
import io
import json
import zipfile

import pytest
from fastapi.testclient import TestClient

from app.api.body_limit import BodySizeLimitMiddleware
from app.core.db import transaction
from app.core.ids import new_id
from app.core.security import create_api_key
from app.main import create_app
from tests.app.helpers import KEEP_ALL_TERMS, WORDS_DOCS, run_now, upload


@pytest.fixture
def limited(ctx_factory):
    """An app with small job limits and two tenants' keys."""
    def make(**overrides):
        ctx = ctx_factory(require_api_keys=True, **overrides)
        with transaction(ctx.sessions) as session:
            keys = [create_api_key(session, f"{name}-{new_id()[:10]}").token for name in ("a", "b")]
        client = TestClient(create_app(context=ctx, migrate=False))
        return ctx, client, [{"Authorization": f"Bearer {k}"} for k in keys]
    return make


def _fit(client, headers, corpus_id, seed):
    return client.post("/v1/models", json={"corpus_id": corpus_id, "n_topics": 2, "seed": seed}, headers=headers)


def test_active_jobs_per_tenant_gives_429_with_retry_after(limited):
    ctx, client, (a, b) = limited(max_active_jobs_per_tenant=2, max_queued_jobs=100, retry_after_s=7)
    corpus_a = upload(client.__class__(client.app, headers=a))["id"]
    corpus_b = upload(client.__class__(client.app, headers=b))["id"]
    first, second = _fit(client, a, corpus_a, 1), _fit(client, a, corpus_a, 2)
    assert first.status_code == second.status_code == 202
    refused = _fit(client, a, corpus_a, 3)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "7"
    error = refused.json()["error"]
    assert error["code"] == "too_many_active_jobs" and "MAX_ACTIVE_JOBS_PER_TENANT=2" in error["message"]
    assert len(client.get("/v1/jobs", headers=a).json()["jobs"]) == 2  # nothing was half-created
    assert client.get("/v1/models", headers=a).json()["models"].__len__() == 2
    assert _fit(client, b, corpus_b, 1).status_code == 202  # another tenant is not held back
    client.post(f"/v1/jobs/{first.json()['job']['id']}/cancel", headers=a)  # a finished job frees a slot
    assert _fit(client, a, corpus_a, 3).status_code == 202


def test_queue_length_gives_503_with_retry_after(limited):
    ctx, client, (a, b) = limited(max_active_jobs_per_tenant=100, max_queued_jobs=2, retry_after_s=11)
    corpus_a = upload(client.__class__(client.app, headers=a))["id"]
    corpus_b = upload(client.__class__(client.app, headers=b))["id"]
    queued_before = _count_queued(ctx)
    for seed in range(max(0, 2 - queued_before)):
        assert _fit(client, a, corpus_a, seed).status_code == 202
    refused = _fit(client, b, corpus_b, 0)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "11"
    assert refused.json()["error"]["code"] == "queue_full"
    assert "MAX_QUEUED_JOBS=2" in refused.json()["error"]["message"]
    assert client.get("/v1/jobs", headers=b).json()["jobs"] == []


def _count_queued(ctx) -> int:
    from sqlalchemy import func, select

    from app.core.tables import JobRow

    with ctx.sessions() as session:
        return session.scalar(select(func.count()).select_from(JobRow).where(JobRow.state == "queued"))


def test_a_refused_large_upload_leaves_no_staged_files(limited):
    ctx, client, (a, _) = limited(max_active_jobs_per_tenant=1, inline_ingest_max_bytes=0)
    first = client.post("/v1/corpora", json=WORDS_DOCS, headers=a)
    assert first.status_code == 202  # ingested by a worker: a queued job
    refused = client.post("/v1/corpora", json=WORDS_DOCS, headers=a)
    assert refused.status_code == 429 and "retry-after" in refused.headers
    staged = [p.name for p in ctx.settings.uploads_dir.iterdir()]
    assert len(staged) == 1  # only the accepted upload's folder


def test_idempotent_retry_is_not_refused_by_the_limit(limited):
    ctx, client, (a, _) = limited(max_active_jobs_per_tenant=1)
    corpus = upload(client.__class__(client.app, headers=a))["id"]
    body = {"corpus_id": corpus, "n_topics": 2}
    first = client.post("/v1/models", json=body, headers={**a, "Idempotency-Key": "same"})
    again = client.post("/v1/models", json=body, headers={**a, "Idempotency-Key": "same"})
    assert first.status_code == again.status_code == 202
    assert first.json()["job"]["id"] == again.json()["job"]["id"]


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("setting, value, body, content_type, named", [
    ("max_documents_per_corpus", 3, json.dumps(["apple banana", "cherry grape", "dog cat", "mouse horse"]), "application/json", "max_documents"),
    ("max_document_bytes", 20, json.dumps(["short one", "x" * 40]), "application/json", "max_document_bytes"),
    ("max_archive_members", 1, _zip({"a.txt": b"one two\n", "b.txt": b"three four\n"}), "application/zip",
     "max_archive_members"),
    ("max_decompressed_bytes", 100, _zip({"a.txt": b"word " * 200}), "application/zip", "max_decompressed_bytes"),
])
def test_ingest_limits_come_from_settings(ctx_factory, setting, value, body, content_type, named):
    ctx = ctx_factory(**{setting: value})
    with TestClient(create_app(context=ctx, migrate=False)) as client:
        response = client.post("/v1/corpora", content=body, headers={"content-type": content_type})
        if content_type == "application/zip":  # archives are ingested by a worker: the job fails
            assert response.status_code == 202, response.text
            assert run_now(ctx, response.json()["job"]["id"]).state == "failed"
            error = client.get(f"/v1/jobs/{response.json()['job']['id']}").json()
            assert error["error_code"] == "invalid_input" and named in error["error_message"]
        else:
            assert response.status_code == 422, response.text
            assert named in response.json()["error"]["message"]
        assert client.get("/v1/corpora").json()["corpora"] == []
    assert list(ctx.settings.uploads_dir.iterdir()) == []  # nothing half-written is left


def test_ingest_limits_allow_what_fits(ctx_factory):
    ctx = ctx_factory(max_documents_per_corpus=4, max_document_bytes=64)
    with TestClient(create_app(context=ctx, migrate=False)) as client:
        response = client.post("/v1/corpora", json=["apple banana", "cherry grape", "dog cat", "mouse horse"],
                               params={"options": KEEP_ALL_TERMS})
        assert response.status_code == 201, response.text


def test_body_is_counted_as_it_streams_not_from_the_header():
    """With no Content-Length, or a false small one, the middleware stops the body at the cap:
    the application never receives more than ``max_bytes`` and the client gets a JSON 413."""
    received = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            received.append(len(message.get("body", b"")))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def run(headers):
        chunks = [{"type": "http.request", "body": b"x" * 400, "more_body": True} for _ in range(10)]
        sent = []

        async def receive():
            return chunks.pop(0)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
        await BodySizeLimitMiddleware(app, max_bytes=1000)(scope, receive, send)
        return sent, len(chunks)

    for headers in ([], [(b"content-length", b"10")]):
        received.clear()
        sent, left = asyncio.run(run(headers))
        assert sent[0]["status"] == 413
        assert json.loads(sent[1]["body"])["error"]["code"] == "body_too_large"
        assert sum(received) <= 1000 and left == 7  # stopped at the third chunk; the rest never read


def test_open_mode_uses_the_default_tenant_but_checks_keys_that_are_sent(ctx_factory):
    ctx = ctx_factory()  # REQUIRE_API_KEYS=false: the loopback-only embedded default
    with transaction(ctx.sessions) as session:
        token = create_api_key(session, f"k-{new_id()[:10]}").token
    with TestClient(create_app(context=ctx, migrate=False)) as client:
        keyless = upload(client)["id"]
        assert client.get(f"/v1/corpora/{keyless}").status_code == 200
        keyed = {"Authorization": f"Bearer {token}"}
        assert client.get(f"/v1/corpora/{keyless}", headers=keyed).status_code == 404  # another tenant
        wrong = client.get("/v1/corpora", headers={"Authorization": "Bearer st_wrong"})
        assert wrong.status_code == 401 and "www-authenticate" in wrong.headers


@pytest.mark.parametrize("server, open_", [(("127.0.0.1", 8000), True), (("::1", 8000), True),
                                           (("10.1.2.3", 8000), False), (("0.0.0.0", 8000), False),
                                           (None, True), (("testserver", 80), True)])
def test_open_mode_refuses_keyless_calls_that_arrive_on_a_public_address(ctx_factory, server, open_):
    from fastapi import Request

    from app.api.deps import get_tenant
    from app.core.api_errors import ApiError

    ctx = ctx_factory()
    request = Request({"type": "http", "method": "GET", "path": "/v1/jobs", "headers": [], "server": server})
    if open_:
        assert asyncio.run(get_tenant(request, ctx)) == ctx.settings.default_tenant
    else:
        with pytest.raises(ApiError) as refused:
            asyncio.run(get_tenant(request, ctx))
        assert refused.value.status_code == 401 and "WWW-Authenticate" in refused.value.headers
