"""SIGTERM to ``spectral-topics serve`` stops its worker while the API drains its open
requests, not after: real processes, a request held open over a raw socket.

With API_SHUTDOWN_TIMEOUT_S=12 and one upload whose body never finishes, the API needs the
full 12 s before it cancels that request; the worker (idle) must be gone well before that,
and serve, its API and its worker must all be gone shortly after the 8 s.
"""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx
import psutil

from tests.e2e.conftest import REPO, free_port, service_env, stop_process, wait_for

API_DRAIN_S = 12.0  # long enough that the idle worker (~4-5 s to stop) is clearly done first


def test_sigterm_stops_the_worker_while_the_api_drains(tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    env = service_env(DATA_DIR=tmp_path / "data", WORKER_HEARTBEAT_S="0.5", API_SHUTDOWN_TIMEOUT_S=str(API_DRAIN_S),
                      WORKER_SHUTDOWN_TIMEOUT_S="1")
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], env=env,
                                   cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    held = None
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()["workers"], 90,
                 "serve to be ready", process, log)
        worker = psutil.Process(process.pid).children()[0]
        held = socket.create_connection(("127.0.0.1", port))  # an upload whose body never ends
        held.sendall(b"POST /v1/corpora HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
                     b"Content-Length: 100000\r\n\r\n" + b'{"text": "a b c"}\n' * 10)
        time.sleep(1.0)

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        worker.wait(timeout=API_DRAIN_S + 20)
        worker_gone_s = time.monotonic() - started
        process.wait(timeout=API_DRAIN_S + 20)
        serve_gone_s = time.monotonic() - started
    finally:
        if held is not None:
            held.close()
        stop_process(process)
    text = log.read_text()
    assert process.returncode == 0, text[-3000:]
    assert worker_gone_s < API_DRAIN_S - 3, (worker_gone_s, text[-3000:])  # stopped during the drain
    assert API_DRAIN_S - 1 < serve_gone_s < API_DRAIN_S + 5, serve_gone_s  # the API did drain, then all stopped
    assert "Cold shutdown" in text
