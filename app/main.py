"""The FastAPI application: ``create_app(settings)``; nothing is built at import time."""
from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api import corpus_routes, health_routes, job_routes, model_routes
from app.api.body_limit import BodySizeLimitMiddleware
from app.api.deps import error_responses
from app.core.api_errors import install_error_handlers
from app.core.context import ServiceContext, build_context
from app.core.settings import Settings, get_settings
from app.migrations import upgrade_database


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

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        if context is None:
            ctx.close()

    app = FastAPI(
        title="spectral-topics",
        version="0.1.0",
        description="Topic models by the method of moments (spectral LDA). Errors are JSON: "
                    '`{"error": {"code": ..., "message": ...}}`.',
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.state.context = ctx
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    install_error_handlers(app)
    for module in (corpus_routes, model_routes, job_routes):
        app.include_router(module.router, responses=error_responses(401))
    app.include_router(health_routes.router)
    return app
