"""/health: database, broker and worker reachability, and whether a GPU worker is up.

200 "ok" (all up), 200 "degraded" (no live worker, nothing waiting for one), 503 "stalled"
(jobs queued on a queue no live worker consumes; named in ``stranded_queues``), 503 "down"
(database or broker unreachable)."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import Context
from app.api.schemas import ComponentHealth, HealthPublic, WorkerPublic
from app.services.health_checks import check_broker, check_database, live_workers, stranded_queues

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthPublic,
            responses={503: {"model": HealthPublic,
                             "description": "Database or broker unreachable, or queued jobs with no worker"}})
async def health(ctx: Context) -> JSONResponse:
    db_ok, db_detail = await run_in_threadpool(check_database, ctx)
    broker_ok, broker_detail = await run_in_threadpool(check_broker, ctx)
    workers = await run_in_threadpool(live_workers, ctx) if db_ok else []
    stranded = await run_in_threadpool(stranded_queues, ctx, workers) if db_ok else []
    if not (db_ok and broker_ok):
        status = "down"
    elif stranded:
        status = "stalled"
    else:
        status = "ok" if workers else "degraded"
    body = HealthPublic(
        status=status, database=ComponentHealth(ok=db_ok, detail=db_detail),
        broker=ComponentHealth(ok=broker_ok, detail=broker_detail),
        workers=[WorkerPublic(id=w.id, queues=w.queues, gpu=w.gpu, last_seen=w.last_seen) for w in workers],
        gpu_worker=any(w.gpu for w in workers), stranded_queues=stranded,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if status in ("ok", "degraded") else 503)
