"""A worker under a hard memory limit: ``spectral-topics serve`` started with RLIMIT_AS (its
worker inherits it) and FIT_MEMORY_BUDGET set fits a corpus within the budget; a fit whose
estimate is over the budget fails at once as bad input naming the budget, never retried,
and the worker is still there for the next job."""
from __future__ import annotations

import json
import resource
import subprocess
import sys

import httpx

from tests.corpus_helpers import synthetic_documents
from tests.e2e.conftest import REPO, free_port, poll_job, service_env, stop_process, wait_for

BUDGET_BYTES = 64 * 2**20
# what the address space of a worker process holds besides a fit: the interpreter, NumPy,
# SciPy, scikit-learn, SQLAlchemy, Celery and OpenBLAS's per-thread buffers (VmPeak ~0.5 GiB)
PROCESS_ALLOWANCE_BYTES = 2 * 2**30
TEXT_OPTIONS = {"stop_words": None, "min_df": 1, "max_df": 1.0}


def _limited() -> None:
    limit = PROCESS_ALLOWANCE_BYTES + BUDGET_BYTES
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_a_worker_under_rlimit_as_fits_within_its_budget_and_refuses_beyond_it(tmp_path):
    data_dir = tmp_path / "data"
    port = free_port()
    log = tmp_path / "serve.log"
    env = service_env(DATA_DIR=data_dir, WORKER_HEARTBEAT_S="1", PROGRESS_INTERVAL_S="0", FIT_BACKEND="numpy",
                      FIT_MEMORY_BUDGET=str(BUDGET_BYTES))
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], env=env,
                                   cwd=REPO, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_limited)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/health", timeout=2).json()["workers"], 90, "serve to be ready",
                 process, log)
        docs, _ = synthetic_documents(n_docs=2000, n_words=400, n_topics=5, doc_length=60, seed=4)
        corpus = httpx.post(f"{url}/v1/corpora", json={"documents": docs, "options": TEXT_OPTIONS}, timeout=60)
        assert corpus.status_code == 201, corpus.text
        corpus_id = corpus.json()["corpus_id"]

        def fit(**body):
            accepted = httpx.post(f"{url}/v1/models", json={"corpus_id": corpus_id, **body}, timeout=30)
            assert accepted.status_code == 202, accepted.text
            return poll_job(lambda path: httpx.get(f"{url}{path}", timeout=10).json(), accepted.json()["job"]["id"])

        within = fit(n_topics=5, seed=0)
        assert within["state"] == "succeeded", json.dumps(within)
        # k = 150 of 400 words with 50 restarts: the estimate (the k^3 tensor, V x p Krylov
        # blocks, restarts x p^2 iterates) is over 64 MiB (the tensor alone: 210^3 doubles, 74 MB)
        beyond = fit(n_topics=150, seed=0, options={"n_restarts": 50, "n_extra_components": 50})
        assert beyond["state"] == "failed" and beyond["error_code"] == "invalid_input", json.dumps(beyond)
        assert beyond["attempts"] == 1 and "FIT_MEMORY_BUDGET" in beyond["error_message"]
        again = fit(n_topics=4, seed=1)
        assert again["state"] == "succeeded", json.dumps(again)
        assert process.poll() is None  # neither fit took serve (or its limit) down
    finally:
        stop_process(process)
