"""Running one job: lease, progress, outcome. The job row is the source of truth.

A task calls :func:`run_job` with a job id. The lease (owner + expiry + attempts) is taken
with one conditional UPDATE, so a redelivered or duplicated task never runs a job twice:
only a queued job, or a running one whose lease expired (its worker died), can be taken.

The lease is short (``JOB_LEASE_S``) and renewed while the job runs by a
:class:`workers.lease_guard.LeaseGuard`, which also enforces the hard time limit. A job
is only marked succeeded after its artifacts are found on disk with their recorded
checksum.

Outcomes: success; ValueError (bad input) fails the job at once, never retried; a cancel
request or the soft time limit stops it at the next progress report; any other exception
is an infrastructure failure, retried with backoff until ``max_attempts``.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select, update

from app.artifacts.artifact_files import ArtifactCorrupt
from app.core.context import ServiceContext
from app.core.db import transaction, utcnow
from app.core.tables import FINAL_JOB_STATES, JobRow
from app.services.job_service import finish_job
from gpu.errors import InvalidInput

log = logging.getLogger(__name__)



class JobCancelled(Exception):
    """Raised from the progress callback when the job's cancellation was requested."""


class JobTimeLimit(Exception):
    """Raised from the progress callback once the job ran past its soft time limit."""


class LeaseLost(Exception):
    """Another worker owns the job now (our lease expired); stop without touching it."""


@dataclass(frozen=True)
class Outcome:
    """What the task should do next: nothing, or retry after ``retry_in`` seconds."""

    state: str  # succeeded | failed | cancelled | queued (to retry) | skipped | busy
    retry_in: float | None = None


Handler = Callable[[ServiceContext, JobRow, Callable[[str, int, int], None]], None]


