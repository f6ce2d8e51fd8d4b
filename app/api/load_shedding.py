"""Shed overload instead of queueing it: at most ``max_concurrency`` requests are handled
at once; past that a request waits up to ``max_wait_s`` for a slot, then answers 503
``{"error": {"code": "overloaded", ...}}`` with ``Retry-After``, without touching the
thread pool or the database. At most ``max_waiting`` requests wait (``max_concurrency`` by
default): any more are answered 503 at once, so under a real overload the excess costs one
small answer each instead of a timer and a queue that grows. Once the load drops, requests
get slots again immediately: nothing is left queued behind them.

Paths in ``exempt`` (``/health``) are never shed, so an orchestrator still sees the
service's state under overload.
"""
from __future__ import annotations

import asyncio
import json

from app.core.api_errors import error_body


class ConcurrencyLimitMiddleware:
    """Pure ASGI middleware; one instance (and one semaphore) per app."""

    def __init__(self, app, *, max_concurrency: int, max_wait_s: float, retry_after_s: int,
                 max_waiting: int | None = None, exempt: tuple[str, ...] = ("/health",)):
        self.app = app
        self.max_wait_s = max_wait_s
        self.retry_after_s = retry_after_s
        self.max_waiting = max_concurrency if max_waiting is None else max_waiting
        self.exempt = exempt
        self._slots = asyncio.Semaphore(max_concurrency)
        self._waiting = 0  # requests waiting for a slot now (one event loop: no lock needed)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        if not self._slots.locked():
            await self._slots.acquire()  # a free slot: no timer, no wait
        elif self._waiting >= self.max_waiting:
            await self._send_503(send)
            return
        else:
            self._waiting += 1
            try:
                await asyncio.wait_for(self._slots.acquire(), timeout=self.max_wait_s)
            except TimeoutError:
                await self._send_503(send)
                return
            finally:
                self._waiting -= 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._slots.release()

    async def _send_503(self, send) -> None:
        message = f"the server is at capacity; retry after {self.retry_after_s} s"
        body = json.dumps(error_body("overloaded", message)).encode()
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"retry-after", str(self.retry_after_s).encode())]})
        await send({"type": "http.response.body", "body": body})
