"""Fixtures shared by tests/app, tests/workers and tests/e2e (imported by their conftests).

Isolation: SQLite runs get a fresh database file per test; PostgreSQL runs share one fresh
schema per session (dropped at the end), and each test gets its own tenant id, so listings
never see another test's rows. Redis runs use queue names unique to the session.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from fastapi.testclient import TestClient

from app.core.context import build_context
from app.core.ids import new_id
from app.core.settings import Settings
from app.main import create_app
from app.migrations import upgrade_database


def embedded_settings(data_dir: Path, **overrides) -> Settings:
    """SQLite + the embedded SQLite broker under ``data_dir``, whatever the environment says."""
    values = dict(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'test.db'}", broker_url=None,
                  redis_url=None, default_tenant=f"t-{new_id()[:12]}", progress_interval_s=0.0)
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def pg_schema_url(database_url):
    """A fresh, migrated PostgreSQL schema for this test session."""
    schema = f"st_{new_id()[:16]}"
    raw = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in database_url else "?"
    url = f"{database_url}{separator}options={quote(f'-csearch_path={schema}')}"
    upgrade_database(url)
    yield url
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def store(request):
    """Which database a test runs on (every service test runs on both)."""
    return request.param


@pytest.fixture
def settings_factory(store, tmp_path, request):
    def make(**overrides) -> Settings:
        if store == "postgres":
            overrides.setdefault("database_url", request.getfixturevalue("pg_schema_url"))
        return embedded_settings(tmp_path / "data", **overrides)

    return make


@pytest.fixture
def ctx_factory(settings_factory):
    built = []

    def make(**overrides):
        ctx = build_context(settings_factory(**overrides))
        upgrade_database(ctx.engine)
        built.append(ctx)
        return ctx

    yield make
    for ctx in built:
        ctx.close()


@pytest.fixture
def ctx(ctx_factory):
    return ctx_factory()


@pytest.fixture
def client(ctx):
    with TestClient(create_app(context=ctx, migrate=False)) as test_client:
        yield test_client
