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

    reserved = _submit(client, corpus["id"], options={"seed": 1})
    assert run_now(ctx, reserved["job"]["id"]).state == "failed"
    unknown = _submit(client, corpus["id"], options={"no_such_option": 1})
    assert run_now(ctx, unknown["job"]["id"]).state == "failed"
    for job_id, words in ((reserved["job"]["id"], "seed"), (unknown["job"]["id"], "no_such_option")):
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["error_code"] == "invalid_input" and words in job["error_message"], job
