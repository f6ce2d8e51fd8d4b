"""Dependencies shared by the routes (Annotated, FastAPI style)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.context import ServiceContext
from app.schemas import ErrorPublic


def get_context(request: Request) -> ServiceContext:
    return request.app.state.context


Context = Annotated[ServiceContext, Depends(get_context)]


def get_session(ctx: Context) -> Iterator[Session]:
    with ctx.sessions() as session:
        yield session


def get_tenant(ctx: Context) -> str:
    """The caller's tenant. One local tenant for now; authentication will decide it later."""
    return ctx.settings.default_tenant


MAX_OFFSET = 2**31 - 1  # paging offsets are bound to SQL integers

SessionDep = Annotated[Session, Depends(get_session)]
Tenant = Annotated[str, Depends(get_tenant)]

_DESCRIPTIONS = {
    404: "Unknown id", 409: "Conflict with the resource's state", 413: "Request body too large",
    422: "Invalid input: the message says what and where", 503: "A dependency is unreachable",
}


def error_responses(*codes: int) -> dict:
    """OpenAPI entries for the JSON error bodies a route can return."""
    return {code: {"model": ErrorPublic, "description": _DESCRIPTIONS[code]} for code in codes}
