"""workers.fit: the fit job against the real engine (truth known) and its error paths."""
from __future__ import annotations

import numpy as np
import pytest

from app.artifacts.artifact_files import directory_checksum
from app.artifacts.model_artifact import load_alpha, load_doc_topic, load_topic_word
from app.core.tables import ModelRow
from gpu.matching import mean_matched_l1
from tests.app.helpers import run_now, submit_fit
from tests.corpus_helpers import synthetic_documents
from workers.fit import run_fit
from workers.jobs import run_job


def _submit(client, corpus_id, **body):
    return submit_fit(client, corpus_id, 3, **body)


@pytest.fixture
def synthetic_corpus(client):
    docs, truth = synthetic_documents()
    response = client.post("/v1/corpora", json=docs, params={"options": '{"stop_words": null, "min_df": 1, "max_df": 1.0}'})
    assert response.status_code == 201, response.text
    return response.json(), truth


def test_fit_writes_a_verified_artifact_that_recovers_the_topics(client, ctx, synthetic_corpus):
    corpus, truth = synthetic_corpus
    accepted = _submit(client, corpus["id"], seed=2)
    assert run_now(ctx, accepted["job"]["id"]).state == "succeeded"
    with ctx.sessions() as session:
        model = session.get(ModelRow, accepted["model_id"])
    folder = ctx.layout.model_dir(model.id)
    assert directory_checksum(folder) == model.checksum
    topic_word, alpha, doc_topic = load_topic_word(folder), load_alpha(folder), load_doc_topic(folder)
    assert topic_word.shape == (3, corpus["vocabulary_size"]) and np.allclose(topic_word.sum(axis=1), 1)
    assert np.allclose(alpha, model.alpha) and doc_topic.shape == (300, 3)
    vocabulary = client.get(f"/v1/corpora/{corpus['id']}/vocabulary", params={"limit": 1000}).json()["words"]
    learned = np.zeros((3, truth.topic_word.shape[1]))
    learned[:, [int(w[1:]) for w in vocabulary]] = topic_word
    assert mean_matched_l1(truth.topic_word, learned) < 0.15
    assert not list(ctx.layout.tmp.iterdir())  # no temporary debris


class FakeEstimator:
    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def fit(self, counts):
        self.kwargs["progress"]("moments", 1, 1)
        raise RuntimeError("GPU fell off the bus")


def test_estimator_options_are_passed_and_unknown_ones_refused(client, ctx, synthetic_corpus):
    corpus, _ = synthetic_corpus
    seen = {}

    def factory(**kwargs):
        seen.update(kwargs)
        return FakeEstimator(**kwargs)

    accepted = _submit(client, corpus["id"], alpha0=2.5, seed=9, options={"dtype": "float32"})
    outcome = run_job(ctx, accepted["job"]["id"], "w", {"fit": lambda c, j, p: run_fit(c, j, p, factory)})
    assert outcome.state == "queued"  # RuntimeError: an infrastructure failure, retried
    assert seen["n_topics"] == 3 and seen["alpha0"] == 2.5 and seen["seed"] == 9
    assert seen["dtype"] == "float32" and seen["backend"] == ctx.settings.fit_backend

    for options, word in (({"seed": 1}, "seed"), ({"no_such_option": 1}, "no_such_option")):
        response = client.post("/v1/models", json={"corpus_id": corpus["id"], "n_topics": 3, "options": options})
        assert response.status_code == 422 and f"options.{word}" in response.json()["error"]["message"]


def test_options_stored_outside_the_api_are_checked_again_by_the_worker(client, ctx, synthetic_corpus):
    from app.core.db import transaction
    from app.core.tables import JobRow

    corpus, _ = synthetic_corpus
    accepted = _submit(client, corpus["id"])
    with transaction(ctx.sessions) as session:  # e.g. a job queued by an older API version
        job = session.get(JobRow, accepted["job"]["id"])
        job.params = {**job.params, "options": {"n_threads": 1000000}}
    assert run_now(ctx, accepted["job"]["id"]).state == "failed"
    job = client.get(f"/v1/jobs/{accepted['job']['id']}").json()
    assert job["error_code"] == "invalid_input" and "n_threads" in job["error_message"] and job["attempts"] == 1


class SlowTransformEstimator:
    """A fitted estimator whose transform calls back (the test cancels from there)."""

    def __init__(self, on_transform, **kwargs):
        self.on_transform, self.rows = on_transform, 0

    def fit(self, counts):
        self.topic_word_ = np.full((2, counts.shape[1]), 1.0 / counts.shape[1])
        self.alpha_ = np.ones(2)
        return self

    def transform(self, counts):
        self.rows += counts.shape[0]
        self.on_transform()
        return np.full((counts.shape[0], 2), 0.5)


def test_a_cancel_during_doc_topic_stops_within_one_chunk(client, ctx):
    from tests.app.helpers import WORDS_DOCS
    from workers.fit_stages import DOC_CHUNK

    corpus = client.post("/v1/corpora", json=WORDS_DOCS * 200).json()  # 8,000 documents: 4 chunks
    assert corpus["n_documents"] > 3 * DOC_CHUNK
    accepted = submit_fit(client, corpus["id"], 2, heldout_fraction=0.0)
    job_id = accepted["job"]["id"]
    made = []

    def factory(**kwargs):
        made.append(SlowTransformEstimator(lambda: client.post(f"/v1/jobs/{job_id}/cancel"), **kwargs))
        return made[-1]

    outcome = run_job(ctx, job_id, "w", {"fit": lambda c, j, p: run_fit(c, j, p, factory)})
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert outcome.state == "cancelled" and job["state"] == "cancelled" and job["progress"]["stage"] == "doc_topic"
    assert made[0].rows == DOC_CHUNK  # stopped after the chunk during which the cancel came


def test_the_quality_stage_reports_progress_per_chunk_and_stops_when_told(synthetic_corpus, client, ctx):
    from workers.fit_stages import quality_in_chunks

    corpus, _ = synthetic_corpus
    model_id = submit_fit(client, corpus["id"], 3)["model_id"]
    job_id = client.get(f"/v1/models/{model_id}").json()["job_id"]
    assert run_now(ctx, job_id).state == "succeeded"
    folder = ctx.layout.model_dir(model_id)
    topic_word, alpha, doc_topic = load_topic_word(folder), load_alpha(folder), load_doc_topic(folder)
    counts = ctx.corpus(corpus["id"], corpus["checksum"]).counts
    seen = []
    whole = quality_in_chunks(topic_word, alpha, doc_topic[:200], counts[:200], counts[200:], seed=0,
                              vocabulary=[str(i) for i in range(counts.shape[1])],
                              progress=lambda *a: seen.append(a), chunk=10)
    assert [a for a in seen if a[0] == "quality"][-1] == ("quality", 101, 101) and len(seen) == 12
    assert np.isfinite(whole["heldout_loglik"]) and len(whole["topics"]) == 3

    class Stop(Exception):
        pass

    def stop_at_third(stage, done, total):
        if done >= 3:
            raise Stop

    with pytest.raises(Stop):
        quality_in_chunks(topic_word, alpha, doc_topic[:200], counts[:200], counts[200:], seed=0,
                          vocabulary=[str(i) for i in range(counts.shape[1])], progress=stop_at_third, chunk=10)
