"""GET /v1/models/{id}/topics through real HTTP (uvicorn on a loopback port), on SQLite and
PostgreSQL: one database query per request; the finished body is kept in the per-process
response cache (API_RESPONSE_CACHE_BYTES) keyed by the artifact files' identity, so a
replaced artifact is read (and verified) again, never served stale; another tenant's
request is refused before the cache is looked at."""
from __future__ import annotations

import httpx
import numpy as np
import pytest
from sqlalchemy import event, update

from app.artifacts.artifact_files import directory_checksum
from app.artifacts.model_artifact import TOPIC_WORD
from app.core.db import transaction
from app.core.ids import new_id
from app.core.response_cache import ResponseCache
from app.core.security import create_api_key
from app.core.settings import Settings
from app.core.tables import ModelRow
from app.services import model_service
from tests.app.helpers import fit_now, upload
from tests.app.live_server import serve_api


def _count_loads(monkeypatch) -> list:
    loads = []
    original = model_service.load_topic_word
    monkeypatch.setattr(model_service, "load_topic_word", lambda *a, **k: (loads.append(a), original(*a, **k))[1])
    return loads


def _count_statements(engine) -> list:
    """SQL statements the engine runs from now on (transaction control left out)."""
    statements = []

    def record(conn, cursor, sql, *rest):
        if sql.split(None, 1)[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK"):
            statements.append(sql)

    event.listen(engine, "before_cursor_execute", record)
    return statements


def test_topics_is_one_query_and_cached_until_the_artifact_changes(client, ctx, monkeypatch):
    model_id, _ = fit_now(ctx, client, upload(client)["id"])
    loads = _count_loads(monkeypatch)
    with serve_api(ctx) as url, httpx.Client(base_url=url, timeout=10) as http:
        statements = _count_statements(ctx.engine)
        first = http.get(f"/v1/models/{model_id}/topics", params={"top_n": 3})
        assert first.status_code == 200 and first.headers["content-type"] == "application/json"
        assert [len(t["words"]) for t in first.json()["topics"]] == [3, 3]
        assert len(statements) == 1, statements  # ownership, status, checksums: one SELECT
        for _ in range(5):
            again = http.get(f"/v1/models/{model_id}/topics", params={"top_n": 3})
            assert again.content == first.content
        assert len(loads) == 1  # read from disk once, then served from the cache
        assert len(statements) == 6  # still one query per request
        assert http.get(f"/v1/models/{model_id}/topics", params={"top_n": 4}).status_code == 200
        assert len(loads) == 2  # top_n is part of the key

        # The artifact is replaced (other weights, checksum recorded again): the next request
        # reads and verifies the new files instead of serving the cached body.
        folder = ctx.layout.model_dir(model_id)
        topic_word = np.load(folder / TOPIC_WORD)
        np.save(folder / TOPIC_WORD, topic_word[::-1].copy())
        with transaction(ctx.sessions) as session:
            session.execute(update(ModelRow).where(ModelRow.id == model_id)
                            .values(checksum=directory_checksum(folder)))
        replaced = http.get(f"/v1/models/{model_id}/topics", params={"top_n": 3})
        assert replaced.status_code == 200 and len(loads) == 3
        assert [t["words"] for t in replaced.json()["topics"]] == [t["words"] for t in first.json()["topics"]][::-1]

        # Replaced again without a new checksum: refused, not served from the cache.
        np.save(folder / TOPIC_WORD, topic_word)
        corrupt = http.get(f"/v1/models/{model_id}/topics", params={"top_n": 3})
        assert corrupt.status_code == 500 and corrupt.json()["error"]["code"] == "artifact_corrupt"


def test_a_cache_of_zero_bytes_reads_the_files_every_time(ctx_factory, monkeypatch):
    from fastapi.testclient import TestClient

    from app.main import create_app

    ctx = ctx_factory(api_response_cache_bytes=0)
    with TestClient(create_app(context=ctx, migrate=False)) as client:
        model_id, _ = fit_now(ctx, client, upload(client)["id"])
        loads = _count_loads(monkeypatch)
        bodies = {client.get(f"/v1/models/{model_id}/topics").content for _ in range(3)}
    assert len(loads) == 3 and len(bodies) == 1 and len(ctx.response_cache) == 0


@pytest.mark.parametrize("store", ["postgres"])
def test_another_tenant_never_reaches_a_cached_body(ctx_factory, store):
    from fastapi.testclient import TestClient

    from app.main import create_app

    ctx = ctx_factory(require_api_keys=True)
    with transaction(ctx.sessions) as session:
        owner = {"Authorization": f"Bearer {create_api_key(session, f'a-{new_id()[:10]}').token}"}
        other = {"Authorization": f"Bearer {create_api_key(session, f'b-{new_id()[:10]}').token}"}
    with TestClient(create_app(context=ctx, migrate=False)) as client:
        client.headers.update(owner)
        model_id, _ = fit_now(ctx, client, upload(client)["id"])
        assert client.get(f"/v1/models/{model_id}/topics").status_code == 200
        assert len(ctx.response_cache) == 1  # the owner's body is cached
        refused = client.get(f"/v1/models/{model_id}/topics", headers=other)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
        assert "topics" not in refused.json()
        missing = client.get(f"/v1/models/{new_id()}/topics")
        assert missing.status_code == 404


def test_response_cache_is_bounded_by_bytes_and_evicts_least_recently_used():
    cache = ResponseCache(max_bytes=10)
    cache.put("a", b"1234")
    cache.put("b", b"5678")
    assert cache.get("a") == b"1234"  # "a" is now the most recent
    cache.put("c", b"90ab")  # 12 bytes: "b" goes
    assert cache.get("b") is None and cache.get("a") == b"1234" and cache.get("c") == b"90ab"
    assert cache.size_bytes == 8
    cache.put("big", b"x" * 11)  # larger than the whole cache: not kept, nothing evicted
    assert cache.get("big") is None and len(cache) == 2
    cache.put("a", b"12")  # replacing an entry counts its new size only
    assert cache.size_bytes == 6
    off = ResponseCache(max_bytes=0)
    off.put("a", b"")
    off.put("b", b"1")
    assert off.get("a") is None and off.get("b") is None


def test_response_cache_setting_is_bounded():
    assert Settings().api_response_cache_bytes == 32 << 20
    assert Settings(api_response_cache_bytes=0).api_response_cache_bytes == 0
    for bad in (-1, 1 << 40, "lots"):
        with pytest.raises(ValueError, match="api_response_cache_bytes"):
            Settings(api_response_cache_bytes=bad)
