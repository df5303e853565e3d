"""The job queue, in the modelfleet database: priorities, leases, heartbeats, retries.

A worker claims a job by taking a lease on it (owner + expiry) in one transaction: SQLite
serialises writers (BEGIN IMMEDIATE), PostgreSQL locks the chosen row and skips rows other
workers hold. A worker extends its lease while the job runs; if it dies, the lease expires
and the next claim takes the job again (a new attempt) until ``max_attempts``. Every update
a worker makes names the attempt it owns, so a worker that lost its lease cannot overwrite
the job (fencing). A worker that stops gracefully releases its jobs: they go back to the
queue and the interrupted try is not counted. Higher priority first; within a priority,
oldest first. A worker that counts its GPUs starts GPU jobs only on free ones, in line, and a
job asking for more GPUs than any live worker offers fails (the rule: ``jobs.gpus``).
"""

from __future__ import annotations

import builtins
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from modelfleet.db import Database, JobLogRow, JobRow, WorkerRow, as_utc
from modelfleet.errors import JobError
from modelfleet.jobs.gpus import gpu_room, gpu_shortage

logger = logging.getLogger(__name__)

WORKER_STALE = timedelta(seconds=60)
MAX_LEASE_S = 30 * 86400.0


def check_lease(lease_s: float) -> float:
    """A usable lease: positive and finite (a lease of 0 lets two workers take one job)."""
    if not (math.isfinite(lease_s) and 0 < lease_s <= MAX_LEASE_S):
        raise JobError(
            f"invalid lease {lease_s!r} s: a job leased for no time is taken by the next "
            "worker while it still runs",
            hint=f"give a lease above 0 and at most {MAX_LEASE_S:.0f} s (30 days), e.g. 30",
        )
    return lease_s


class JobState(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}


