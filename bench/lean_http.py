"""A lean HTTP/1.1 client for load generation: raw asyncio streams, keep-alive connections
from a pool, minimal parsing.

Why: on a 2-core machine the load generator shares the CPUs with the server it measures,
and httpx's AsyncClient spends 1.6-2.9 ms of CPU per request, so at a few hundred requests
per second the generator itself saturates a core and its own queueing shows up as server
latency. This client writes a prebuilt request and reads the status line, the headers it
needs (Content-Length, Retry-After, Connection) and exactly Content-Length body bytes.

Contract:

- ``await client.request(method, path, body=None, content_type=...)`` -> ``Reply(status,
  retry_after, body)``; raises ``OSError`` / ``asyncio.IncompleteReadError`` /
  ``ProtocolError`` when the connection fails or the answer is not HTTP/1.1 it can parse.
  Cancelling it (e.g. ``asyncio.wait_for``) closes the connection it was using.
- Answers must carry Content-Length (uvicorn's do for JSON bodies); chunked bodies raise
  ProtocolError. A connection answered with ``Connection: close`` is closed, not reused.
- Connections are opened on demand, so an open-loop caller is never held back by the pool:
  up to ``max_connections`` at once, after that a request waits for an idle one.
- ``await client.aclose()`` closes every idle connection.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass


class ProtocolError(Exception):
    """The server's answer is not something this client parses."""


@dataclass(frozen=True)
class Reply:
    status: int
    retry_after: str | None
    body: bytes


class LeanHttpClient:
    def __init__(self, host: str, port: int, *, max_connections: int = 512):
        self.host, self.port = host, port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(max_connections)
        self.connections_opened = 0

    async def request(self, method: str, path: str, body: bytes | None = None,
                      content_type: str = "application/json") -> Reply:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body is not None:
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        payload = (head + "\r\n").encode("latin-1") + (body or b"")
        async with self._slots:
            connection = self._idle.pop() if self._idle else await self._open()
            reader, writer = connection
            reusable = False
            try:
                writer.write(payload)
                reply, reusable = await _read_reply(reader)
                return reply
            finally:
                if reusable:
                    self._idle.append(connection)
                else:
                    writer.close()

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.connections_opened += 1
        return await asyncio.open_connection(self.host, self.port)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()


async def _read_reply(reader: asyncio.StreamReader) -> tuple[Reply, bool]:
    """(the reply, whether the connection may be reused)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {lines[0]!r}")
    length, retry_after, keep_alive = None, None, version == "HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "retry-after":
            retry_after = value.strip()
        elif name == "connection":
            keep_alive = value.strip().lower() != "close"
        elif name == "transfer-encoding":
            raise ProtocolError("chunked answers are not supported")
    if length is None:
        raise ProtocolError("an answer without Content-Length")
    body = await reader.readexactly(length) if length else b""
    return Reply(int(rest[:3]), retry_after, body), keep_alive
