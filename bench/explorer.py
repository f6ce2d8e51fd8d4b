"""How fast the explorer opens a large model, measured in a real headless Chromium.

A corpus of 100,000 documents over V=50,000 terms and a model with k=100 topics are
written straight through the storage layer (app.ingest.store.write_corpus and
app.artifacts.model_artifact.write_model_artifact, synthetic arrays, no fit), then
``spectral-topics api`` serves them and Chromium opens ``/#/model/<id>``. The time runs
from navigation to the map's 100 circles and the first topic's bars being drawn.

    PYTHONPATH=. python bench/explorer.py [--docs 100000] [--words 50000] [--topics 100] [--runs 5]

Prints the first open of the model after the server starts (the explorer's home page was
shown once; the server reads the corpus, verifies its checksum and computes the map) and
the median of the next opens (corpus, map and shares in the server's caches), next to
the 1 s target. Needs Debian's chromium and the dev extra (playwright).
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import scipy.sparse as sp
from playwright.sync_api import sync_playwright

from app.artifacts.model_artifact import write_model_artifact
from app.core.context import build_context
from app.core.ids import new_id
from app.core.settings import Settings
from app.core.tables import CorpusRow, ModelRow
from app.ingest.finalize import BuiltCorpus, CountsLayout
from app.ingest.options import TextOptions
from app.ingest.store import write_corpus
from app.migrations import upgrade_database

TARGET_S = 1.0
REPO = Path(__file__).resolve().parents[1]


def synthetic_model(n_docs: int, n_words: int, k: int, seed: int = 0):
    """Counts (D, V) int32 CSR (~120 distinct terms per document, Zipf-like term
    frequencies), topic_word (k, V), alpha (k,), doc_topic (D, k) float32."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_words + 1) ** 0.9
    popularity /= popularity.sum()
    lengths = rng.integers(40, 200, size=n_docs)
    indptr = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = rng.choice(n_words, size=int(indptr[-1]), p=popularity).astype(np.int32)
    data = rng.integers(1, 4, size=indices.size).astype(np.int32)
    counts = sp.csr_matrix((data, indices, indptr), shape=(n_docs, n_words))
    counts.sum_duplicates()
    counts.sort_indices()
    counts = sp.csr_matrix((counts.data.astype(np.int32), counts.indices.astype(np.int32),
                            counts.indptr.astype(np.int32)), shape=counts.shape)
    topic_word = rng.dirichlet(np.full(n_words, 0.05), size=k)
    alpha = np.sort(rng.gamma(2.0, 0.05, size=k))[::-1]
    doc_topic = rng.dirichlet(np.full(k, 0.1), size=n_docs).astype(np.float32)
    return counts, topic_word, alpha, doc_topic


def build_store(data_dir: Path, args) -> tuple[Settings, str]:
    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'spectral-topics.db'}",
                        broker_url=None, redis_url=None)
    ctx = build_context(settings)
    upgrade_database(ctx.engine)
    started = time.perf_counter()
    counts, topic_word, alpha, doc_topic = synthetic_model(args.docs, args.words, args.topics)
    vocabulary = [f"term{i:05d}" for i in range(args.words)]
    doc_ids = [f"doc{i}" for i in range(args.docs)]
    snippets = [" ".join(vocabulary[w] for w in counts.indices[counts.indptr[d]:counts.indptr[d] + 30])
                for d in range(args.docs)]
    stats = {"n_documents": args.docs, "vocabulary_size": args.words, "nnz": int(counts.nnz),
             "n_tokens": int(counts.data.sum())}
    built = BuiltCorpus(counts=CountsLayout.of_matrix(counts), vocabulary=vocabulary, doc_ids=doc_ids, metadata={},
                        stats=stats, snippets=snippets)
    corpus_id, model_id = new_id(), new_id()
    options = TextOptions()
    info = write_corpus(built, ctx.layout.corpus_dir(corpus_id), ctx.layout.tmp, options)
    checksum = write_model_artifact(ctx.layout.model_dir(model_id), ctx.layout.tmp, topic_word=topic_word, alpha=alpha,
                                    doc_topic=doc_topic, meta={})
    rng = np.random.default_rng(1)
    with ctx.sessions() as session:
        session.add(CorpusRow(id=corpus_id, tenant_id=settings.default_tenant, name="bench", checksum=info.checksum,
                              n_documents=args.docs, vocabulary_size=args.words, stats=stats,
                              options=options.model_dump(mode="json")))
        session.flush()
        session.add(ModelRow(id=model_id, tenant_id=settings.default_tenant, corpus_id=corpus_id, job_id=new_id(),
                             status="ready", params={"corpus_id": corpus_id, "n_topics": args.topics}, n_topics=args.topics,
                             alpha0=float(alpha.sum()), seed=0, checksum=checksum, alpha=alpha.tolist(),
                             quality={"npmi_per_topic": rng.uniform(-0.1, 0.4, args.topics).tolist()}))
        session.commit()
    ctx.close()
    print(f"store: {args.docs} documents, V={args.words}, nnz={counts.nnz}, k={args.topics} "
          f"written in {time.perf_counter() - started:.1f} s")
    return settings, model_id


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def open_model(page, url: str, model_id: str, k: int) -> float:
    """Seconds from navigation to the map's k circles and the first topic's bars."""
    page.goto("about:blank")
    started = time.perf_counter()
    page.goto(f"{url}/#/model/{model_id}")
    page.locator("#term-bars .bar").first.wait_for(timeout=60_000)
    page.locator("#topic-map .topic-circle").nth(k - 1).wait_for(timeout=60_000)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--words", type=int, default=50_000)
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory(prefix="bench-explorer-") as folder:
        data_dir = Path(folder)
        _, model_id = build_store(data_dir, args)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "BROKER_URL")}
        env.update(DATA_DIR=str(data_dir), PYTHONPATH=str(REPO))
        server = subprocess.Popen([sys.executable, "-m", "app.cli", "api", "--port", str(port)], env=env, cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{url}/health", timeout=2)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise SystemExit("the API did not start")
                    time.sleep(0.2)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(f"{url}/")  # the explorer's home page: the browser has the page's files, no model data
                page.locator("#models").wait_for(timeout=60_000)
                cold = open_model(page, url, model_id, args.topics)
                warm = [open_model(page, url, model_id, args.topics) for _ in range(args.runs)]
                browser.close()
        finally:
            server.terminate()
            server.wait(30)
    median = statistics.median(warm)
    print(f"open model (k={args.topics}, D={args.docs}, V={args.words}): map + first topic drawn")
    print(f"  first open after start (corpus read + verified, map computed): {cold:.3f} s   target < {TARGET_S:.1f} s")
    print(f"  next opens, median of {args.runs} (min {min(warm):.3f}, max {max(warm):.3f}): {median:.3f} s   "
          f"target < {TARGET_S:.1f} s  -> {'met' if median < TARGET_S else 'MISSED'}")


if __name__ == "__main__":
    main()
