"""workers.jobs: leases, redelivery, retries with backoff, attempt caps, reaper, progress."""
from __future__ import annotations

from datetime import timedelta

import pytest

from app.core.db import transaction, utcnow
from app.core.tables import JobRow
from gpu.errors import InvalidInput
from tests.app.helpers import submit_fit, upload
from workers import jobs
from workers.jobs import ProgressReporter, acquire_lease, backoff_s, reap_expired_leases


def run_job(*args, **kwargs):
    """workers.jobs.run_job for handlers that write no artifact (nothing to verify)."""
    kwargs.setdefault("verify", lambda ctx, job: None)
    return jobs.run_job(*args, **kwargs)


def _queued_fit(client) -> str:
    return submit_fit(client, upload(client)["id"])["job"]["id"]


def _job(ctx, job_id) -> JobRow:
    with ctx.sessions() as session:
        return session.get(JobRow, job_id)


def test_a_redelivered_task_never_runs_a_running_job_twice(client, ctx):
    job_id = _queued_fit(client)
    runs, inner = [], []

    def handler(ctx_, job, progress):
        runs.append(job.id)
        inner.append(run_job(ctx, job_id, "worker-b", {"fit": handler}))  # the duplicate delivery

    outcome = run_job(ctx, job_id, "worker-a", {"fit": handler})
    assert outcome.state == "succeeded" and runs == [job_id]
    duplicate = inner[0]
    assert duplicate.state == "busy" and duplicate.retry_in is None  # the lease holder finishes it
    assert run_job(ctx, job_id, "worker-b", {"fit": handler}).state == "skipped"  # finished: nothing to do
    assert _job(ctx, job_id).attempts == 1


def test_infrastructure_failures_retry_with_backoff_up_to_the_cap(client, ctx):
    job_id = _queued_fit(client)

    def flaky(ctx_, job, progress):
        raise OSError("disk unavailable")

    first = run_job(ctx, job_id, "w", {"fit": flaky})
    assert first.state == "queued" and first.retry_in == backoff_s(ctx, 1)
    job = _job(ctx, job_id)
    assert job.state == "queued" and job.lease_owner is None and job.attempts == 1
    assert job.error_message == ("attempt 1 of 3 failed: OSError (a server-side failure; details are in the "
                                 "worker log); retrying")
    second = run_job(ctx, job_id, "w", {"fit": flaky})
    assert second.retry_in == backoff_s(ctx, 2) == 2 * backoff_s(ctx, 1)
    third = run_job(ctx, job_id, "w", {"fit": flaky})
    assert third.state == "failed" and third.retry_in is None
    job = _job(ctx, job_id)
    assert job.state == "failed" and job.attempts == 3 and job.error_code == "infrastructure"
    assert job.error_message.startswith("failed after 3 attempt(s): OSError (a server-side failure")
    assert "disk unavailable" not in job.error_message  # the exception's text may hold paths: logged only
    assert run_job(ctx, job_id, "w", {"fit": flaky}).state == "skipped"


def test_bad_input_is_never_retried(client, ctx):
    job_id = _queued_fit(client)

    def bad(ctx_, job, progress):
        raise InvalidInput("document 7: negative count")

    assert run_job(ctx, job_id, "w", {"fit": bad}).state == "failed"
    job = _job(ctx, job_id)
    assert job.attempts == 1 and job.error_code == "invalid_input" and job.error_message == "document 7: negative count"


def test_a_plain_value_error_is_a_server_fault_and_retried(client, ctx):
    job_id = _queued_fit(client)

    def broken(ctx_, job, progress):
        raise ValueError("shapes (3,4) and (5,) not aligned")  # a bug, not the caller's input

    outcome = run_job(ctx, job_id, "w", {"fit": broken})
    assert outcome.state == "queued" and outcome.retry_in is not None
    job = _job(ctx, job_id)
    assert job.error_code == "retrying" and job.attempts == 1


def test_backoff_is_capped(ctx_factory):
    ctx = ctx_factory(retry_backoff_s=10, retry_backoff_max_s=35)
    assert [backoff_s(ctx, a) for a in (1, 2, 3, 4, 10)] == [10, 20, 35, 35, 35]


def test_an_expired_lease_can_be_taken_over(client, ctx):
    job_id = _queued_fit(client)
    job, _ = acquire_lease(ctx, job_id, "dead-worker")
    assert job.lease_owner == "dead-worker"
    assert acquire_lease(ctx, job_id, "other")[1].state == "busy"
    with transaction(ctx.sessions) as session:
        session.get(JobRow, job_id).lease_expires_at = utcnow() - timedelta(seconds=1)
    taken, outcome = acquire_lease(ctx, job_id, "other")
    assert outcome is None and taken.lease_owner == "other" and taken.attempts == 2


