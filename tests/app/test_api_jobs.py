"""/v1/jobs: every state (queued, running, succeeded, failed, cancelled), cancel, listing."""
from __future__ import annotations

from tests.app.helpers import fit_now, run_now, submit_fit, upload
from workers.jobs import run_job


def test_cancel_a_queued_job(client, ctx):
    accepted = submit_fit(client, upload(client)["id"])
    job_id = accepted["job"]["id"]
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200
    assert response.json()["state"] == "cancelled" and response.json()["cancel_requested"] is True
    assert client.get(f"/v1/models/{accepted['model_id']}").json()["status"] == "cancelled"
    again = client.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"
    # a delivered task for a cancelled job does nothing
    assert run_now(ctx, job_id).state == "skipped"
    assert client.get(f"/v1/jobs/{job_id}").json()["attempts"] == 0


def test_running_job_reports_progress_and_stops_when_cancelled(client, ctx):
    accepted = submit_fit(client, upload(client)["id"])
    job_id = accepted["job"]["id"]
    seen = []

    def handler(ctx_, job, progress):
        progress("moments", 1, 4)
        seen.append(client.get(f"/v1/jobs/{job_id}").json())
        assert client.post(f"/v1/jobs/{job_id}/cancel").json()["state"] == "running"
        progress("moments", 2, 4)  # raises JobCancelled
        raise AssertionError("not reached")

    outcome = run_job(ctx, job_id, "w1", {"fit": handler})
    assert outcome.state == "cancelled"
    running = seen[0]
    assert running["state"] == "running" and running["attempts"] == 1
    assert running["progress"] == {"stage": "moments", "done": 1, "total": 4, "percent": 25.0}
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "cancelled" and job["error_message"] == "cancelled on request"
    assert "moments" in job["stage_timings"] and job["finished_at"]
    assert client.get(f"/v1/models/{accepted['model_id']}").json()["status"] == "cancelled"


def test_failing_job_says_what_went_wrong(client, ctx):
    docs = [f"alpha{i} beta{i}" for i in range(30)]  # two tokens each: no third-order information
    corpus = upload(client, docs)
    accepted = submit_fit(client, corpus["id"])
    assert run_now(ctx, accepted["job"]["id"]).state == "failed"
    job = client.get(f"/v1/jobs/{accepted['job']['id']}").json()
    assert job["state"] == "failed" and job["error_code"] == "invalid_input"
    assert job["attempts"] == 1  # bad input is never retried
    assert "3" in job["error_message"] and "document" in job["error_message"]
    assert client.get(f"/v1/models/{accepted['model_id']}").json()["status"] == "failed"
    assert not ctx.layout.model_dir(accepted["model_id"]).exists()


def test_list_and_filter_jobs(client, ctx):
    corpus = upload(client)
    model_id, done_id = fit_now(ctx, client, corpus["id"])
    queued = submit_fit(client, corpus["id"])["job"]["id"]
    jobs = client.get("/v1/jobs").json()["jobs"]
    assert [j["id"] for j in jobs] == [queued, done_id]  # newest first
    assert [j["id"] for j in client.get("/v1/jobs", params={"state": "succeeded"}).json()["jobs"]] == [done_id]
    assert client.get("/v1/jobs", params={"state": "bogus"}).status_code == 422
    assert client.get("/v1/jobs/ffff").status_code == 404
    assert client.post("/v1/jobs/ffff/cancel").status_code == 404


def test_deleting_a_model_cancels_its_queued_job(client, ctx):
    accepted = submit_fit(client, upload(client)["id"])
    assert client.delete(f"/v1/models/{accepted['model_id']}").status_code == 204
    job = client.get(f"/v1/jobs/{accepted['job']['id']}").json()
    assert job["state"] == "cancelled" and job["error_message"] == "the model was deleted"
