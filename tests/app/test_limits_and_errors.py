"""Body-size cap on the ASGI stream, JSON error shape, OpenAPI, settings checks."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.core.settings import Settings
from app.main import create_app
from tests.app.helpers import KEEP_ALL_TERMS


@pytest.fixture
def small_client(ctx_factory):
    ctx = ctx_factory(max_body_bytes=1000)
    with TestClient(create_app(context=ctx, migrate=False)) as client:
        yield client, ctx


def test_declared_oversized_body_is_refused_before_reading(small_client):
    client, ctx = small_client
    response = client.post("/v1/corpora", content=b"x" * 5000, headers={"content-type": "text/plain"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert "1000 bytes" in response.json()["error"]["message"]


def test_streamed_body_without_length_is_counted(small_client):
    client, ctx = small_client

    def chunks():  # chunked transfer: no Content-Length to trust
        for _ in range(10):
            yield b"apple banana cherry\n" * 10

    response = client.post("/v1/corpora", content=chunks(), headers={"content-type": "text/plain"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert list(ctx.settings.uploads_dir.iterdir()) == []  # nothing half-written left behind
    assert client.get("/v1/corpora").json()["corpora"] == []


def test_lying_content_length_is_not_trusted(small_client):
    """A JSON route reading the body through FastAPI also hits the cap."""
    client, _ = small_client

    def chunks():
        yield b'{"corpus_id": "' + b"a" * 3000 + b'", "n_topics": 2}'

    response = client.post("/v1/models", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_small_body_passes(small_client):
    client, _ = small_client
    response = client.post("/v1/corpora", json=["apple banana cherry", "dog cat mouse"],
                           params={"options": KEEP_ALL_TERMS})
    assert response.status_code == 201


def test_unknown_route_and_method_are_json(client):
    response = client.get("/v1/nothing")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    response = client.put("/v1/corpora")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"


def test_openapi_documents_every_route(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    expected = {
        "/v1/corpora": {"get", "post"}, "/v1/corpora/{corpus_id}": {"get", "delete"},
        "/v1/corpora/{corpus_id}/vocabulary": {"get"}, "/v1/models": {"get", "post"},
        "/v1/models/{model_id}": {"get", "delete"}, "/v1/models/{model_id}/topics": {"get"},
        "/v1/models/{model_id}/documents": {"get"}, "/v1/models/{model_id}/infer": {"post"},
        "/v1/models/{model_id}/export": {"get"}, "/v1/jobs": {"get"}, "/v1/jobs/{job_id}": {"get"},
        "/v1/jobs/{job_id}/cancel": {"post"}, "/health": {"get"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
    assert "ErrorPublic" in spec["components"]["schemas"]
    assert "422" in paths["/v1/models"]["post"]["responses"]


def test_openapi_suits_client_generators(client):
    """One request content type per upload operation, binary export declared as binary only,
    and the bearer scheme on every /v1 operation (not on /health)."""
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert list(paths["/v1/corpora"]["post"]["requestBody"]["content"]) == ["application/json"]
    assert list(paths["/v1/corpora/files"]["post"]["requestBody"]["content"]) == ["multipart/form-data"]
    export = paths["/v1/models/{model_id}/export"]["get"]["responses"]["200"]["content"]
    assert set(export) == {"application/zip", "application/octet-stream"}
    assert all(media["schema"] == {"type": "string", "format": "binary"} for media in export.values())
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["bearer"]["description"]}
    for path, item in paths.items():
        for method, operation in item.items():
            assert (operation.get("security") == [{"bearer": []}]) == path.startswith("/v1"), (method, path)
    assert client.post("/v1/corpora/files", json=["a b c"]).status_code == 415


def test_settings_defaults_and_checks(tmp_path, monkeypatch):
    for name in ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(data_dir=tmp_path)
    assert settings.resolved_database_url == f"sqlite:///{tmp_path.resolve() / 'spectral-topics.db'}"
    assert settings.resolved_broker_url == f"sqla+sqlite:///{tmp_path.resolve() / 'broker.db'}"
    with pytest.raises(ValueError, match="filesystem broker"):
        Settings(broker_url="filesystem://")
    assert settings.queues == ["gpu", "cpu"]
    monkeypatch.setenv("REDIS_URL", "redis://example:6379/3")
    monkeypatch.setenv("MAX_BODY_BYTES", "123")
    settings = Settings()
    assert settings.resolved_broker_url == "redis://example:6379/3" and settings.max_body_bytes == 123
    with pytest.raises(ValueError, match="must exceed JOB_HARD_TIME_LIMIT_S"):
        Settings(job_soft_time_limit_s=10, job_hard_time_limit_s=100, broker_visibility_timeout_s=50)
    with pytest.raises(ValueError, match="must be >= JOB_SOFT_TIME_LIMIT_S"):
        Settings(job_soft_time_limit_s=100, job_hard_time_limit_s=50)