def test_the_old_owner_stops_when_its_lease_was_taken(client, ctx):
    job_id = _queued_fit(client)

    def handler(ctx_, job, progress):
        with transaction(ctx.sessions) as session:  # someone else took over meanwhile
            session.get(JobRow, job_id).lease_owner = "thief"
        progress("moments", 1, 2)

    assert run_job(ctx, job_id, "w", {"fit": handler}).state == "skipped"
    job = _job(ctx, job_id)
    assert job.state == "running" and job.lease_owner == "thief"


def test_reaper_requeues_or_fails_jobs_of_lost_workers(client, ctx):
    ids = [_queued_fit(client) for _ in range(3)]
    for job_id in ids:
        acquire_lease(ctx, job_id, "lost")
    with transaction(ctx.sessions) as session:
        for job_id in ids:
            session.get(JobRow, job_id).lease_expires_at = utcnow() - timedelta(seconds=5)
        session.get(JobRow, ids[1]).attempts = 3
        session.get(JobRow, ids[2]).cancel_requested = True
    requeued = []
    assert reap_expired_leases(ctx, lambda job: requeued.append(job.id)) >= 3
    assert ids[0] in requeued and ids[1] not in requeued and ids[2] not in requeued
    states = {job_id: _job(ctx, job_id) for job_id in ids}
    assert states[ids[0]].state == "queued" and "worker lost" in states[ids[0]].error_message
    assert states[ids[1]].state == "failed" and states[ids[1]].error_code == "attempts_exhausted"
    assert "gave up after 3 of 3 attempts (the attempt cap" in states[ids[1]].error_message
    assert states[ids[2]].state == "cancelled"


def test_reaper_resends_a_retry_whose_message_was_lost(client, ctx):
    job_id = _queued_fit(client)

    def flaky(ctx_, job, progress):
        raise OSError("network blip")

    assert run_job(ctx, job_id, "w", {"fit": flaky}).state == "queued"
    requeued = []
    reap_expired_leases(ctx, lambda job: requeued.append(job.id))
    assert requeued == []  # its retry message is still due
    with transaction(ctx.sessions) as session:
        session.get(JobRow, job_id).updated_at = utcnow() - timedelta(hours=1)
    reap_expired_leases(ctx, lambda job: requeued.append(job.id))
    assert requeued == [job_id] and _job(ctx, job_id).state == "queued"
    reap_expired_leases(ctx, lambda job: requeued.append(job.id))
    assert requeued == [job_id]  # not again right away


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_is_throttled_and_timed_per_stage(client, ctx_factory):
    ctx = ctx_factory(progress_interval_s=10.0)
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(context=ctx, migrate=False)) as api:
        job_id = _queued_fit(api)
    job, _ = acquire_lease(ctx, job_id, "w")
    clock = FakeClock()
    reporter = ProgressReporter(ctx, job, "w", clock=clock)
    reporter("moments", 0, 100)
    for done in range(1, 50):
        clock.now += 0.1
        reporter("moments", done, 100)
    assert _job(ctx, job_id).stage_done == 0  # throttled: only the stage change was written
    clock.now += 10.0
    reporter("moments", 60, 100)
    assert _job(ctx, job_id).stage_done == 60
    reporter("moments", 100, 100)  # a stage's end is always written
    clock.now += 2.0
    reporter("whitening", 1, 3)
    job = _job(ctx, job_id)
    assert (job.stage, job.stage_done, job.stage_total) == ("whitening", 1, 3)
    assert job.stage_timings == {"moments": pytest.approx(16.9)}
    clock.now += 1.5
    assert reporter.finish() == {"moments": pytest.approx(16.9), "whitening": pytest.approx(1.5)}


def test_soft_time_limit_stops_the_job(client, ctx_factory):
    ctx = ctx_factory(job_soft_time_limit_s=5, job_hard_time_limit_s=10)
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(context=ctx, migrate=False)) as api:
        job_id = _queued_fit(api)
    clock = FakeClock()

    def slow(ctx_, job, progress):
        progress("tensor", 1, 10)
        clock.now = 6.0
        progress("tensor", 2, 10)

    assert run_job(ctx, job_id, "w", {"fit": slow}, clock=clock).state == "failed"
    job = _job(ctx, job_id)
    assert job.error_code == "time_limit" and "soft time limit of 5 s" in job.error_message


def test_lease_guard_renews_the_lease_then_fails_the_job_at_its_hard_limit(ctx_factory):
    import time

    from fastapi.testclient import TestClient

    from app.main import create_app
    from workers.lease_guard import LeaseGuard

    ctx = ctx_factory(job_lease_s=0.3)
    with TestClient(create_app(context=ctx, migrate=False)) as own:
        job_id = _queued_fit(own)
    job, _ = acquire_lease(ctx, job_id, "w")
    first_expiry = job.lease_expires_at
    stopped = []
    with LeaseGuard(ctx, job_id, "w", hard_limit_s=0.8, on_hard_limit=lambda: stopped.append(True)):
        time.sleep(0.45)
        assert _job(ctx, job_id).lease_expires_at > first_expiry  # renewed while it runs
        time.sleep(0.8)
    assert stopped == [True]
    row = _job(ctx, job_id)
    assert row.state == "failed" and row.error_code == "time_limit" and row.lease_owner is None
    assert "hard time limit of 0.8 s" not in row.error_message  # the job's own limit is named
    assert f"hard time limit of {row.hard_time_limit_s} s" in row.error_message


