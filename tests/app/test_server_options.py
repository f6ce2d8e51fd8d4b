"""The API is served by uvicorn with uvloop and httptools, named explicitly, with the
shutdown and connection limits from the settings: checked on the options, on what the
``api`` command passes to uvicorn (after freezing the startup objects out of the cyclic
garbage collector), and on a uvicorn Config built from them. (The running
``serve`` process is checked in tests/e2e/test_embedded_serve.py.)"""
from __future__ import annotations

import gc
import sys

import pytest
import uvicorn

from app.api.server_options import uvicorn_options
from app.cli import main
from app.core.settings import Settings


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop has no Windows build")
def test_uvicorn_options_name_uvloop_httptools_and_the_limits():
    options = uvicorn_options(Settings(api_shutdown_timeout_s=3, api_max_connections=99))
    assert options == {"loop": "uvloop", "http": "httptools", "timeout_graceful_shutdown": 3,
                       "limit_concurrency": 99}
    config = uvicorn.Config(lambda scope, receive, send: None, **options)
    config.load()  # fails if httptools is missing
    assert config.http_protocol_class.__name__ == "HttpToolsProtocol"
    assert config.get_loop_factory()().__class__.__module__.startswith("uvloop")


def test_the_api_command_runs_uvicorn_with_them(tmp_path, monkeypatch):
    for name in ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "REQUIRE_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("API_MAX_CONNECTIONS", "77")
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("gc.freeze"))  # not in the test process itself
    assert main(["api", "--port", "8123", "--data-dir", str(tmp_path)]) == 0
    assert calls[0] == "gc.freeze"  # the startup objects are frozen before serving
    calls.pop(0)
    assert len(calls) == 1
    assert calls[0]["loop"] == uvicorn_options(Settings())["loop"] and calls[0]["http"] == "httptools"
    assert calls[0]["limit_concurrency"] == 77 and calls[0]["port"] == 8123
