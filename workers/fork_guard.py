"""A lock that ``os.fork()`` takes first, for the threads of a process that forks (the prefork
pool's parent: its heartbeat thread writes to the database while the pool forks children).

SQLite keeps each process's file-lock state in memory. A child forked while another thread of
its parent is inside a transaction inherits that state: its own connections then see the
database (or the broker's database) as locked by a sibling that does not exist in the child,
and every write they try fails with "database is locked" after the busy timeout; the job
never runs. SQLite's documentation: an open database must not be carried across a fork.
Work done under the guard never overlaps a fork: ``os.register_at_fork`` acquires the lock
before forking and releases it after, in the parent and in the child.
"""
from __future__ import annotations

import os
import threading


class ForkGuard:
    """``with guard:`` around work that must not be split by a fork of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):  # POSIX; the hooks live as long as the process
            os.register_at_fork(before=self._lock.acquire, after_in_parent=self._lock.release,
                                after_in_child=self._lock.release)

    def __enter__(self) -> "ForkGuard":
        self._lock.acquire()
        return self

    def __exit__(self, *_exc) -> None:
        self._lock.release()
