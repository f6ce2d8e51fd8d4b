"""bench/load.py's lean HTTP/1.1 generator against a real uvicorn server (the options the
API runs with): statuses, Retry-After and bodies parsed, keep-alive connections reused,
a closed connection not reused, and the open-loop phase counting every request sent."""
from __future__ import annotations

import asyncio
import json
import sys

import pytest

from app.core.settings import Settings
from bench.lean_http import LeanHttpClient
from tests.app.live_server import serve_asgi
from tests.bench_scripts import BENCH, load_bench_script
from tests.e2e.conftest import free_port


async def _app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if path == "/busy":
        status, headers, out = 503, [(b"retry-after", b"7")], b'{"error": "busy"}'
    elif path == "/close":
        status, headers, out = 200, [(b"connection", b"close")], b"bye"
    else:
        status, headers, out = 200, [], json.dumps({"echo": body.decode(), "method": scope["method"]}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": out})


@pytest.fixture(scope="module")
def server():
    with serve_asgi(_app, Settings()) as port:
        yield port


def test_lean_client_parses_answers_and_reuses_connections(server):
    async def run():
        client = LeanHttpClient("127.0.0.1", server)
        try:
            replies = [await client.request("GET", "/ok") for _ in range(5)]
            posted = await client.request("POST", "/ok", b'{"a": 1}')
            busy = await client.request("GET", "/busy")
            opened_before_close = client.connections_opened
            closed = await client.request("GET", "/close")
            after_close = await client.request("GET", "/ok")
            return replies, posted, busy, opened_before_close, closed, after_close, client.connections_opened
        finally:
            await client.aclose()

    replies, posted, busy, opened_before_close, closed, after_close, opened = asyncio.run(run())
    assert [r.status for r in replies] == [200] * 5 and json.loads(replies[0].body)["method"] == "GET"
    assert json.loads(posted.body) == {"echo": '{"a": 1}', "method": "POST"}
    assert busy.status == 503 and busy.retry_after == "7"
    assert opened_before_close == 1  # one keep-alive connection for seven sequential requests
    assert closed.status == 200 and closed.body == b"bye"
    assert after_close.status == 200 and opened == 2  # the closed connection was not reused


def test_open_loop_counts_every_request_sent(server, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    load = load_bench_script("load")
    base = f"http://127.0.0.1:{server}"
    ok = asyncio.run(load.open_loop(base, 200, 0.5, load.Req("GET", "/ok")))
    assert ok["sent"] == 100 and ok["ok"] == 100 and ok["errors"] == 0 and ok["client"] == "lean"
    assert 0 < ok["cpu_per_request"] < 0.05 and ok["p99"] < load.REQUEST_TIMEOUT_S
    busy = asyncio.run(load.open_loop(base, 100, 0.3, load.Req("GET", "/busy"), client="httpx"))
    assert busy["sent"] == 30 and busy["shed"] == 30 and busy["ok"] == 0 and busy["shed_without_retry_after"] == 0
    refused = asyncio.run(load.open_loop(f"http://127.0.0.1:{free_port()}", 100, 0.2, load.Req("GET", "/ok")))
    assert refused["errors"] == 20 and refused["p99"] == load.REQUEST_TIMEOUT_S  # failures count as timeouts
    sys.modules.pop("lean_http", None)
