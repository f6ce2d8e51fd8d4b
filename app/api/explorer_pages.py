"""The browser side of the service: the topic explorer (``/`` and ``/explore``), its static
files, and offline ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc).

Every asset is served from the installed packages: the explorer's own files from
``app/explorer/static``, Swagger UI's and ReDoc's bundles from the ``fastapi-offline``
package (no CDN, nothing fetched at run time, no build step). Pages carry a
Content-Security-Policy that allows only this service's scripts; the explorer's also
forbids inline styles, so data can never become markup or code.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

EXPLORER_DIR = Path(__file__).resolve().parent.parent / "explorer" / "static"

EXPLORER_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
                "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# Swagger UI and ReDoc set styles at run time (ReDoc through <style> elements, its search
# in a blob: worker); their scripts still come from this service only.
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'")

router = APIRouter(include_in_schema=False)


def _page(name: str, policy: str) -> FileResponse:
    return FileResponse(EXPLORER_DIR / name, media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff",
                                 "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"})


@router.get("/")
@router.get("/explore")
def explorer() -> FileResponse:
    return _page("index.html", EXPLORER_CSP)


@router.get("/docs")
def swagger_ui() -> FileResponse:
    return _page("swagger.html", DOCS_CSP)


@router.get("/redoc")
def redoc() -> FileResponse:
    return _page("redoc.html", DOCS_CSP)


def docs_assets_dir() -> Path:
    """Swagger UI's and ReDoc's files as shipped by the fastapi-offline package."""
    return Path(str(resources.files("fastapi_offline") / "static"))


def install_explorer(app: FastAPI) -> None:
    """Mount the explorer, its static files and the offline API docs on ``app`` (built with
    ``docs_url=None, redoc_url=None`` so that these pages replace FastAPI's CDN ones)."""
    app.include_router(router)
    app.mount("/static/explorer", StaticFiles(directory=EXPLORER_DIR), name="explorer-static")
    app.mount("/static/docs", StaticFiles(directory=docs_assets_dir()), name="docs-static")
