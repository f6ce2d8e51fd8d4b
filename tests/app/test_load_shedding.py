"""Overload is shed, not queued: through real HTTP (uvicorn on a loopback port), requests past
API_MAX_CONCURRENCY wait API_QUEUE_WAIT_S, then answer 503 with Retry-After at once; past
the bound on waiting requests they answer 503 without waiting; once the load is gone the
next request is served normally; /health is never shed. Also: the capacity settings are
checked against each other."""
from __future__ import annotations

import asyncio
import threading
import time
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from app.api.server_options import uvicorn_options
from app.core.settings import Settings
from app.main import create_app
from tests.e2e.conftest import free_port, wait_for


@contextmanager
def _slow_api(ctx_factory, **settings):
    """The API with a /test/slow route holding its slot for 0.5 s, served by uvicorn with
    the CLI's options on a loopback port; yields its URL."""
    ctx = ctx_factory(**settings)
    app = create_app(context=ctx, migrate=False)

    @app.get("/test/slow")
    async def slow() -> dict:  # a request that holds its slot for a while
        await asyncio.sleep(0.5)
        return {"ok": True}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           **uvicorn_options(ctx.settings)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: httpx.get(f"{url}/health", timeout=2).status_code, 20, "the API")
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def slow_api(ctx_factory):
    with _slow_api(ctx_factory, api_max_concurrency=2, api_queue_wait_s=0.05, api_overload_retry_after_s=3) as url:
        yield url


def _burst(url: str, n: int) -> list[tuple[httpx.Response, float]]:
    """``n`` concurrent GET /test/slow on separate connections: (response, seconds) each."""
    async def burst():
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            async def one():
                started = time.perf_counter()
                response = await client.get("/test/slow")
                return response, time.perf_counter() - started
            return await asyncio.gather(*(one() for _ in range(n)))

    return asyncio.run(burst())


def test_past_the_waiting_bound_requests_are_shed_at_once(ctx_factory):
    # 2 slots, and 2 requests may wait (a full second, longer than a slow request takes):
    # 2 are served at once, 2 after waiting, the other 4 answered 503 at once, not after the wait.
    with _slow_api(ctx_factory, api_max_concurrency=2, api_queue_wait_s=1.0, api_overload_retry_after_s=2) as url:
        results = _burst(url, 8)
    served = [t for r, t in results if r.status_code == 200]
    shed = [(r, t) for r, t in results if r.status_code == 503]
    assert len(served) == 4 and len(shed) == 4, [r.status_code for r, _ in results]
    assert max(served) >= 0.9  # two of them waited for a slot behind a 0.5 s request
    for response, elapsed in shed:
        assert response.headers["retry-after"] == "2" and response.json()["error"]["code"] == "overloaded"
        assert elapsed < 0.45, elapsed  # before any slot was free again: not queued


def test_requests_past_capacity_get_a_fast_503_and_the_api_recovers(slow_api):
    results = _burst(slow_api, 8)
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
