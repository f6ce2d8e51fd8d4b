"""A per-process, byte-bounded LRU of finished response bodies.

Contract:

- :meth:`ResponseCache.get` returns the bytes stored under ``key`` or None; :meth:`put`
  stores them, evicting the least recently used entries until the total size of the stored
  bodies is at most ``max_bytes``. A body larger than ``max_bytes`` is not stored, and
  ``max_bytes=0`` disables the cache (``get`` always misses).
- The cache knows nothing about what a key means: the caller makes the key name everything
  the body depends on (ids, checksums, the identity of the files it was read from, query
  parameters), and checks whatever the caller may see (tenant ownership) before it looks.
- Thread-safe: one instance per process, held by the ServiceContext (never a module global).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable


class ResponseCache:
    """LRU of ``bytes`` values bounded by their total length (``API_RESPONSE_CACHE_BYTES``)."""

    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        """Total length of the bodies stored now (always <= ``max_bytes``)."""
        return self._size

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            body = self._entries.get(key)
            if body is not None:
                self._entries.move_to_end(key)
            return body

    def put(self, key: Hashable, body: bytes) -> None:
        if self.max_bytes == 0 or len(body) > self.max_bytes:
            return
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._size -= len(previous)
            self._entries[key] = body
            self._size += len(body)
            while self._size > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._size -= len(evicted)