class Job(BaseModel):
    """A job as the queue reports it."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: int
    pipeline: str
    params: dict[str, Any]
    gpus: int
    cpus: float
    memory: str
    priority: int
    backend: str
    state: JobState
    attempts: int
    max_attempts: int
    lease_owner: str | None
    lease_expires: datetime | None
    cancel_requested: bool
    external_id: str | None
    result: dict[str, Any] | None
    error: str | None
    log_key: str | None
    submitted_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _now() -> datetime:
    return datetime.now(UTC)


def _job(row: JobRow) -> Job:
    job = Job.model_validate(row)
    return job.model_copy(
        update={
            "lease_expires": as_utc(row.lease_expires),
            "created_at": as_utc(row.created_at),
            "started_at": as_utc(row.started_at),
            "finished_at": as_utc(row.finished_at),
        }
    )


_IN_LINE = (JobRow.priority.desc(), JobRow.created_at, JobRow.id)


def _waiting(now: datetime) -> ColumnElement[bool]:
    """Local jobs a worker may claim: queued, or running on a lease that ran out."""
    return (JobRow.backend == "local") & or_(
        JobRow.state == JobState.QUEUED.value,
        (JobRow.state == JobState.RUNNING.value) & (JobRow.lease_expires < now),
    )


def _live_workers(session: Session) -> list[WorkerRow]:
    since = _now() - WORKER_STALE
    return [w for w in session.scalars(select(WorkerRow)) if as_utc(w.seen_at) > since]


def _oversized(session: Session, gpus: int, now: datetime) -> tuple[int, list[JobRow]]:
    """The most GPUs a live worker (or the caller, with ``gpus``) offers; the jobs asking more."""
    offered = max([gpus, *(w.gpus for w in _live_workers(session))])
    rows = session.scalars(select(JobRow).where(_waiting(now), JobRow.gpus > offered))
    return offered, list(rows)


def _external_reason(job: Job) -> str:
    if job.external_id is None:
        return "not sent to a cluster (its Job manifest was written with --out)"
    return f"handed to Kubernetes as Job {job.external_id}; its pod has not started it"


class JobQueue:
    """Submit, claim, heartbeat, finish and inspect jobs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._db = Database(url)

    def close(self) -> None:
        """Release connections."""
        self._db.close()

    # -- submitting and inspecting --------------------------------------------------------

    def submit(
        self,
        pipeline: str,
        params: dict[str, Any] | None = None,
        *,
        gpus: int = 0,
        cpus: float = 1.0,
        memory: str = "1Gi",
        priority: int = 0,
        max_attempts: int = 3,
        backend: str = "local",
        user: str = "unknown",
        check: Callable[[Job], object] | None = None,
    ) -> Job:
        """Queue a pipeline run.

        ``check`` sees the new job (its id assigned) before it is committed; an error it
        raises leaves no row behind (a Kubernetes job whose manifest cannot be rendered).
        """
        if gpus < 0 or cpus <= 0 or max_attempts < 1:
            raise JobError(
                f"invalid resources (gpus={gpus}, cpus={cpus}, max_attempts={max_attempts})",
                hint="gpus >= 0, cpus > 0, max attempts >= 1",
            )
        row = JobRow(
            pipeline=pipeline,
            params=dict(params or {}),
            gpus=gpus,
            cpus=cpus,
            memory=memory,
            priority=priority,
            backend=backend,
            state=JobState.QUEUED.value,
            attempts=0,
            max_attempts=max_attempts,
            cancel_requested=False,
            submitted_by=user,
            created_at=_now(),
        )
        with self._db.writing() as session:
            session.add(row)
            session.flush()
            job = _job(row)
            if check is not None:
                check(job)
            return job

    def get(self, job_id: int) -> Job:
        """One job, or a clear error."""
        with self._db.reading() as session:
            row = session.get(JobRow, job_id)
            if row is None:
                raise JobError(f"job {job_id} does not exist", hint="run 'modelfleet jobs list'")
            return _job(row)

    def list(self, *, state: str | None = None, limit: int = 50) -> list[Job]:
        """Newest first."""
        with self._db.reading() as session:
            query = select(JobRow).order_by(JobRow.id.desc()).limit(limit)
            if state:
                query = query.where(JobRow.state == state)
            return [_job(r) for r in session.scalars(query)]

    def waiting_reason(self, job: Job) -> str:
        """Why a queued job has not started (no worker with its resources, or just queued)."""
        if job.state is not JobState.QUEUED:
            return ""
        if job.backend != "local":
            return _external_reason(job)
        with self._db.reading() as session:
            live = [(w.gpus, w.cpus) for w in _live_workers(session)]
        if not live:
            return "waiting for a worker (none is running: start one with 'modelfleet worker')"
        if job.gpus and not any(gpus >= job.gpus for gpus, _ in live):
            return (
                f"waiting for a worker with {job.gpus} GPU(s): none of the "
                f"{len(live)} live workers has one"
            )
        if not any(cpus >= job.cpus for _, cpus in live):
            return f"waiting for a worker with {job.cpus:g} CPUs"
        return "queued behind other jobs"

    def cancel(self, job_id: int) -> Job:
        """Cancel a queued job now, or ask the worker running it to stop."""
        with self._db.writing() as session:
            row = session.get(JobRow, job_id)
            if row is None:
                raise JobError(f"job {job_id} does not exist", hint="run 'modelfleet jobs list'")
            if row.state in {s.value for s in FINISHED}:
                raise JobError(f"job {job_id} already {row.state}; nothing to cancel")
            if row.state == JobState.QUEUED.value:
                row.state = JobState.CANCELLED.value
                row.finished_at = _now()
                row.error = "cancelled before it started"
            else:
                row.cancel_requested = True
            session.flush()
            return _job(row)

    # -- workers --------------------------------------------------------------------------

    def register_worker(self, name: str, *, gpus: int, cpus: float) -> None:
        """Advertise (or refresh) a worker's resources."""
        with self._db.writing() as session:
            row = session.get(WorkerRow, name)
            if row is None:
                session.add(WorkerRow(name=name, gpus=gpus, cpus=cpus, seen_at=_now()))
            else:
                row.gpus, row.cpus, row.seen_at = gpus, cpus, _now()

    def offered_gpus(self) -> int | None:
        """The most GPUs a live worker offers; None when no worker is live."""
        with self._db.reading() as session:
            return max((w.gpus for w in _live_workers(session)), default=None)

    def fail_oversized(self, *, gpus: int) -> builtins.list[Job]:
        """Fail the local jobs that ask for more GPUs than any live worker offers.

        ``gpus`` is the caller's own offer, counted even before it registers. Such a job
        would wait forever; its error says what it asked, what workers offer, what to do.
        """
        now = _now()
        with self._db.reading() as session:  # nothing to fail, the usual case: no write lock
            if not _oversized(session, gpus, now)[1]:
                return []
        with self._db.writing() as session:
            offered, rows = _oversized(session, gpus, now)
            for row in rows:
                self._end(row, JobState.FAILED, str(gpu_shortage(row.gpus, offered)))
            return [_job(row) for row in rows]

    def claim(
        self, worker: str, *, gpus: int, cpus: float, lease_s: float, free_gpus: int | None = None
    ) -> Job | None:
        """Lease the next job this worker can run, or None.

        With ``free_gpus`` (how many of its ``gpus`` no job of the worker holds), a GPU job
        starts only on free GPUs and GPU jobs start in line (the rule: ``jobs.gpus``).
        """
        check_lease(lease_s)
        now = _now()
        with self._db.writing() as session:
            in_line = select(JobRow).where(_waiting(now), JobRow.cpus <= cpus).order_by(*_IN_LINE)
            room = gpus if free_gpus is None else gpu_room(session, in_line, gpus, free_gpus)
            query = in_line.where(JobRow.gpus <= room).limit(20)
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            for row in session.scalars(query):
                if row.state == JobState.RUNNING.value:  # its worker died
                    logger.warning("job %s lost its lease (%s); retrying", row.id, row.lease_owner)
                    if row.cancel_requested:
                        self._end(row, JobState.CANCELLED, "cancelled; its worker is gone")
                        continue
                if row.attempts >= row.max_attempts:
                    self._end(
                        row,
                        JobState.FAILED,
                        f"gave up after {row.attempts} attempts (workers lost)",
                    )
                    continue
                row.state = JobState.RUNNING.value
                row.attempts += 1
                row.lease_owner = worker
                row.lease_expires = now + timedelta(seconds=lease_s)
                row.started_at = row.started_at or now
                session.flush()
                return _job(row)
        return None

    def take(self, job_id: int, owner: str, *, lease_s: float = 86400.0) -> Job:
        """Lease one specific job (a Kubernetes Job's pod runs exactly its own)."""
        check_lease(lease_s)
        with self._db.writing() as session:
            row = session.get(JobRow, job_id)
            if row is None:
                raise JobError(f"job {job_id} does not exist")
            if row.state in {s.value for s in FINISHED}:
                raise JobError(f"job {job_id} is already {row.state}")
            row.state = JobState.RUNNING.value
            row.attempts += 1
            row.lease_owner = owner
            row.lease_expires = _now() + timedelta(seconds=lease_s)
            row.started_at = row.started_at or _now()
            session.flush()
            return _job(row)

    def set_external(self, job_id: int, external_id: str) -> None:
        """Remember the name of the Kubernetes Job running this job."""
        with self._db.writing() as session:
            row = session.get(JobRow, job_id)
            if row is not None:
                row.external_id = external_id

    def end_external(
        self, job_id: int, state: JobState, error: str | None, *, log: str = ""
    ) -> bool:
        """End a job its runner could not record (a Kubernetes pod that never reported).

        Nothing changes when the job already has an outcome; the given output is kept as the
        log of its last attempt.
        """
        with self._db.writing() as session:
            row = session.get(JobRow, job_id)
            if row is None or row.state in {s.value for s in FINISHED}:
                return False
            self._end(row, state, error)
            if log:
                session.add(
                    JobLogRow(
                        job_id=job_id, attempt=max(row.attempts, 1), text=log, created_at=_now()
                    )
                )
            return True

    @staticmethod
    def _end(row: JobRow, state: JobState, error: str | None) -> None:
        row.state = state.value
        row.error = error
        row.finished_at = _now()
        row.lease_owner = None
        row.lease_expires = None

    def heartbeat(self, job_id: int, worker: str, attempt: int, *, lease_s: float) -> bool | None:
        """Extend the lease; returns cancel_requested, or None when the lease was lost."""
        check_lease(lease_s)
        with self._db.writing() as session:
            row = session.get(JobRow, job_id)
            if row is None or row.lease_owner != worker or row.attempts != attempt:
                return None
            row.lease_expires = _now() + timedelta(seconds=lease_s)
            return bool(row.cancel_requested)

    def release(self, job_id: int, worker: str, attempt: int) -> bool:
        """Hand a job back to the queue from a stopping worker, without charging the attempt.

        Only the holder of this attempt's lease can release it. The job is queued again for
        any worker; the interrupted try's output stays in the log under its attempt number,
        which the next claim reuses. A job whose cancel was asked for ends cancelled instead.
        """
        with self._db.writing() as session:
            row = session.get(JobRow, job_id)
            if (
                row is None
                or row.lease_owner != worker
                or row.attempts != attempt
                or row.state != JobState.RUNNING.value
            ):
                return False
            if row.cancel_requested:
                self._end(row, JobState.CANCELLED, "cancelled; its worker stopped")
                return True
            row.state = JobState.QUEUED.value
            row.attempts -= 1
            row.lease_owner = None
            row.lease_expires = None
            return True

    def finish(
        self,
        job_id: int,
        worker: str,
        attempt: int,
        state: JobState,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        log_key: str | None = None,
    ) -> bool:
        """Record the outcome, only if this worker still holds this attempt's lease."""
        with self._db.writing() as session:
            changed = session.execute(  # type: ignore[attr-defined]
                update(JobRow)
                .where(
                    JobRow.id == job_id,
                    JobRow.lease_owner == worker,
                    JobRow.attempts == attempt,
                    JobRow.state == JobState.RUNNING.value,
                )
                .values(
                    state=state.value,
                    result=result,
                    error=error,
                    log_key=log_key,
                    finished_at=_now(),
                    lease_owner=None,
                    lease_expires=None,
                )
            ).rowcount
            return bool(changed)

    # -- logs -----------------------------------------------------------------------------

    def append_log(self, job_id: int, attempt: int, text: str) -> None:
        """Add a chunk of output."""
        if text:
            with self._db.writing() as session:
                session.add(JobLogRow(job_id=job_id, attempt=attempt, text=text, created_at=_now()))

    def logs(self, job_id: int, *, after: int = 0) -> builtins.list[tuple[int, int, str]]:
        """``(chunk id, attempt, text)`` after chunk ``after``, in order."""
        self.get(job_id)
        with self._db.reading() as session:
            rows = session.scalars(
                select(JobLogRow)
                .where(JobLogRow.job_id == job_id, JobLogRow.id > after)
                .order_by(JobLogRow.id)
            )
            return [(r.id, r.attempt, r.text) for r in rows]
