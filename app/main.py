"""The FastAPI application: ``create_app(settings)``; nothing is built at import time."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from app.api import corpus_routes, explorer_routes, health_routes, job_routes, model_routes
from app.api.body_limit import BodySizeLimitMiddleware
from app.api.request_guards import RequestGuardMiddleware
from app.api.explorer_pages import install_explorer
from app.api.deps import error_responses
from app.api.load_shedding import ConcurrencyLimitMiddleware
from app.core.api_errors import install_error_handlers
from app.core.context import ServiceContext, build_context
from app.core.settings import Settings, get_settings
from app.migrations import upgrade_database
from app.services.corpus_service import sweep_stale_uploads

log = logging.getLogger(__name__)


def operation_id(route) -> str:
    """OpenAPI operationId '<tag>_<function>' (corpora_upload_files, models_export): the method
    names of generated clients."""
    return f"{route.tags[0]}_{route.name}" if route.tags else route.name


def create_app(settings: Settings | None = None, *, migrate: bool = True,
               context: ServiceContext | None = None) -> FastAPI:
    """Build the API. Migrates the database first unless ``migrate=False``."""
    settings = settings or (context.settings if context else get_settings())
    ctx = context or build_context(settings)
    if migrate:
        upgrade_database(ctx.engine)
    try:  # partial uploads of an API process that was killed (a worker waits 24 h for them)
        sweep_stale_uploads(ctx, older_than_s=settings.upload_sweep_age_s)
    except Exception:  # the database may be down at start: /health says so; sweep next time
        log.warning("could not sweep stale uploads at start", exc_info=True)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        # Sync routes run on anyio's default thread pool: size it with the other capacity settings.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        yield
        if context is None:
            ctx.close()

    app = FastAPI(
        title="spectral-topics",
        version="0.1.0",
        description="Topic models by the method of moments (spectral LDA). Errors are JSON: "
                    '`{"error": {"code": ..., "message": ...}}`.',
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc are served offline by install_explorer
        redoc_url=None,
        generate_unique_id_function=operation_id,
    )
    app.state.context = ctx
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestGuardMiddleware)
    app.add_middleware(ConcurrencyLimitMiddleware, max_concurrency=settings.api_max_concurrency,
                       max_wait_s=settings.api_queue_wait_s, retry_after_s=settings.api_overload_retry_after_s)
    install_error_handlers(app)
    for module in (corpus_routes, model_routes, job_routes, explorer_routes):
        app.include_router(module.router, responses=error_responses(401))
    app.include_router(health_routes.router)
    install_explorer(app)
    return app