def test_reaper_fails_a_job_whose_attempt_outlived_its_hard_limit(client, ctx):
    job_id = _queued_fit(client)
    acquire_lease(ctx, job_id, "killed-by-the-pool")
    with transaction(ctx.sessions) as session:
        row = session.get(JobRow, job_id)
        row.started_at = utcnow() - timedelta(seconds=row.hard_time_limit_s + 1)
        row.lease_expires_at = utcnow() - timedelta(seconds=1)
    requeued = []
    reap_expired_leases(ctx, lambda job: requeued.append(job.id))
    row = _job(ctx, job_id)
    assert requeued == [] and row.state == "failed" and row.error_code == "time_limit"
    assert f"hard time limit of {row.hard_time_limit_s} s" in row.error_message


def test_reaper_resends_a_queued_job_whose_message_the_broker_lost(client, ctx):
    job_id = _queued_fit(client)
    requeued = []
    reap_expired_leases(ctx, lambda job: requeued.append(job.id))
    assert requeued == []
    with transaction(ctx.sessions) as session:
        session.get(JobRow, job_id).updated_at = utcnow() - timedelta(seconds=ctx.settings.job_requeue_after_s + 1)
    reap_expired_leases(ctx, lambda job: requeued.append(job.id))
    reap_expired_leases(ctx, lambda job: requeued.append(job.id))
    assert requeued == [job_id] and _job(ctx, job_id).state == "queued"


def test_a_job_is_not_succeeded_without_its_checksummed_artifact(client, ctx):
    job_id = _queued_fit(client)
    outcome = jobs.run_job(ctx, job_id, "w", {"fit": lambda c, j, p: None})  # wrote nothing
    row = _job(ctx, job_id)
    assert outcome.state == "queued" and row.state == "queued" and row.error_code == "retrying"
    assert "ArtifactMissing" in row.error_message


@pytest.mark.parametrize("enabled", [False, True])
def test_the_fit_test_hook_works_only_when_the_worker_enables_test_hooks(ctx_factory, enabled):
    from fastapi.testclient import TestClient

    from app.main import create_app
    from tests.app.helpers import run_now

    ctx = ctx_factory(enable_test_hooks=enabled)
    with TestClient(create_app(context=ctx, migrate=False)) as own:
        corpus_id = upload(own)["id"]
        if not enabled:  # refused at submit, and by a worker that finds it stored anyway
            response = own.post("/v1/models", json={"corpus_id": corpus_id, "n_topics": 2,
                                                    "options": {"test_hook": {"sleep_s": 0.05}}})
            assert response.status_code == 422 and "test_hook" in response.json()["error"]["message"]
            accepted = submit_fit(own, corpus_id)
            with ctx.sessions.begin() as session:
                row = session.get(JobRow, accepted["job"]["id"])
                row.params = {**row.params, "options": {"test_hook": {"sleep_s": 0.05}}}
        else:
            accepted = submit_fit(own, corpus_id, options={"test_hook": {"sleep_s": 0.05}})
        outcome = run_now(ctx, accepted["job"]["id"])
        job = own.get(f"/v1/jobs/{accepted['job']['id']}").json()
    if enabled:
        assert outcome.state == "succeeded" and "test_hook" in job["stage_timings"]
    else:
        assert outcome.state == "failed" and job["error_code"] == "invalid_input"
        assert "test_hook" in job["error_message"]


def test_the_hard_limit_holds_when_the_model_is_deleted_mid_fit(ctx_factory):
    import time

    from fastapi.testclient import TestClient

    from app.main import create_app
    from workers.lease_guard import LeaseGuard

    ctx = ctx_factory(job_lease_s=0.3)
    with TestClient(create_app(context=ctx, migrate=False)) as own:
        accepted = submit_fit(own, upload(own)["id"])
        acquire_lease(ctx, accepted["job"]["id"], "w")
        stopped = []
        with LeaseGuard(ctx, accepted["job"]["id"], "w", hard_limit_s=1.0, on_hard_limit=lambda: stopped.append(1)):
            assert own.delete(f"/v1/models/{accepted['model_id']}").status_code == 204
            time.sleep(1.5)  # the fit "blocks" past its hard limit
        assert stopped == [1]
        assert own.get(f"/v1/jobs/{accepted['job']['id']}").json()["state"] == "cancelled"
