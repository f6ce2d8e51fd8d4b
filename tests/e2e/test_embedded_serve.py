"""The embedded default, driven like a user would: ``spectral-topics serve`` (API + worker
process on SQLite and the embedded SQLite broker, no servers), then the CLI client: ``submit
--wait`` with its progress bar and topic table, ``topics``, ``infer``, ``export``; and
``serve`` stops both processes cleanly."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import httpx
import psutil
import pytest

from gpu.matching import mean_matched_l1
from tests.corpus_helpers import synthetic_documents, topic_matrix_in_truth_order
from tests.e2e.conftest import REPO, poll_job, stop_process


def _cli(served, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "app.cli", *args, "--url", served["url"]], env=served["env"],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_serve_runs_on_embedded_defaults(served):
    body = httpx.get(f"{served['url']}/health").json()
    assert body["status"] == "ok"
    assert body["database"]["detail"].startswith("sqlite") and body["broker"]["detail"].startswith("sqla")
    assert (served["data_dir"] / "spectral-topics.db").is_file()


def test_serve_runs_its_api_on_uvloop_and_httptools(served):
    loaded = {m.path for m in psutil.Process(served["process"].pid).memory_maps()}
    assert any("/uvloop/" in path for path in loaded), "serve's API does not run on uvloop"
    assert any("/httptools/" in path for path in loaded), "serve's API does not parse HTTP with httptools"


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux only")
def test_serve_runs_its_worker_at_idle_cpu_priority(served):
    api = psutil.Process(served["process"].pid)
    workers = api.children(recursive=True)
    assert workers, "serve should have started a worker process"
    for process in workers:  # the worker and its prefork pool children
        assert os.sched_getscheduler(process.pid) == os.SCHED_IDLE, process.cmdline()
    assert os.sched_getscheduler(api.pid) == os.SCHED_OTHER  # the API itself keeps normal priority
    assert "worker CPU priority: SCHED_IDLE" in served["log"].read_text()


def test_cli_submit_wait_topics_infer_export(served, tmp_path):
    docs, truth = synthetic_documents(n_docs=300, n_words=60, n_topics=3, doc_length=40, seed=0)
    corpus_file = tmp_path / "docs.json"
    corpus_file.write_text(json.dumps(docs))
    result = _cli(served, "submit", str(corpus_file), "--topics", "3", "--seed", "2", "--wait", "--top-n", "5",
                  "--text-options", '{"stop_words": null, "min_df": 1, "max_df": 1.0}')
    assert result.returncode == 0, result.stderr
    assert "100.0% succeeded" in result.stderr  # the progress bar reached the end
    table = result.stdout.strip().splitlines()
    assert table[0].split() == ["topic", "alpha", "top", "words"] and len(table) == 4
    model_line = next(line for line in result.stderr.splitlines() if line.startswith("model "))
    model_id = model_line.split()[1]

    topics = httpx.get(f"{served['url']}/v1/models/{model_id}/topics", params={"top_n": 60}).json()["topics"]
    assert mean_matched_l1(truth.topic_word, topic_matrix_in_truth_order(topics, 60)) < 0.15

    printed = _cli(served, "topics", model_id, "--top-n", "3")
    assert printed.returncode == 0 and len(printed.stdout.strip().splitlines()) == 4
    texts = tmp_path / "new.txt"
    texts.write_text(docs[0]["text"] + "\n" + docs[1]["text"] + "\n")
    inferred = _cli(served, "infer", model_id, str(texts), "--json")
    assert inferred.returncode == 0, inferred.stderr
    assert len(json.loads(inferred.stdout)["doc_topic"]) == 2
    table = _cli(served, "infer", model_id, str(texts))
    assert table.returncode == 0 and [line.split()[0] for line in table.stdout.splitlines()] == ["text", "0", "1"]
    archive = tmp_path / "model.zip"
    exported = _cli(served, "export", model_id, "-o", str(archive))
    assert exported.returncode == 0, exported.stderr
    with zipfile.ZipFile(archive) as zipped:
        assert sorted(zipped.namelist()) == ["doc-topics.csv", "topic-terms.csv"]


def test_cli_reports_api_errors(served):
    result = _cli(served, "topics", "does-not-exist")
    assert result.returncode == 1 and "HTTP 404" in result.stderr and "does not exist" in result.stderr


def test_failing_job_on_embedded_stack(served):
    client = httpx.Client(base_url=served["url"])
    corpus = client.post("/v1/corpora", json=[f"aa{i} bb{i}" for i in range(20)],
                         params={"options": '{"min_df": 1, "max_df": 1.0}'}).json()
    accepted = client.post("/v1/models", json={"corpus_id": corpus["id"], "n_topics": 2}).json()
    job = poll_job(lambda path: client.get(path).json(), accepted["job"]["id"])
    assert job["state"] == "failed" and job["error_code"] == "invalid_input"


def test_serve_stops_api_and_worker_cleanly(served):
    process = served["process"]
    children = psutil.Process(process.pid).children(recursive=True)
    assert children, "serve should have started a worker process"
    assert stop_process(process, timeout=60) == 0
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [p.pid for p in alive]
