"""Cap request bodies while they stream in, before anything reads them whole.

Counts the bytes of the ASGI ``http.request`` messages; a declared Content-Length over the
cap is refused at once, but the count is what is trusted (chunked bodies have none).
"""
from __future__ import annotations

import json

from app.core.api_errors import ApiError, error_body


class BodyTooLarge(ApiError):
    def __init__(self, limit: int):
        super().__init__(413, "body_too_large", f"request body exceeds the limit of {limit} bytes (MAX_BODY_BYTES)")


class BodySizeLimitMiddleware:
    """Pure ASGI middleware raising :class:`BodyTooLarge` (HTTP 413) past ``max_bytes``."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_413(send, limit)
            return

        received = 0
        started = False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _send_413(send, limit)


async def _send_413(send, limit: int) -> None:
    body = json.dumps(error_body("body_too_large", BodyTooLarge(limit).message)).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
