"""Refuse malformed requests before any route or database sees them (a pure ASGI middleware).

* A NUL character in the path (raw or ``%00``): 404, no id contains one. PostgreSQL cannot
  store or compare text with NUL, and without this check the query would fail as a 500.
* A NUL character in the query string: 422 naming the parameter.
* More than one ``Authorization`` header: 400 (which one counts would be a guess).

Every refusal is the usual JSON error body; the connection stays open.
"""
from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.api_errors import error_body


class RequestGuardMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = _refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _refusal(scope: Scope) -> JSONResponse | None:
    path = scope.get("path", "")
    raw_path = scope.get("raw_path") or b""
    if "\x00" in path or b"%00" in raw_path or b"\x00" in raw_path:
        return JSONResponse(error_body("not_found", "no resource has a NUL character in its path"), status_code=404)
    query = scope.get("query_string") or b""
    if b"%00" in query or b"\x00" in query:
        names = sorted({name for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
                        if "\x00" in name or "\x00" in value})
        where = ", ".join(repr(n.replace("\x00", "\\x00")) for n in names) or "the query string"
        return JSONResponse(error_body("validation_error", f"query parameter {where} contains a NUL character"),
                            status_code=422)
    authorizations = [1 for name, _ in scope.get("headers", ()) if name.lower() == b"authorization"]
    if len(authorizations) > 1:
        return JSONResponse(error_body("bad_request", "send exactly one Authorization header"), status_code=400)
    return None
