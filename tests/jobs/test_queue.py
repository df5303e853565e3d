"""The job queue on real SQLite and PostgreSQL: order, resources, leases, fencing, cancel."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import pytest

from modelfleet.errors import JobError
from modelfleet.jobs import JobQueue, JobState


@pytest.fixture
def queue(db_url: str) -> JobQueue:
    q = JobQueue(db_url)
    yield q
    q.close()


def test_higher_priority_first_then_oldest(queue: JobQueue) -> None:
    low = queue.submit("p.py", priority=0)
    high_old = queue.submit("p.py", priority=5)
    high_new = queue.submit("p.py", priority=5)
    order = [queue.claim("w", gpus=0, cpus=4, lease_s=60) for _ in range(3)]
    assert [j.id for j in order if j] == [high_old.id, high_new.id, low.id]
    assert queue.claim("w", gpus=0, cpus=4, lease_s=60) is None


def test_gpu_jobs_wait_for_a_gpu_worker(queue: JobQueue) -> None:
    gpu_job = queue.submit("p.py", gpus=1)
    queue.register_worker("cpu-only", gpus=0, cpus=2)
    assert queue.claim("cpu-only", gpus=0, cpus=2, lease_s=60) is None
    assert "worker with 1 GPU(s): none of the 1 live workers has one" in queue.waiting_reason(
        queue.get(gpu_job.id)
    )
    queue.register_worker("gpu-box", gpus=2, cpus=8)
    claimed = queue.claim("gpu-box", gpus=2, cpus=8, lease_s=60)
    assert claimed is not None and claimed.id == gpu_job.id


def test_expired_lease_is_retried_and_the_old_owner_is_fenced_off(queue: JobQueue) -> None:
    job = queue.submit("p.py", max_attempts=2)
    first = queue.claim("w1", gpus=0, cpus=1, lease_s=0.2)
    assert first is not None and first.attempts == 1
    assert queue.claim("w2", gpus=0, cpus=1, lease_s=60) is None  # lease still held
    time.sleep(0.3)  # the lease runs out (w1 stopped heartbeating)
    second = queue.claim("w2", gpus=0, cpus=1, lease_s=60)
    assert second is not None and (second.id, second.attempts) == (job.id, 2)
    assert queue.heartbeat(job.id, "w1", 1, lease_s=60) is None  # w1 lost it
    assert not queue.finish(job.id, "w1", 1, JobState.SUCCEEDED, result={"stale": True})
    assert queue.finish(job.id, "w2", 2, JobState.SUCCEEDED, result={"ok": True})
    done = queue.get(job.id)
    assert (done.state, done.result) == (JobState.SUCCEEDED, {"ok": True})


def test_jobs_give_up_after_max_attempts(queue: JobQueue) -> None:
    job = queue.submit("p.py", max_attempts=1)
    assert queue.claim("w1", gpus=0, cpus=1, lease_s=0.1) is not None
    time.sleep(0.2)
    assert queue.claim("w2", gpus=0, cpus=1, lease_s=60) is None
    failed = queue.get(job.id)
    assert failed.state is JobState.FAILED
    assert "gave up after 1 attempts" in (failed.error or "")


def test_cancel_and_bad_requests(queue: JobQueue) -> None:
    queued = queue.submit("p.py")
    assert queue.cancel(queued.id).state is JobState.CANCELLED
    with pytest.raises(JobError, match="already cancelled"):
        queue.cancel(queued.id)
    running = queue.submit("p.py")
    queue.claim("w", gpus=0, cpus=1, lease_s=60)
    assert queue.cancel(running.id).cancel_requested
    assert queue.heartbeat(running.id, "w", 1, lease_s=60) is True
    with pytest.raises(JobError, match="job 999 does not exist"):
        queue.get(999)
    with pytest.raises(JobError, match="invalid resources"):
        queue.submit("p.py", gpus=-1)


def _claimer(url: str, name: str, out: Any, barrier: Any) -> None:
    q = JobQueue(url)
    barrier.wait()
    got = []
    while (job := q.claim(name, gpus=0, cpus=1, lease_s=600)) is not None:
        got.append(job.id)
    out.put(got)


def test_racing_workers_never_claim_the_same_job(queue: JobQueue, db_url: str) -> None:
    ids = [queue.submit("p.py").id for _ in range(30)]
    ctx = mp.get_context("spawn")
    out, barrier = ctx.Queue(), ctx.Barrier(3)
    procs = [ctx.Process(target=_claimer, args=(db_url, f"w{i}", out, barrier)) for i in range(3)]
    for p in procs:
        p.start()
    claimed = [i for _ in procs for i in out.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
    assert sorted(claimed) == ids


def test_logs_are_kept_in_order(queue: JobQueue, tmp_path: Path) -> None:
    job = queue.submit("p.py")
    queue.append_log(job.id, 1, "one\n")
    queue.append_log(job.id, 1, "two\n")
    chunks = queue.logs(job.id)
    assert [t for _, _, t in chunks] == ["one\n", "two\n"]
    assert queue.logs(job.id, after=chunks[0][0])[0][2] == "two\n"
