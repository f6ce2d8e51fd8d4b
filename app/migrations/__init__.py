"""Alembic migrations shipped inside the package, configured in code (no alembic.ini).

``upgrade_database(url)`` brings a database to the newest revision; the API and the
workers call it at start-up, and tests call it on a fresh schema.
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from app.core.db import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(engine: Engine) -> Config:
    """An Alembic config pointing at this package, bound to ``engine`` (no ini file)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def _run(step, url_or_engine: str | Engine, revision: str) -> None:
    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        step(alembic_config(engine), revision)
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


def upgrade_database(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Apply every migration up to ``revision`` (a URL or an engine)."""
    _run(command.upgrade, url_or_engine, revision)


def downgrade_database(url_or_engine: str | Engine, revision: str = "base") -> None:
    """Revert migrations down to ``revision``."""
    _run(command.downgrade, url_or_engine, revision)
