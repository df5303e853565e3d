"""Leases on real SQLite and PostgreSQL: heartbeats hold them, expiry hands the job on exactly
once, a cancelled job of a dead worker ends cancelled, and refused requests change nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from modelfleet.errors import JobError
from modelfleet.jobs import JobQueue, JobState


@pytest.fixture
def queue(db_url: str) -> Iterator[JobQueue]:
    q = JobQueue(db_url)
    yield q
    q.close()


def _claim(q: JobQueue, worker: str, lease_s: float = 60.0, cpus: float = 1) -> Any:
    return q.claim(worker, gpus=0, cpus=cpus, lease_s=lease_s)


def test_heartbeats_keep_the_lease_and_stopping_them_hands_the_job_on(queue: JobQueue) -> None:
    job = queue.submit("p.py")
    held = _claim(queue, "w1", lease_s=0.4)
    assert held is not None and held.lease_owner == "w1"
    for _ in range(4):  # 0.8 s in all: twice the lease, kept alive by heartbeats
        time.sleep(0.2)
        assert queue.heartbeat(job.id, "w1", 1, lease_s=0.4) is False
        assert _claim(queue, "w2") is None
    assert queue.get(job.id).lease_expires > held.lease_expires
    time.sleep(0.5)
    taken = _claim(queue, "w2")
    assert (taken.id, taken.attempts, taken.lease_owner) == (job.id, 2, "w2")
    assert taken.started_at == held.started_at  # first start is kept across attempts
    assert queue.heartbeat(job.id, "w1", 1, lease_s=60) is None


def test_a_cancelled_job_whose_worker_died_ends_cancelled_not_retried(queue: JobQueue) -> None:
    job = queue.submit("p.py", max_attempts=3)
    later = queue.submit("p.py")
    assert _claim(queue, "w1", lease_s=0.2).id == job.id
    assert queue.cancel(job.id).cancel_requested
    time.sleep(0.3)
    assert _claim(queue, "w2").id == later.id  # the next job, not a retry of the cancelled one
    ended = queue.get(job.id)
    assert (ended.state, ended.attempts, ended.error) == (
        JobState.CANCELLED,
        1,
        "cancelled; its worker is gone",
    )
    assert ended.lease_owner is None and ended.finished_at is not None
    assert not queue.finish(job.id, "w1", 1, JobState.SUCCEEDED)


def test_finished_jobs_refuse_cancel_and_take_and_keep_their_outcome(queue: JobQueue) -> None:
    job = queue.submit("p.py")
    _claim(queue, "w1")
    assert queue.finish(job.id, "w1", 1, JobState.SUCCEEDED, result={"version": "m:1"})
    with pytest.raises(JobError, match=f"job {job.id} already succeeded; nothing to cancel"):
        queue.cancel(job.id)
    with pytest.raises(JobError, match=f"job {job.id} is already succeeded"):
        queue.take(job.id, "pod/x")
    assert not queue.end_external(job.id, JobState.FAILED, "pod vanished", log="late output")
    assert not queue.finish(job.id, "w1", 1, JobState.FAILED, error="again")
    done = queue.get(job.id)
    assert (done.state, done.result, done.error, done.attempts) == (
        JobState.SUCCEEDED,
        {"version": "m:1"},
        None,
        1,
    )
    assert queue.logs(job.id) == []
    with pytest.raises(JobError, match="job 4242 does not exist"):
        queue.take(4242, "pod/x")
    with pytest.raises(JobError, match="job 4242 does not exist; run 'modelfleet jobs list'"):
        queue.cancel(4242)


def test_a_pod_takes_its_own_job_and_an_unreported_end_keeps_the_log(queue: JobQueue) -> None:
    job = queue.submit("p.py", backend="kubernetes")
    assert _claim(queue, "local", cpus=64) is None  # local workers leave cluster jobs alone
    assert "not sent to a cluster" in queue.waiting_reason(queue.get(job.id))
    queue.set_external(job.id, "mf-job-1")
    assert "handed to Kubernetes as Job mf-job-1" in queue.waiting_reason(queue.get(job.id))
    taken = queue.take(job.id, "pod/a")
    assert (taken.state, taken.attempts, taken.lease_owner) == (JobState.RUNNING, 1, "pod/a")
    assert queue.waiting_reason(taken) == ""
    assert queue.end_external(job.id, JobState.FAILED, "OOMKilled", log="killed\n")
    ended = queue.get(job.id)
    assert (ended.state, ended.error, ended.lease_owner) == (JobState.FAILED, "OOMKilled", None)
    assert [(attempt, text) for _, attempt, text in queue.logs(job.id)] == [(1, "killed\n")]
    assert not queue.finish(job.id, "pod/a", 1, JobState.SUCCEEDED)  # too late to report


def test_jobs_wait_for_a_worker_big_enough(queue: JobQueue) -> None:
    job = queue.submit("p.py", cpus=4)
    assert "none is running" in queue.waiting_reason(job)
    queue.register_worker("small", gpus=0, cpus=2)
    assert _claim(queue, "small", cpus=2) is None
    assert queue.waiting_reason(queue.get(job.id)) == "waiting for a worker with 4 CPUs"
    queue.register_worker("big", gpus=0, cpus=8)
    assert queue.waiting_reason(queue.get(job.id)) == "queued behind other jobs"
    assert _claim(queue, "big", cpus=8).id == job.id


def test_refused_submissions_queue_nothing(queue: JobQueue) -> None:
    for bad in ({"gpus": -1}, {"cpus": 0}, {"cpus": -2.0}, {"max_attempts": 0}):
        with pytest.raises(JobError, match="invalid resources") as caught:
            queue.submit("p.py", **bad)  # type: ignore[arg-type]
        assert "gpus >= 0, cpus > 0, max attempts >= 1" in str(caught.value)
    assert queue.list() == []


def _reclaimer(url: str, name: str, out: list[tuple[int, int]], barrier: Any) -> None:
    q = JobQueue(url)  # its own engine and connections: the database arbitrates
    try:
        barrier.wait()
        while (job := q.claim(name, gpus=0, cpus=1, lease_s=600)) is not None:
            out.append((job.id, job.attempts))
    finally:
        q.close()


def test_racing_workers_reclaim_each_expired_lease_exactly_once(
    queue: JobQueue, db_url: str
) -> None:
    ids = [queue.submit("p.py").id for _ in range(24)]
    held = [_claim(queue, "dead", lease_s=1.0) for _ in ids]
    assert sorted(j.id for j in held) == ids
    time.sleep(1.1)  # every lease of the dead worker has run out
    barrier = threading.Barrier(4)
    got: list[list[tuple[int, int]]] = [[] for _ in range(4)]
    threads = [
        threading.Thread(target=_reclaimer, args=(db_url, f"r{i}", got[i], barrier))
        for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(pair for claims in got for pair in claims) == [(i, 2) for i in ids]
    for i, claims in enumerate(got):
        assert all(queue.get(job_id).lease_owner == f"r{i}" for job_id, _ in claims)
