"""Where chunks are counted: in this process, or in worker processes that each keep a
:class:`~app.ingest.chunkstore.ChunkStore` of their own for the whole build.

Both kinds of counter take the store's requests (:meth:`ChunkStore.handle`) and give back
the answers in the order they were asked for; an error raised by a request comes back as
its answer, so the builder raises it when that chunk's turn comes.
"""
from __future__ import annotations

import collections
import ctypes
import multiprocessing
import multiprocessing.connection
import pickle
import queue
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from app.ingest.analyzer import word_patterns
from app.ingest.chunkstore import ChunkStore

# How often a wait for a worker's answer checks that the worker is still alive.
_LIVENESS_SECONDS = 0.5
# How long closing waits for a worker to finish the request it is running.
_STOP_SECONDS = 30.0


class Counter(Protocol):
    """Takes ChunkStore requests and gives back their answers in order."""

    def send(self, request: tuple) -> None:
        """Queue a request (never blocks)."""

    def ready(self) -> bool:
        """Whether the next answer can be received without waiting."""

    def unanswered(self) -> int:
        """Requests sent whose (first) answer has not arrived yet."""

    def receive(self) -> Any:
        """The next answer, waiting for it (raises the error of a failed request)."""

    def release(self) -> None:
        """No more requests will come."""

    def close(self) -> None:
        """Stop and let go of everything (idempotent)."""


class InProcessCounter:
    """A ChunkStore in this process; a request is worked on when its answer is asked for."""

    def __init__(self, work_dir: Path, name: str = "main"):
        self._store = ChunkStore(work_dir, name)
        self._answers: collections.deque[Iterator] = collections.deque()
        self._sent = self._received = 0

    def send(self, request: tuple) -> None:
        self._answers.append(self._store.handle(request))
        self._sent += 1

    def ready(self) -> bool:
        return True

    def unanswered(self) -> int:
        """Requests sent whose (first) answer has not been received."""
        return self._sent - self._received

    def receive(self) -> Any:
        """The next answer (raises the error of a failed request)."""
        while True:
            try:
                answer = next(self._answers[0])
            except StopIteration:
                self._answers.popleft()
                continue
            self._received += 1
            return answer

    def release(self) -> None:
        """No more requests will come (nothing to do here)."""

    def close(self) -> None:
        self._answers.clear()


class _Answers:
    """Answers of all worker processes: they share one queue, each answer tagged with its
    worker's index, and are sorted here into one buffer per worker (in order)."""

    def __init__(self, context, n_workers: int):
        self.queue = context.Queue()
        self.buffers: list[collections.deque] = [collections.deque() for _ in range(n_workers)]

    def collect(self, timeout: float = 0.0) -> bool:
        """Move the answers that arrived into the buffers, waiting up to ``timeout``
        seconds for the first one; whether any arrived."""
        try:
            item = self.queue.get(timeout=timeout) if timeout > 0 else self.queue.get_nowait()
        except queue.Empty:
            return False
        while True:
            index, answer = item
            self.buffers[index].append(answer)
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return True


class WorkerCounter:
    """A worker process running :func:`_serve`: requests travel through a queue of its
    own (sending never blocks), answers through the pool's shared one."""

    def __init__(self, context, work_dir: Path, index: int, answers: _Answers, stop):
        self.name = f"w{index}"
        self._requests = context.Queue()
        self._answers = answers
        self._buffer = answers.buffers[index]
        self.process = context.Process(target=_serve, args=(self._requests, answers.queue, Path(work_dir), index, stop),
                                       name=f"ingest-{self.name}", daemon=True)
        self._sent = self._taken = 0
        self._released = False

    def send(self, request: tuple) -> None:
        self._requests.put(request)
        self._sent += 1

    def ready(self) -> bool:
        """Whether an answer is waiting."""
        self._answers.collect()
        return bool(self._buffer)

    def unanswered(self) -> int:
        """Requests sent whose (first) answer has not arrived (counting one answer per
        request: exact while only single-answer requests are outstanding)."""
        self._answers.collect()
        return self._sent - self._taken - len(self._buffer)

    def receive(self) -> Any:
        """The next answer, waiting for it (raises the error of a failed request, or
        RuntimeError if the process died)."""
        while not self._buffer:
            if not self._answers.collect(_LIVENESS_SECONDS) and not self.process.is_alive():
                self._answers.collect()  # what it sent just before it exited
                if not self._buffer:
                    raise RuntimeError(f"ingestion worker {self.name} died (exit code {self.process.exitcode})")
        ok, value = self._buffer.popleft()
        self._taken += 1
        if ok:
            return value
        error, remote_traceback = value
        raise error from _RemoteTraceback(remote_traceback)

    def release(self) -> None:
        """No more requests will come: the process exits once it has answered those it
        has (so that it exits while this process still works on its answers)."""
        if not self._released:
            self._requests.put(None)
            self._released = True

    def close_queue(self) -> None:
        """Let go of the request queue once the process has ended."""
        if self.process.exitcode != 0:
            self._requests.cancel_join_thread()  # the reader is gone: do not wait to flush
        self._requests.close()
        self._requests.join_thread()


