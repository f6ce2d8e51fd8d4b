"""POST /v1/models options: typed, strict, bounded at submit; the worker's memory budget."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.helpers import WORDS_DOCS, run_now, submit_fit, upload

BAD_BODIES = [
    ({"n_topics": True}, "n_topics"),
    ({"n_topics": "3"}, "n_topics"),
    ({"n_topics": 2, "alpha0": 1e300}, "alpha0"),
    ({"n_topics": 2, "alpha0": 0}, "alpha0"),
    ({"n_topics": 2, "seed": True}, "seed"),
    ({"n_topics": 2, "options": {"n_extra_components": 1000000}}, "options.n_extra_components"),
    ({"n_topics": 2, "options": {"n_restarts": 1000000000}}, "options.n_restarts"),
    ({"n_topics": 2, "options": {"n_restarts": 51}}, "options.n_restarts"),
    ({"n_topics": 2, "options": {"n_iter": 1000000000}}, "options.n_iter"),
    ({"n_topics": 2, "options": {"n_iter": True}}, "options.n_iter"),
    ({"n_topics": 2, "options": {"n_krylov_blocks": 11}}, "options.n_krylov_blocks"),
    ({"n_topics": 2, "options": {"n_threads": 1000000}}, "options.n_threads"),
    ({"n_topics": 2, "options": {"block_rows": 10}}, "options.block_rows"),
    ({"n_topics": 2, "options": {"progress": None}}, "options.progress"),
    ({"n_topics": 2, "options": {"dtype": "float16"}}, "options.dtype"),
    ({"n_topics": 2, "options": {"backend": "tpu"}}, "options.backend"),
    ({"n_topics": 2, "options": {"refine": 1}}, "options.refine"),
    ({"n_topics": 2, "options": {"word_scale_power": 2.0}}, "options.word_scale_power"),
    ({"n_topics": 2, "options": {"tol": 0.5}}, "options.tol"),
    ({"n_topics": "auto", "options": {"k_range": [5, 3]}}, "k_range"),
]


@pytest.mark.parametrize("body,field", BAD_BODIES, ids=[f for _, f in BAD_BODIES])
def test_bad_fit_parameters_are_refused_at_submit_naming_the_field(client, body, field):
    corpus = upload(client)
    response = client.post("/v1/models", json={"corpus_id": corpus["id"], **body})
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]["message"]
    assert client.get("/v1/jobs").json()["jobs"] == []


def test_the_message_gives_the_allowed_range(client):
    corpus = upload(client)
    response = client.post("/v1/models", json={"corpus_id": corpus["id"], "n_topics": 2,
                                               "options": {"n_restarts": 51}})
    assert "less than or equal to 50" in response.json()["error"]["message"]


def test_backend_cupy_needs_a_gpu_deployment(ctx_factory):
    for gpu, expected in ((False, 422), (True, 202)):
        ctx = ctx_factory(gpu_available=gpu)
        with TestClient(create_app(context=ctx, migrate=False)) as own:
            corpus = upload(own)
            response = own.post("/v1/models", json={"corpus_id": corpus["id"], "n_topics": 2,
                                                    "options": {"backend": "cupy"}})
            assert response.status_code == expected, response.text
            if expected == 422:
                assert "GPU_AVAILABLE" in response.json()["error"]["message"]


def test_k_range_is_bounded_by_max_topics_and_needs_auto(ctx_factory):
    ctx = ctx_factory(max_topics=20)
    with TestClient(create_app(context=ctx, migrate=False)) as own:
        corpus = upload(own)
        too_high = own.post("/v1/models", json={"corpus_id": corpus["id"], "n_topics": "auto",
                                                "options": {"k_range": [2, 21]}})
        assert too_high.status_code == 422 and "MAX_TOPICS" in too_high.json()["error"]["message"]
        fixed_k = own.post("/v1/models", json={"corpus_id": corpus["id"], "n_topics": 2,
                                               "options": {"k_range": [2, 5]}})
        assert fixed_k.status_code == 422 and "k_range" in fixed_k.json()["error"]["message"]
        assert own.post("/v1/models", json={"corpus_id": corpus["id"], "n_topics": "auto",
                                            "options": {"k_range": [2, 5]}}).status_code == 202


def test_good_options_reach_the_estimator_and_are_listed_in_openapi(client, ctx):
    corpus = upload(client)
    options = {"backend": "numpy", "dtype": "float32", "n_restarts": 3, "n_iter": 20, "n_extra_components": 0,
               "n_krylov_blocks": 2, "refine": False, "word_scale_power": 0.5, "tol": 1e-8}
    accepted = submit_fit(client, corpus["id"], options=options)
    assert client.get(f"/v1/models/{accepted['model_id']}").json()["params"]["options"] == options
    assert run_now(ctx, accepted["job"]["id"]).state == "succeeded"
    schema = client.get("/openapi.json").json()["components"]["schemas"]["FitOptions"]
    assert set(schema["properties"]) == set(options) | {"k_range"}
    assert schema["additionalProperties"] is False
    restarts = schema["properties"]["n_restarts"]["anyOf"][0]
    assert restarts["maximum"] == 50 and restarts["type"] == "integer"


def test_a_fit_over_the_memory_budget_fails_as_bad_input_without_retry(ctx_factory):
    ctx = ctx_factory(fit_memory_budget=200_000)
    with TestClient(create_app(context=ctx, migrate=False)) as own:
        corpus = upload(own, docs=WORDS_DOCS * 20)
        accepted = submit_fit(own, corpus["id"], n_topics=5, options={"n_extra_components": 4, "n_restarts": 50})
        assert run_now(ctx, accepted["job"]["id"]).state == "failed"
        job = own.get(f"/v1/jobs/{accepted['job']['id']}").json()
    assert job["error_code"] == "invalid_input" and job["attempts"] == 1
    assert "FIT_MEMORY_BUDGET" in job["error_message"] and "0.2 MiB" in job["error_message"]
