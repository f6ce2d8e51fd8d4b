"""Database engine and sessions (SQLAlchemy 2).

SQLite is the embedded default: WAL journal (readers never block the writer), a busy
timeout, foreign keys on, and write transactions (:func:`transaction`) started with
``BEGIN IMMEDIATE`` so two processes (API and worker) never deadlock upgrading a read lock
to a write lock; plain reads use a deferred ``BEGIN``. PostgreSQL is used as is.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timezone

from sqlalchemy import DateTime, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timestamp that is always timezone-aware UTC in Python, whatever the database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: use timezone-aware UTC")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


_IMMEDIATE = "sqlite_begin_immediate"


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 10, pool_timeout_s: float = 30.0) -> Engine:
    """Create an engine for ``url`` with the per-dialect settings described above and a
    connection pool of ``pool_size`` + ``max_overflow`` (a caller waits ``pool_timeout_s``
    for a connection, then gets sqlalchemy.exc.TimeoutError)."""
    pool = dict(pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout_s)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool)
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        immediate = connection.get_execution_options().get(_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A write session: committed on success, rolled back on any exception (on SQLite it
    takes the write lock up front)."""
    with factory() as session, session.begin():
        session.connection(execution_options={_IMMEDIATE: True})
        yield session
