"""Alembic environment: runs online against the engine passed in ``config.attributes``."""
from __future__ import annotations

from alembic import context

from app.core.tables import Base

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    if connection.dialect.name == "postgresql":
        # API and workers may start together: one migrates, the others wait for it.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7428001)")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
