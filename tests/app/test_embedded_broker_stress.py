"""The embedded broker (kombu's SQLAlchemy transport on DATA_DIR/broker.db) under several
producer and consumer PROCESSES: 10,000 task messages, sent exactly as the API sends them
(app.core.broker.enqueue), none lost, none empty or undecodable, none delivered twice.

The filesystem transport it replaced handed out half-written (empty) messages here.
"""
from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path
from queue import Empty

from app.core.broker import FIT_TASK, enqueue, make_celery, prepare_broker, prune_delivered
from app.core.settings import Settings

N_MESSAGES = 10_000
N_PRODUCERS = 3
N_CONSUMERS = 3
DEADLINE_S = 120.0  # ~30 s on an idle 2-core machine; the bound is for a shared one


def _settings(data_dir: str) -> Settings:
    return Settings(data_dir=Path(data_dir), broker_url=None, redis_url=None, gpu_queue="stress", cpu_queue="other")


def _produce(data_dir: str, ids: list[str]) -> None:
    celery = make_celery(_settings(data_dir))
    for job_id in ids:
        enqueue(celery, FIT_TASK, job_id, "stress")


def _consume(data_dir: str, out: str, producers_done, deadline: float) -> None:
    """Take messages until the producers are done and the queue stays empty; write one line
    per delivery (the job id, or what could not be decoded)."""
    celery = make_celery(_settings(data_dir))
    with celery.connection_for_write() as connection, open(out, "w") as sink:
        queue = connection.SimpleQueue("stress")
        idle_since = None
        while time.monotonic() < deadline:
            try:
                message = queue.get(timeout=0.2)
            except Empty:
                if producers_done.is_set():
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > 1.5:
                        break
                continue
            idle_since = None
            try:
                args = message.decode()[0]
                sink.write(json.dumps({"id": args[0]}) + "\n")
            except Exception as exc:  # an empty or torn body: recorded, then judged by the test
                sink.write(json.dumps({"bad": repr(message.body)[:80], "error": repr(exc)}) + "\n")
            message.ack()


def test_ten_thousand_messages_none_lost_empty_or_twice(tmp_path):
    data_dir = str(tmp_path / "data")
    prepare_broker(make_celery(_settings(data_dir)))
    ids = [f"job-{i:05d}" for i in range(N_MESSAGES)]
    spawn = multiprocessing.get_context("spawn")
    producers_done = spawn.Event()
    deadline = time.monotonic() + DEADLINE_S
    outs = [str(tmp_path / f"consumer-{c}.jsonl") for c in range(N_CONSUMERS)]
    consumers = [spawn.Process(target=_consume, args=(data_dir, out, producers_done, deadline)) for out in outs]
    producers = [spawn.Process(target=_produce, args=(data_dir, ids[p::N_PRODUCERS])) for p in range(N_PRODUCERS)]
    started = time.monotonic()
    for process in consumers + producers:
        process.start()
    try:
        for process in producers:
            process.join(timeout=max(deadline - time.monotonic(), 1))
            assert process.exitcode == 0, f"producer exited with {process.exitcode}"
        producers_done.set()
        print(f"producers done after {time.monotonic() - started:.1f} s")
        for process in consumers:
            process.join(timeout=max(deadline - time.monotonic() + 5, 1))
            assert process.exitcode == 0, f"consumer exited with {process.exitcode}"
    finally:
        for process in consumers + producers:
            if process.is_alive():
                process.kill()
    elapsed = time.monotonic() - started
    print(f"consumers done after {elapsed:.1f} s")

    deliveries = [json.loads(line) for out in outs for line in Path(out).read_text().splitlines()]
    bad = [d for d in deliveries if "bad" in d]
    assert not bad, bad[:5]
    delivered = [d["id"] for d in deliveries]
    assert len(delivered) == len(set(delivered)), "a message was delivered twice"
    assert set(delivered) == set(ids), f"{len(set(ids) - set(delivered))} messages lost"
    assert all(Path(out).stat().st_size > 0 for out in outs), "every consumer should have taken messages"
    assert elapsed < DEADLINE_S
    # Taken rows are dead weight: pruning removes all of them, and leaves nothing to deliver.
    assert prune_delivered(_settings(data_dir)) == N_MESSAGES
