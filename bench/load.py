"""Load on loopback: the API (uvicorn, ``spectral-topics serve`` on embedded defaults) with a
fitted model, GET topics and POST infer at increasing request rates, then 100 model jobs
submitted at once, with the API's and the worker's resident memory before and after.

    PYTHONPATH=. python bench/load.py [--rates 50,100,200] [--seconds 4] [--jobs 100]

Open loop: requests are sent on a fixed schedule (rate r: one every 1/r s) whatever the
answers, so a slow server shows as latency, not as a lower offered rate. Latency is timed
from the scheduled send. Target: p99 <= 50 ms for GET topics at 200 requests/s. The load
generator shares the machine with the server (and on the 2-core dev box with everything
else), so figures are noisy: rerun before quoting. Bounded in time: every phase has a
deadline and the server is stopped at the end whatever happens.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
TARGET_P99_S = 0.050
TARGET_RATE = 200
_SERVICE_VARS = ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "DATA_DIR", "API_KEY")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(data_dir: Path, port: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in _SERVICE_VARS}
    env.update(DATA_DIR=str(data_dir), PYTHONPATH=str(REPO), FIT_BACKEND="numpy")
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], env=env, cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT)


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def rss_mib(process: psutil.Process) -> float:
    """Resident memory of ``process`` and all its descendants, MiB."""
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / (1 << 20)


def memory(server: subprocess.Popen) -> tuple[float, float]:
    """(API MiB, worker MiB): the serve process itself, and its worker subtree."""
    api = psutil.Process(server.pid)
    api_rss = api.memory_info().rss / (1 << 20)
    worker_rss = sum(rss_mib(child) for child in api.children())
    return api_rss, worker_rss


def synthetic_texts(n_docs: int, n_words: int, n_topics: int, seed: int) -> list[str]:
    from gpu.synthetic import make_lda_corpus

    truth = make_lda_corpus(n_docs, n_words, n_topics, doc_length=50, seed=seed)
    counts = truth.counts
    texts = []
    for d in range(counts.shape[0]):
        lo, hi = counts.indptr[d], counts.indptr[d + 1]
        texts.append(" ".join(f"w{w}" for w in np.repeat(counts.indices[lo:hi], counts.data[lo:hi])))
    return texts


def wait_job(client: httpx.Client, job_id: str, timeout: float) -> dict:
    def final():
        job = client.get(f"/v1/jobs/{job_id}").json()
        return job if job["state"] in ("succeeded", "failed", "cancelled") else None

    return wait_until(final, timeout, f"job {job_id}")


async def open_loop(base: str, rate: float, seconds: float, send) -> dict:
    """Send ``rate`` requests/s for ``seconds``; latencies from each scheduled send time."""
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    latencies, errors = [], 0
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10.0) as client:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.05
        n = int(rate * seconds)

        async def one(i: int):
            nonlocal errors
            scheduled = start + i / rate
            await asyncio.sleep(max(scheduled - loop.time(), 0.0))
            try:
                response = await send(client)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(loop.time() - scheduled)
            else:
                errors += 1

        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = loop.time() - start
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {"sent": n, "ok": len(latencies), "errors": errors, "throughput": len(latencies) / elapsed,
            "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))}


def print_row(name: str, rate: float, row: dict) -> None:
    print(f"{name:<12} offered {rate:5.0f} rps  throughput {row['throughput']:7.1f} rps  ok {row['ok']:5d}  "
          f"errors {row['errors']:4d}  p50 {row['p50'] * 1e3:7.1f} ms  p99 {row['p99'] * 1e3:7.1f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="50,100,200")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--jobs-timeout", type=float, default=420.0)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]

    with tempfile.TemporaryDirectory(prefix="spectral-load-") as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = Path(tmp) / "serve.log"
        server = start_server(Path(tmp) / "data", port, log)
        try:
            run(base, server, rates, args)
        except BaseException:
            print("--- server log (tail) ---\n" + log.read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                for proc in psutil.Process(server.pid).children(recursive=True):
                    proc.kill()
                server.kill()


def run(base: str, server: subprocess.Popen, rates: list[float], args) -> None:
    client = httpx.Client(base_url=base, timeout=30.0)
    wait_until(lambda: client.get("/health").json().get("workers"), 120, "the API and its worker")
    texts = synthetic_texts(500, 300, 5, seed=0)
    corpus = client.post("/v1/corpora", json=texts, params={"options": '{"stop_words": null}'})
    corpus.raise_for_status()
    corpus_id = corpus.json()["id"]
    accepted = client.post("/v1/models", json={"corpus_id": corpus_id, "n_topics": 5, "seed": 1}).json()
    job = wait_job(client, accepted["job"]["id"], 120)
    assert job["state"] == "succeeded", job
    model_id = accepted["model_id"]
    print(f"model {model_id}: D=500 V=300 k=5, fitted in {sum(job['stage_timings'].values()):.2f} s")

    infer_body = {"texts": synthetic_texts(5, 300, 5, seed=9)}
    for _ in range(20):  # warm up: the model's first load and the first connections are not measured
        client.get(f"/v1/models/{model_id}/topics").raise_for_status()
        client.post(f"/v1/models/{model_id}/infer", json=infer_body).raise_for_status()
    results = {}
    for name, send in (("GET topics", lambda c: c.get(f"/v1/models/{model_id}/topics")),
                       ("POST infer", lambda c: c.post(f"/v1/models/{model_id}/infer", json=infer_body))):
        for rate in rates:
            row = asyncio.run(open_loop(base, rate, args.seconds, send))
            results[(name, rate)] = row
            print_row(name, rate, row)
            time.sleep(0.5)
    topics_at_target = results.get(("GET topics", float(TARGET_RATE)))
    if topics_at_target:
        print(f"GET topics p99 at {TARGET_RATE} rps: {topics_at_target['p99'] * 1e3:.1f} ms; "
              f"ratio to the {TARGET_P99_S * 1e3:.0f} ms target: {topics_at_target['p99'] / TARGET_P99_S:.2f}")

    api_before, worker_before = memory(server)
    start = time.perf_counter()

    async def submit_all():
        async with httpx.AsyncClient(base_url=base, timeout=60.0) as aclient:
            return await asyncio.gather(*(
                aclient.post("/v1/models", json={"corpus_id": corpus_id, "n_topics": 5, "seed": i})
                for i in range(args.jobs)))

    responses = asyncio.run(submit_all())
    statuses = [r.status_code for r in responses]
    job_ids = [r.json()["job"]["id"] for r in responses if r.status_code == 202]
    submit_s = time.perf_counter() - start
    print(f"{args.jobs} model jobs submitted at once in {submit_s:.2f} s: "
          f"{statuses.count(202)} accepted, other statuses {sorted(set(statuses) - {202})}", flush=True)
    deadline = time.monotonic() + args.jobs_timeout
    states = {}
    for job_id in job_ids:
        states[job_id] = wait_job(client, job_id, max(deadline - time.monotonic(), 1.0))["state"]
    total_s = time.perf_counter() - start
    counts = {s: list(states.values()).count(s) for s in sorted(set(states.values()))}
    print(f"all {len(job_ids)} jobs final after {total_s:.1f} s ({len(job_ids) / total_s:.2f} jobs/s): {counts}")
    time.sleep(2.0)
    api_after, worker_after = memory(server)
    print(f"RSS API    before {api_before:7.1f} MiB  after {api_after:7.1f} MiB  ({api_after - api_before:+.1f})")
    print(f"RSS worker before {worker_before:7.1f} MiB  after {worker_after:7.1f} MiB  "
          f"({worker_after - worker_before:+.1f})")
    client.close()


if __name__ == "__main__":
    main()
