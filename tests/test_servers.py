"""The integration servers the suite depends on answer real protocol requests."""
import socket
from urllib.parse import urlparse


def test_redis_answers_ping(redis_url):
    parsed = urlparse(redis_url)
    with socket.create_connection((parsed.hostname, parsed.port or 6379), timeout=2) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(16).startswith(b"+PONG")


def test_postgres_accepts_connections(database_url):
    import psycopg

    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, connect_timeout=3) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
