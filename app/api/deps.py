"""Dependencies shared by the routes (Annotated, FastAPI style)."""
from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.api.schemas import ErrorPublic
from app.core.api_errors import ApiError
from app.core.context import ServiceContext
from app.core.security import is_loopback, verify_token


async def get_context(request: Request) -> ServiceContext:
    """The process's context; async (no I/O), so it costs no threadpool hop."""
    return request.app.state.context


Context = Annotated[ServiceContext, Depends(get_context)]


def get_session(ctx: Context) -> Iterator[Session]:
    with ctx.sessions() as session:
        yield session


def _unauthorized(message: str, error: str) -> ApiError:
    challenge = f'Bearer realm="spectral-topics", error="{error}"' if error else 'Bearer realm="spectral-topics"'
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


def _arrived_on_loopback(request: Request) -> bool:
    """False when the connection reached a non-loopback local address: an open API started
    some other way than the CLI (e.g. uvicorn --host 0.0.0.0) still refuses keyless calls.
    Servers that give no IP address (unix sockets, the test client) count as local."""
    server = request.scope.get("server")
    host = server[0] if server else None
    try:
        ipaddress.ip_address(host or "")
    except ValueError:
        return True
    return is_loopback(host)


# Declares the bearer scheme in the OpenAPI schema (Swagger's "Authorize", generated clients'
# token argument); get_tenant below reads the header itself, so its answers stay JSON errors.
_BEARER = HTTPBearer(auto_error=False, scheme_name="bearer",
                     description="An API key from `spectral-topics keys create`, sent as `Authorization: Bearer <key>`.")


async def get_tenant(request: Request, ctx: Context,
                     _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)] = None) -> str:
    """The caller's tenant, from ``Authorization: Bearer <key>``.

    A key that is sent must be valid and unrevoked (else 401), whatever the mode. Without a
    key: 401 when REQUIRE_API_KEYS is set or the request came in on a non-loopback address,
    else the open default tenant. Async: only a sent key costs a threadpool hop (its lookup).
    """
    header = request.headers.get("authorization")
    if header is None:
        if ctx.settings.require_api_keys or not _arrived_on_loopback(request):
            raise _unauthorized("an API key is required: send 'Authorization: Bearer <key>'", "")
        return ctx.settings.default_tenant
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("the Authorization header must be 'Bearer <key>'", "invalid_request")
    tenant = await run_in_threadpool(_tenant_of_key, ctx, token.strip())
    if tenant is None:
        raise _unauthorized("the API key is invalid or revoked", "invalid_token")
    return tenant


def _tenant_of_key(ctx: ServiceContext, token: str) -> str | None:
    with ctx.sessions() as session:
        return verify_token(session, token)


MAX_OFFSET = 2**31 - 1  # paging offsets are bound to SQL integers

SessionDep = Annotated[Session, Depends(get_session)]
Tenant = Annotated[str, Depends(get_tenant)]

_DESCRIPTIONS = {
    401: "Missing, invalid or revoked API key", 429: "Too many active jobs for this tenant (see Retry-After)",
    404: "Unknown id", 409: "Conflict with the resource's state", 413: "Request body too large",
    415: "Unsupported content type for this operation",
    422: "Invalid input: the message says what and where", 503: "A dependency is unreachable or the job queue is full",
}


def error_responses(*codes: int) -> dict:
    """OpenAPI entries for the JSON error bodies a route can return."""
    return {code: {"model": ErrorPublic, "description": _DESCRIPTIONS[code]} for code in codes}