def acquire_lease(ctx: ServiceContext, job_id: str, worker_id: str) -> tuple[JobRow | None, Outcome | None]:
    """Take the job for ``worker_id``; returns (job, None) or (None, outcome to report)."""
    now = utcnow()
    with transaction(ctx.sessions) as session:
        taken = session.execute(
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.cancel_requested.is_(False), JobRow.attempts < JobRow.max_attempts,
                   or_(JobRow.state == "queued", (JobRow.state == "running") & (JobRow.lease_expires_at < now)))
            .values(state="running", lease_owner=worker_id, attempts=JobRow.attempts + 1,
                    lease_expires_at=now + timedelta(seconds=ctx.settings.job_lease_s), started_at=now,
                    updated_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        job = session.get(JobRow, job_id, populate_existing=True)
        if job is None:
            log.warning("job %s does not exist; dropping its task", job_id)
            return None, Outcome("skipped")
        if taken:
            job.error_code = job.error_message = None
            return job, None
        if job.state in FINAL_JOB_STATES:
            return None, Outcome("skipped")
        if job.cancel_requested:
            finish_job(session, job, "cancelled", "cancelled", "cancelled before it started")
            return None, Outcome("cancelled")
        if job.state == "running" and job.lease_expires_at and job.lease_expires_at >= now:
            # Redelivered while another worker holds the lease: do nothing. If that worker
            # dies, its lease expires and the reconciler sends the job again.
            return None, Outcome("busy")
        finish_job(session, job, "failed", "attempts_exhausted", attempts_exhausted_message(job))
        return None, Outcome("failed")


class ProgressReporter:
    """The engine's ``progress(stage, done, total)`` callback, writing into the job row.

    Writes at most every ``interval_s`` seconds within a stage (always on a stage change or
    a stage's end), records each finished stage's duration, and raises
    :class:`JobCancelled` / :class:`JobTimeLimit` / :class:`LeaseLost` to stop the work.
    """

    def __init__(self, ctx: ServiceContext, job: JobRow, worker_id: str, *, clock=time.monotonic):
        self._ctx = ctx
        self._job_id = job.id
        self._worker_id = worker_id
        self._interval = ctx.settings.progress_interval_s
        self._clock = clock
        self._deadline = clock() + job.soft_time_limit_s
        self._soft_limit = job.soft_time_limit_s
        self._stage: str | None = None
        self._stage_start = clock()
        self._last_write = float("-inf")
        self.timings: dict[str, float] = dict(job.stage_timings or {})

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = self._clock()
        changed = stage != self._stage
        if changed:
            self._close_stage(now)
            self._stage, self._stage_start = stage, now
        if changed or done >= total or now - self._last_write >= self._interval:
            self._write(stage, int(done), int(total))
            self._last_write = now
        if now > self._deadline:
            raise JobTimeLimit(f"job ran past its soft time limit of {self._soft_limit} s (in stage {stage!r})")

    def _close_stage(self, now: float) -> None:
        if self._stage is not None:
            self.timings[self._stage] = round(self.timings.get(self._stage, 0.0) + now - self._stage_start, 6)

    def finish(self) -> dict[str, float]:
        """Close the current stage; the per-stage timings to store with the job."""
        self._close_stage(self._clock())
        self._stage = None
        return self.timings

    def _write(self, stage: str, done: int, total: int) -> None:
        with transaction(self._ctx.sessions) as session:
            updated = session.execute(
                update(JobRow).where(JobRow.id == self._job_id, JobRow.lease_owner == self._worker_id,
                                     JobRow.state == "running")
                .values(stage=stage, stage_done=done, stage_total=total, stage_timings=dict(self.timings),
                        stage_started_at=utcnow(), updated_at=utcnow())
                .execution_options(synchronize_session=False)
            ).rowcount
            cancel = session.scalar(select(JobRow.cancel_requested).where(JobRow.id == self._job_id))
        if cancel:
            raise JobCancelled("cancelled on request")
        if not updated:
            raise LeaseLost(f"job {self._job_id} is no longer leased to {self._worker_id}")


def backoff_s(ctx: ServiceContext, attempt: int) -> float:
    """Exponential backoff for infrastructure retries: base * 2**(attempt-1), capped."""
    settings = ctx.settings
    return min(settings.retry_backoff_max_s, settings.retry_backoff_s * 2 ** max(attempt - 1, 0))


def attempts_exhausted_message(job: JobRow) -> str:
    last = job.error_message or "its worker was lost"
    return (f"gave up after {job.attempts} of {job.max_attempts} attempts (the attempt cap, JOB_MAX_ATTEMPTS); "
            f"last: {last}")


def verify_outputs(ctx: ServiceContext, job: JobRow) -> None:
    """Raise unless the artifact the job made is on disk and matches its recorded checksum."""
    from app.artifacts.artifact_files import verify_checksum
    from app.core.tables import CorpusRow, ModelRow

    with ctx.sessions() as session:
        if job.kind == "fit":
            row = session.get(ModelRow, job.model_id)
            path = ctx.layout.model_dir(job.model_id)
        elif job.kind == "ingest":
            row = session.get(CorpusRow, job.params["corpus_id"])
            path = ctx.layout.corpus_dir(job.params["corpus_id"])
        else:
            return
    if row is None or not row.checksum:
        raise ArtifactMissing(f"job {job.id}: its {job.kind} output has no recorded checksum")
    try:
        verify_checksum(path, row.checksum)
    except ArtifactCorrupt as exc:  # not bad input: the write went wrong, so retry
        raise ArtifactMissing(str(exc)) from exc


class ArtifactMissing(RuntimeError):
    """The job's artifact is missing or corrupt after its handler returned (retried)."""


def run_job(ctx: ServiceContext, job_id: str, worker_id: str, handlers: dict[str, Handler], *,
            clock: Callable[[], float] = time.monotonic, guard_factory=None,
            verify: Callable[[ServiceContext, JobRow], None] | None = None) -> Outcome:
    """Run job ``job_id`` with the handler for its kind and record the outcome.

    ``guard_factory(ctx, job_id, worker_id, hard_limit_s)`` makes the lease guard (default
    :class:`workers.lease_guard.LeaseGuard`, which exits the process at the hard limit).
    ``verify(ctx, job)`` checks the job's artifacts before it may be marked succeeded
    (default :func:`verify_outputs`).
    """
    from workers.lease_guard import LeaseGuard

    job, outcome = acquire_lease(ctx, job_id, worker_id)
    if job is None:
        return outcome
    reporter = ProgressReporter(ctx, job, worker_id, clock=clock)
    guard = (guard_factory or LeaseGuard)(ctx, job.id, worker_id, job.hard_time_limit_s)
    try:
        with guard:
            handler = handlers[job.kind]
            handler(ctx, job, reporter)
            (verify or verify_outputs)(ctx, job)
    except LeaseLost as exc:
        log.warning("%s", exc)
        return Outcome("skipped")
    except JobCancelled as exc:
        return _settle(ctx, job, worker_id, reporter, "cancelled", "cancelled", str(exc))
    except JobTimeLimit as exc:
        return _settle(ctx, job, worker_id, reporter, "failed", "time_limit", str(exc))
    except InvalidInput as exc:  # bad input: the message says what; never retried
        return _settle(ctx, job, worker_id, reporter, "failed", "invalid_input", str(exc))
    except Exception as exc:
        message = infrastructure_message(exc)
        if _is_time_limit(exc):
            return _settle(ctx, job, worker_id, reporter, "failed", "time_limit",
                           f"job ran past its soft time limit of {job.soft_time_limit_s} s")
        log.exception("job %s attempt %d failed", job_id, job.attempts)
        if job.attempts >= job.max_attempts:
            return _settle(ctx, job, worker_id, reporter, "failed", "infrastructure",
                           f"failed after {job.attempts} attempt(s): {message}")
        _release(ctx, job, worker_id, reporter, message)
        return Outcome("queued", retry_in=backoff_s(ctx, job.attempts))
    return _settle(ctx, job, worker_id, reporter, "succeeded", None, None)


def infrastructure_message(exc: BaseException) -> str:
    """What a job row (readable by the client) says about a server fault: the exception's
    class and a generic phrase; its message may hold paths or hosts and goes to the log."""
    return f"{exc.__class__.__name__} (a server-side failure; details are in the worker log)"


def _is_time_limit(exc: BaseException) -> bool:
    from celery.exceptions import SoftTimeLimitExceeded

    return isinstance(exc, SoftTimeLimitExceeded)


def _settle(ctx, job, worker_id, reporter, state, code, message) -> Outcome:
    timings = reporter.finish()
    with transaction(ctx.sessions) as session:
        row = session.get(JobRow, job.id, populate_existing=True)
        if row is None or row.lease_owner != worker_id:
            return Outcome("skipped")
        row.stage_timings = timings
        if state == "succeeded":
            row.stage_done = row.stage_total = max(row.stage_total, 1)
        finish_job(session, row, state, code, message)
    return Outcome(state)


def _release(ctx, job, worker_id, reporter, message) -> None:
    """Put the job back in the queue state after an infrastructure failure."""
    timings = reporter.finish()
    with transaction(ctx.sessions) as session:
        row = session.get(JobRow, job.id, populate_existing=True)
        if row is not None and row.lease_owner == worker_id:
            row.state = "queued"
            row.lease_owner = None
            row.lease_expires_at = None
            row.stage_timings = timings
            row.error_code = "retrying"
            row.error_message = f"attempt {row.attempts} of {row.max_attempts} failed: {message}; retrying"


def reap_expired_leases(ctx: ServiceContext, requeue: Callable[[JobRow], None]) -> int:
    """Recover jobs whose messages may be gone; returns how many were handled.

    * running with an expired lease (its worker died): queued again, or failed once the
      attempts are used up (cancelled if that was asked for);
    * waiting for a retry far longer than the longest backoff (the retry message was lost):
      sent again. A duplicate message is harmless: the lease lets only one run.
    """
    from workers.lease_guard import hard_limit_message

    settings = ctx.settings
    now = utcnow()
    # A queued job untouched this long may have lost its message (broker restarted empty);
    # one waiting for a retry gets the longest backoff on top.
    lost = now - timedelta(seconds=settings.job_requeue_after_s)
    retry_lost = now - timedelta(seconds=settings.job_requeue_after_s + settings.retry_backoff_max_s)
    handled = 0
    to_requeue = []
    with transaction(ctx.sessions) as session:
        stale = session.scalars(
            select(JobRow).where(or_((JobRow.state == "running") & (JobRow.lease_expires_at < now),
                                     (JobRow.state == "queued") & (JobRow.error_code == "retrying")
                                     & (JobRow.updated_at < retry_lost),
                                     (JobRow.state == "queued") & or_(JobRow.error_code.is_(None),
                                                                      JobRow.error_code != "retrying")
                                     & (JobRow.updated_at < lost)))
            .with_for_update(skip_locked=True)).all()
        for job in stale:
            handled += 1
            job.updated_at = now
            if job.state == "queued":
                to_requeue.append(job)
            elif job.cancel_requested:
                finish_job(session, job, "cancelled", "cancelled", "cancelled (its worker was lost)")
            elif job.started_at is not None and _aware(job.started_at) + timedelta(
                    seconds=job.hard_time_limit_s) <= now:
                finish_job(session, job, "failed", "time_limit", hard_limit_message(job.hard_time_limit_s))
            elif job.attempts >= job.max_attempts:
                job.error_message = f"its worker was lost on attempt {job.attempts}"
                finish_job(session, job, "failed", "attempts_exhausted", attempts_exhausted_message(job))
            else:
                job.state, job.lease_owner, job.lease_expires_at = "queued", None, None
                job.error_code, job.error_message = "retrying", f"worker lost on attempt {job.attempts}; retrying"
                to_requeue.append(job)
    for job in to_requeue:
        requeue(job)
    return handled


def _aware(moment):
    """Timestamps read back from SQLite are naive; they were stored in UTC."""
    from datetime import timezone

    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