class WorkerPool:
    """n worker processes (see :class:`WorkerCounter`), started together."""

    def __init__(self, n_workers: int, work_dir: Path):
        context = _pool_context()
        if context.get_start_method() == "fork":
            word_patterns()  # build once here; forked workers inherit it
        self._stop = context.Event()
        self._answers = _Answers(context, n_workers)
        self.counters = [WorkerCounter(context, work_dir, i, self._answers, self._stop) for i in range(n_workers)]
        try:
            for counter in self.counters:
                counter.process.start()
        except BaseException:
            self.close()
            raise

    def wait_for_answer(self) -> None:
        """Wait until some worker answers (RuntimeError if one died meanwhile)."""
        while not self._answers.collect(_LIVENESS_SECONDS):
            for counter in self.counters:
                if not counter.process.is_alive():
                    raise RuntimeError(f"ingestion worker {counter.name} died (exit code {counter.process.exitcode})")

    def close(self) -> None:
        """Stop every worker (idempotent): they skip requests still queued and exit; those
        that do not within _STOP_SECONDS are terminated."""
        self._stop.set()
        started = [counter for counter in self.counters if counter.process.pid is not None]
        for counter in started:
            counter.release()
        deadline = time.monotonic() + _STOP_SECONDS
        while any(c.process.exitcode is None for c in started) and time.monotonic() < deadline:
            self._answers.collect()  # unread answers would keep a worker from exiting
            for buffer in self._answers.buffers:
                buffer.clear()
            multiprocessing.connection.wait([c.process.sentinel for c in started], timeout=0.01)
        for counter in started:
            if counter.process.exitcode is None:
                counter.process.terminate()
            counter.process.join()
            counter.close_queue()
            counter.process.close()
        self._answers.queue.close()
        self.counters = []


class _RemoteTraceback(Exception):
    """The traceback of an error raised in a worker process (set as the error's cause)."""

    def __str__(self) -> str:
        return self.args[0]


def _serve(requests, answers, work_dir: Path, index: int, stop) -> None:
    """Worker process ``index``: answer requests with a ChunkStore of its own until None
    arrives; once ``stop`` is set, skip the rest."""
    _keep_freed_memory()
    store = ChunkStore(work_dir, f"w{index}")
    for request in iter(requests.get, None):
        if stop.is_set():
            continue
        try:
            for answer in store.handle(request):
                answers.put((index, (True, answer)))
                if stop.is_set():
                    break
        except Exception as error:
            answers.put((index, (False, _portable(error))))
    if stop.is_set():
        answers.cancel_join_thread()  # the build was abandoned: exit without flushing answers


def _portable(error: Exception) -> tuple[Exception, str]:
    """(the error, or a RuntimeError naming it if it does not pickle; its traceback text)."""
    text = "".join(traceback.format_exception(error))
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        error = RuntimeError(f"{type(error).__name__}: {error}")
    return error, f'\n"""\n{text}"""'


def _pool_context():
    """``fork`` when this process runs a single thread (workers start in milliseconds and
    inherit the imported modules; forking is only unsafe while other threads may hold
    locks), else ``forkserver`` (or ``spawn``), which cost about a second to start."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _keep_freed_memory() -> None:
    """Worker setup: each chunk allocates and frees tens of MB of NumPy arrays; let glibc
    keep freed memory in the heap rather than unmapping it, so the next chunk does not
    page-fault it in again (about 10% of a worker's time). Elsewhere a no-op."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 << 20)  # the largest glibc accepts on 64-bit
    libc.mallopt(m_trim_threshold, 256 << 20)
