"""A child forked while a thread of its parent is inside a SQLite transaction cannot write to
that database (SQLite's in-memory lock state comes along); the worker's ForkGuard makes a
fork wait until the guarded transaction is over."""
from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time

from workers.fork_guard import ForkGuard


def _database(tmp_path) -> str:
    path = str(tmp_path / "jobs.db")
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")  # as app.core.db configures SQLite
    connection.execute("CREATE TABLE t (x INTEGER)")
    connection.close()
    return path


def _child_writes(path: str) -> int:
    try:
        connection = sqlite3.connect(path, timeout=1.0, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO t VALUES (1)")
        connection.execute("COMMIT")
        return 0
    except sqlite3.OperationalError:  # "database is locked"
        return 1


def _fork_during_a_transaction(path: str, guard) -> int:
    """Exit code of a child forked while another thread holds a write transaction (under
    ``guard``): 0 if the child could write, 1 if the database stayed locked to it."""
    inside = threading.Event()

    def hold() -> None:
        with guard:
            connection = sqlite3.connect(path, isolation_level=None)
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO t VALUES (0)")
            inside.set()
            time.sleep(0.3)
            connection.execute("COMMIT")
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait(5)
    pid = os.fork()
    if pid == 0:
        os._exit(_child_writes(path))
    _, status = os.waitpid(pid, 0)
    holder.join()
    return os.waitstatus_to_exitcode(status)


def test_a_fork_inside_an_unguarded_transaction_locks_the_child_out(tmp_path):
    # the failure the guard exists for (the embedded worker's first job hung on it in CI)
    assert _fork_during_a_transaction(_database(tmp_path), contextlib.nullcontext()) == 1


def test_the_fork_guard_makes_the_fork_wait_for_the_transaction(tmp_path):
    path = _database(tmp_path)
    guard = ForkGuard()
    started = time.monotonic()
    assert _fork_during_a_transaction(path, guard) == 0
    assert time.monotonic() - started >= 0.3  # the fork waited for the commit
    with sqlite3.connect(path) as connection:
        assert sorted(row[0] for row in connection.execute("SELECT x FROM t")) == [0, 1]
