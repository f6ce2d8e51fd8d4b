"""JSON errors: every error response is ``{"error": {"code": ..., "message": ...}}``.

Bad input (:class:`gpu.errors.InvalidInput` from ingestion, the engine or our own checks)
becomes a 422 with its message; unknown ids a 404; anything else, a ValueError included, is a
server fault: a 500 whose message and paths never reach the client (a damaged stored artifact
is a 500 with code ``artifact_corrupt``). A value the database cannot store (a NUL
character in a text) is the caller's: 422.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.artifacts.artifact_files import ArtifactCorrupt
from gpu.errors import InvalidInput

log = logging.getLogger(__name__)

_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 409: "conflict",
          413: "body_too_large", 415: "unsupported_media_type", 422: "validation_error",
          429: "too_many_requests", 503: "unavailable"}


class ApiError(StarletteHTTPException):
    """An error with an HTTP status, a machine-readable code and a human message.

    Subclasses Starlette's HTTPException so FastAPI re-raises it untouched even while it
    is reading a request body (the body-size cap relies on that).
    """

    def __init__(self, status_code: int, code: str, message: str, headers: dict | None = None):
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code = code
        self.message = message


def not_found(kind: str, identifier: str) -> ApiError:
    return ApiError(404, "not_found", f"{kind} {identifier!r} does not exist")


def error_body(code: str, message: str, **extra) -> dict:
    return {"error": {"code": code, "message": message, **extra}}


def _format_validation(errors) -> str:
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {err.get('msg')}")
    return "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException):
        code = _CODES.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError):
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
        return JSONResponse(
            error_body("validation_error", _format_validation(exc.errors()), details=details), status_code=422
        )

    @app.exception_handler(InvalidInput)
    async def _invalid_input(_request: Request, exc: InvalidInput):
        return JSONResponse(error_body("invalid_input", str(exc)), status_code=422)

    @app.exception_handler(DataError)
    async def _unstorable(_request: Request, exc: DataError):
        log.warning("the database refused a value of a request: %s", exc.__class__.__name__, exc_info=exc)
        return JSONResponse(error_body("invalid_input", "a value in the request cannot be stored (for example "
                                                        "a NUL character in a text)"), status_code=422)

    @app.exception_handler(ArtifactCorrupt)
    async def _artifact_corrupt(_request: Request, exc: ArtifactCorrupt):
        log.error("stored artifact failed its check: %s", exc)
        return JSONResponse(error_body("artifact_corrupt", "a stored artifact of this resource is missing or "
                                                           "damaged; the operator has been told"), status_code=500)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception):
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)
