"""The API served by a real uvicorn server in a thread, with the options the CLI uses (for
tests that need real HTTP connections: keep-alive, concurrent requests)."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from app.api.server_options import uvicorn_options
from app.core.context import ServiceContext
from app.core.settings import Settings
from app.main import create_app


@contextmanager
def serve_asgi(app, settings: Settings, **config) -> Iterator[int]:
    """Serve the ASGI ``app`` with uvicorn, with the options the CLI uses for ``settings``
    (plus ``config``), on a free loopback port in a thread; yields the port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           **config, **uvicorn_options(settings)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def serve_api(ctx: ServiceContext) -> Iterator[str]:
    """Serve ``ctx``'s API on a free loopback port; yields its base URL."""
    with serve_asgi(create_app(context=ctx, migrate=False), ctx.settings, lifespan="off") as port:
        yield f"http://127.0.0.1:{port}"
