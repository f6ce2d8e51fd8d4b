"""Worker processes: failures surface as errors in input order, and every way out of an
ingestion (success, bad input, abort, a dead worker) leaves no process, thread or file."""
import io
import multiprocessing
import os
import threading
import time

import pytest

from app.ingest import chunks, ingest
from app.ingest.pool import InProcessCounter, WorkerPool
from gpu.errors import InvalidInput


def _lines(n: int) -> bytes:
    return b"".join(f"line {i} alpha beta gamma delta {i % 7}\n".encode() for i in range(n))


_run_text_lines = chunks.run_text_lines


def _die_on_line_41(block, where, first_line, *args):
    """A chunk function that kills its worker process at the block holding line 41."""
    if first_line <= 41 < first_line + block.count(b"\n"):
        os._exit(3)
    return _run_text_lines(block, where, first_line, *args)


@pytest.fixture
def no_leftovers():
    """Assert that the test leaves no child process nor extra thread behind."""
    threads = threading.active_count()
    yield
    assert multiprocessing.active_children() == []
    assert threading.active_count() == threads


def test_abort_while_finalizing_stops_workers_at_once(roots, no_leftovers):
    corpora, tmp_root = roots

    def cancel(stage, done, total):
        if stage == "finalize":
            raise KeyboardInterrupt("cancelled")

    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        ingest([("d.txt", io.BytesIO(_lines(3000)))], corpora / "c", tmp_root=tmp_root, chunk_bytes=2000,
               n_workers=2, progress=cancel)
    assert time.perf_counter() - start < 10
    assert list(corpora.iterdir()) == [] and list(tmp_root.iterdir()) == []


def test_a_worker_that_dies_is_reported(roots, no_leftovers, monkeypatch):
    corpora, tmp_root = roots
    monkeypatch.setattr(chunks, "run_text_lines", _die_on_line_41)
    with pytest.raises(RuntimeError, match=r"ingestion worker w\d died \(exit code 3\)"):
        ingest([("d.txt", io.BytesIO(_lines(200)))], corpora / "c", tmp_root=tmp_root, chunk_bytes=300, n_workers=2)
    assert list(corpora.iterdir()) == [] and list(tmp_root.iterdir()) == []


def test_worker_errors_keep_their_type_message_and_traceback(roots, no_leftovers):
    corpora, tmp_root = roots
    bad = _lines(100).replace(b"line 60 ", b"line \xff ")
    with pytest.raises(InvalidInput, match=r"d\.txt line 61: invalid UTF-8") as caught:
        ingest([("d.txt", io.BytesIO(bad))], corpora / "c", tmp_root=tmp_root, chunk_bytes=200, n_workers=2)
    assert "run_text_lines" in str(caught.value.__cause__)
    assert list(corpora.iterdir()) == [] and list(tmp_root.iterdir()) == []


def test_in_process_and_worker_counters_answer_alike(tmp_path, no_leftovers):
    from app.ingest import TextOptions

    block = _lines(50)
    request = ("count", chunks.run_text_lines, (block, "d.txt", 1, 0, 1 << 20, TextOptions()))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    local = InProcessCounter(tmp_path / "a")
    pool = WorkerPool(1, tmp_path / "b")
    try:
        answers = []
        for counter in (local, pool.counters[0]):
            counter.send(request)
            counter.send(("frequencies",))
            summary, (df, tf) = counter.receive(), counter.receive()
            answers.append((summary.n_docs, summary.new_terms, summary.n_with_tokens, df.tolist(), tf.tolist()))
        assert answers[0] == answers[1]
        assert answers[0][0] == 50 and answers[0][2] == 50
    finally:
        pool.close()
        local.close()
