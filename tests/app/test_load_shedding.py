"""Overload is shed, not queued: through real HTTP (uvicorn on a loopback port), requests past
API_MAX_CONCURRENCY wait API_QUEUE_WAIT_S, then answer 503 with Retry-After at once; once
the load is gone the next request is served normally; /health is never shed. Also: the
capacity settings are checked against each other."""
from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
import uvicorn

from app.core.settings import Settings
from app.main import create_app
from tests.e2e.conftest import free_port, wait_for


@pytest.fixture
def slow_api(ctx_factory):
    ctx = ctx_factory(api_max_concurrency=2, api_queue_wait_s=0.05, api_overload_retry_after_s=3)
    app = create_app(context=ctx, migrate=False)

    @app.get("/test/slow")
    async def slow() -> dict:  # a request that holds its slot for a while
        await asyncio.sleep(0.5)
        return {"ok": True}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: httpx.get(f"{url}/health", timeout=2).status_code, 20, "the API")
    yield url
    server.should_exit = True
    thread.join(timeout=10)


def test_requests_past_capacity_get_a_fast_503_and_the_api_recovers(slow_api):
    async def burst():
        async with httpx.AsyncClient(base_url=slow_api, timeout=10) as client:
            async def one():
                started = time.perf_counter()
                response = await client.get("/test/slow")
                return response, time.perf_counter() - started
            return await asyncio.gather(*(one() for _ in range(8)))

    results = asyncio.run(burst())
    served = [(r, t) for r, t in results if r.status_code == 200]
    shed = [(r, t) for r, t in results if r.status_code == 503]
    assert len(served) == 2 and len(shed) == 6, [r.status_code for r, _ in results]
    for response, elapsed in shed:
        assert response.headers["retry-after"] == "3"
        assert response.json()["error"]["code"] == "overloaded"
        assert elapsed < 0.4, elapsed  # answered after the short wait, not after the slow requests
    # The load is gone: nothing is left queued, the next requests are served at once.
    started = time.perf_counter()
    assert httpx.get(f"{slow_api}/test/slow", timeout=10).status_code == 200
    assert time.perf_counter() - started < 1.5


def test_health_is_never_shed(slow_api):
    async def burst():
        async with httpx.AsyncClient(base_url=slow_api, timeout=10) as client:
            slow = [asyncio.create_task(client.get("/test/slow")) for _ in range(4)]
            await asyncio.sleep(0.1)
            health = await client.get("/health")
            await asyncio.gather(*slow)
            return health

    body = asyncio.run(burst()).json()
    assert "error" not in body and body["database"]["ok"] is True  # a health report, not an overload 503


def test_capacity_settings_are_checked_against_each_other():
    with pytest.raises(ValueError, match="API_THREADS=4 must be >= API_MAX_CONCURRENCY=8"):
        Settings(api_threads=4, api_max_concurrency=8)
    with pytest.raises(ValueError, match="DB_POOL_SIZE \\+ DB_MAX_OVERFLOW = 6 must be >= API_MAX_CONCURRENCY=8"):
        Settings(db_pool_size=4, db_max_overflow=2, api_max_concurrency=8)
    with pytest.raises(ValueError):
        Settings(api_queue_wait_s=-1)
