"""/health, migrations on both databases, random ids, tenant isolation."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from fastapi.testclient import TestClient

from app.core.db import transaction, utcnow
from app.core.ids import new_id
from app.core.tables import WorkerRow
from app.main import create_app
from app.migrations import downgrade_database, upgrade_database
from tests.app.helpers import upload
from workers.heartbeat import beat


def test_health_reports_database_broker_and_workers(ctx_factory):
    # Queues of its own: queued jobs of other tests (a shared PostgreSQL schema) would make it "stalled".
    ctx = ctx_factory(gpu_queue=f"h-{new_id()[:10]}", cpu_queue=f"h-{new_id()[:10]}")
    client = TestClient(create_app(context=ctx, migrate=False))
    body = client.get("/health").json()
    assert body["database"]["ok"] and body["broker"]["ok"]
    assert body["workers"] == [] and body["gpu_worker"] is False and body["status"] == "degraded"
    beat(ctx, "host:1", ["cpu"], gpu=False)
    beat(ctx, "host:2", ["gpu"], gpu=True)
    with transaction(ctx.sessions) as session:  # a worker that stopped beating long ago
        session.add(WorkerRow(id="host:3", hostname="host", queues=["gpu"], gpu=True,
                              started_at=utcnow(), last_seen=utcnow() - timedelta(hours=1)))
    response = client.get("/health")
    body = response.json()
    assert response.status_code == 200 and body["status"] == "ok"
    assert [w["id"] for w in body["workers"]] == ["host:1", "host:2"] and body["gpu_worker"] is True


def test_health_is_503_when_the_database_is_down(ctx_factory):
    ctx = ctx_factory()
    app = create_app(context=ctx, migrate=False)
    ctx.engine.dispose()
    ctx.engine = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 1})
    with TestClient(app) as client:
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["database"]["ok"] is False and response.json()["status"] == "down"


def test_health_reports_an_unreachable_broker(ctx_factory):
    ctx = ctx_factory(broker_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(context=ctx, migrate=False)) as client:
        body = client.get("/health").json()
    assert body["broker"]["ok"] is False and body["status"] == "down"


def test_submit_with_unreachable_broker_is_503_and_job_fails(ctx_factory):
    ctx = ctx_factory(broker_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(context=ctx, migrate=False)) as client:
        corpus = upload(client)
        response = client.post("/v1/models", json={"corpus_id": corpus["id"], "n_topics": 2})
        assert response.status_code == 503 and response.json()["error"]["code"] == "broker_unavailable"
        job = client.get("/v1/jobs").json()["jobs"][0]
        assert job["state"] == "failed" and job["error_code"] == "broker_unavailable"


def test_migrations_upgrade_downgrade_roundtrip(ctx):
    inspector = sa.inspect(ctx.engine)
    assert {"corpora", "models", "jobs", "workers"} <= set(inspector.get_table_names())
    job_columns = {c["name"] for c in inspector.get_columns("jobs")}
    assert {"tenant_id", "attempts", "lease_owner", "lease_expires_at", "soft_time_limit_s",
            "hard_time_limit_s", "idempotency_key"} <= job_columns
    for table in ("corpora", "models", "jobs"):
        assert "tenant_id" in {c["name"] for c in inspector.get_columns(table)}
    if ctx.engine.dialect.name == "sqlite":  # the shared PostgreSQL schema stays as it is
        downgrade_database(ctx.engine)
        assert set(sa.inspect(ctx.engine).get_table_names()) == {"alembic_version"}
        upgrade_database(ctx.engine)
        assert "jobs" in sa.inspect(ctx.engine).get_table_names()
    upgrade_database(ctx.engine)  # idempotent


def test_ids_are_random_and_tenants_isolated(ctx_factory, tmp_path):
    first = ctx_factory()
    other = ctx_factory(default_tenant="someone-else")
    with TestClient(create_app(context=first, migrate=False)) as a, \
            TestClient(create_app(context=other, migrate=False)) as b:
        ids = [upload(a)["id"] for _ in range(3)]
        assert len(set(ids)) == 3 and all(len(i) == 32 for i in ids)
        assert b.get(f"/v1/corpora/{ids[0]}").status_code == 404
        assert b.get("/v1/corpora").json()["corpora"] == []


def test_health_is_503_while_queued_jobs_have_no_worker(ctx_factory):
    queue = f"q-{new_id()[:10]}"
    ctx = ctx_factory(gpu_queue=f"{queue}-gpu", cpu_queue=f"{queue}-cpu")
    with TestClient(create_app(context=ctx, migrate=False)) as client:
        corpus = upload(client)
        assert client.get("/health").json()["status"] in ("ok", "degraded")
        assert client.post("/v1/models", json={"corpus_id": corpus["id"], "n_topics": 2}).status_code == 202
        response = client.get("/health")
        assert response.status_code == 503
        assert response.json()["status"] == "stalled" and response.json()["stranded_queues"] == [f"{queue}-gpu"]
        beat(ctx, f"host:{queue}", [f"{queue}-cpu"], gpu=False)  # a worker, but not for the fit's queue
        assert client.get("/health").status_code == 503
        beat(ctx, f"host:{queue}", [f"{queue}-gpu", f"{queue}-cpu"], gpu=False)
        response = client.get("/health")
        assert response.status_code == 200 and response.json()["status"] == "ok"
        assert response.json()["stranded_queues"] == []
