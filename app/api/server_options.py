"""How the API is served: the keyword arguments for ``uvicorn.run`` / ``uvicorn.Config``.

:func:`uvicorn_options` is the one place that chooses them, for every command that starts
uvicorn (``serve``, ``api``): uvloop's event loop and the httptools HTTP parser (C
implementations, about twice the requests per second of uvicorn's pure-Python fallbacks on
one core; both are dependencies, so they are named explicitly instead of left to uvicorn's
"auto", which would silently fall back when one is missing), the graceful shutdown timeout
and the connection backstop from the settings.
"""
from __future__ import annotations

import sys
from typing import Any

from app.core.settings import Settings


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Options for uvicorn besides the app, host, port and logging."""
    return {
        "loop": "asyncio" if sys.platform == "win32" else "uvloop",  # uvloop has no Windows build
        "http": "httptools",
        # On SIGTERM open requests get API_SHUTDOWN_TIMEOUT_S, then uvicorn cancels them.
        "timeout_graceful_shutdown": settings.api_shutdown_timeout_s,
        "limit_concurrency": settings.api_max_connections,
    }
