"""/health: database, broker and worker reachability, and whether a GPU worker is up."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import Context
from app.api.schemas import ComponentHealth, HealthPublic, WorkerPublic
from app.services.health_checks import check_broker, check_database, live_workers

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthPublic,
            responses={503: {"model": HealthPublic, "description": "Database or broker unreachable"}})
async def health(ctx: Context) -> JSONResponse:
    db_ok, db_detail = await run_in_threadpool(check_database, ctx)
    broker_ok, broker_detail = await run_in_threadpool(check_broker, ctx)
    workers = await run_in_threadpool(live_workers, ctx) if db_ok else []
    status = "ok" if db_ok and broker_ok and workers else ("degraded" if db_ok and broker_ok else "down")
    body = HealthPublic(
        status=status, database=ComponentHealth(ok=db_ok, detail=db_detail),
        broker=ComponentHealth(ok=broker_ok, detail=broker_detail),
        workers=[WorkerPublic(id=w.id, queues=w.queues, gpu=w.gpu, last_seen=w.last_seen) for w in workers],
        gpu_worker=any(w.gpu for w in workers),
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if status != "down" else 503)
