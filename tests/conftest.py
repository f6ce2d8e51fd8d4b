"""Shared fixtures: real servers (PostgreSQL, Redis) and temporary data directories.

With CI=true a missing server is a test failure, never a skip.
"""
from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import pytest

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url.replace("+psycopg", ""))
    host = parsed.hostname or "127.0.0.1"
    port = parsed.port or default_port
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _require_server(url: str, default_port: int, name: str) -> str:
    if _reachable(url, default_port):
        return url
    message = f"{name} is not reachable at {url}"
    if _in_ci():
        pytest.fail(message + " (CI=true: a missing server is a failure)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def database_url() -> str:
    """URL of the real PostgreSQL server used by integration tests."""
    return _require_server(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL), 5432, "PostgreSQL")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the real Redis server used by integration tests."""
    return _require_server(os.environ.get("REDIS_URL", DEFAULT_REDIS_URL), 6379, "Redis")
