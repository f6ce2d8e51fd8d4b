"""Service overhead: the same synthetic corpus fitted (a) through the service — upload and
ingestion, job row, lease, progress writes, artifact and metrics — and (b) by calling the
engine directly on the count matrix, in the same process. Prints times and their ratio.

    PYTHONPATH=. python bench/service.py [--docs 20000] [--words 5000] [--topics 20] [--length 100]

Runs on the embedded store (SQLite) in a temporary folder; the job runs through
workers.jobs.run_job, the code a Celery task calls (no broker latency is measured).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from app.core.settings import Settings
from app.main import create_app
from gpu import SpectralLDA
from gpu.synthetic import make_lda_corpus
from workers.handlers import HANDLERS
from workers.jobs import run_job


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--words", type=int, default=5_000)
    parser.add_argument("--topics", type=int, default=20)
    parser.add_argument("--length", type=float, default=100.0)
    args = parser.parse_args()

    truth = make_lda_corpus(args.docs, args.words, args.topics, doc_length=args.length, seed=0)
    counts = truth.counts
    docs = []
    for d in range(counts.shape[0]):
        row = counts.indptr[d], counts.indptr[d + 1]
        words = np.repeat(counts.indices[row[0]:row[1]], counts.data[row[0]:row[1]])
        docs.append(" ".join(f"w{w}" for w in words))
    body = json.dumps({"documents": docs, "options": {"stop_words": None}}).encode()
    print(f"corpus: D={args.docs} V={args.words} k={args.topics} tokens={int(counts.sum())} "
          f"upload={len(body) / 1e6:.1f} MB")

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), database_url=f"sqlite:///{tmp}/bench.db", broker_url=None,
                            redis_url=None, inline_ingest_max_bytes=len(body) + 1, max_body_bytes=len(body) + 1,
                            fit_backend="numpy")
        with TestClient(create_app(settings)) as client:
            start = time.perf_counter()
            corpus = client.post("/v1/corpora", content=body, headers={"content-type": "application/json"}).json()
            upload_s = time.perf_counter() - start
            start = time.perf_counter()
            accepted = client.post("/v1/models", json={"corpus_id": corpus["id"], "n_topics": args.topics,
                                                       "heldout_fraction": 0.0}).json()
            outcome = run_job(client.app.state.context, accepted["job"]["id"], "bench", HANDLERS)
            topics = client.get(f"/v1/models/{accepted['model_id']}/topics").json()
            service_fit_s = time.perf_counter() - start
            assert outcome.state == "succeeded", client.get(f"/v1/jobs/{accepted['job']['id']}").json()
            assert len(topics["topics"]) == args.topics
            job = client.get(f"/v1/jobs/{accepted['job']['id']}").json()

    start = time.perf_counter()
    model = SpectralLDA(args.topics, seed=0, backend="numpy").fit(counts)
    model.transform(counts)
    direct_s = time.perf_counter() - start

    print(f"upload+ingest via API: {upload_s:.2f} s ({len(body) / 1e6 / upload_s:.1f} MB/s)")
    print(f"fit via service (job, progress, doc_topic, artifact, topics): {service_fit_s:.2f} s")
    print(f"fit+transform direct (same process): {direct_s:.2f} s")
    print(f"service/direct fit time ratio: {service_fit_s / direct_s:.2f}")
    print("job stage timings (s): " + ", ".join(f"{k}={v:.2f}" for k, v in job["stage_timings"].items()))


if __name__ == "__main__":
    main()
