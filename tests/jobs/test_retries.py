"""Retries count attempts to the limit; real workers stop gracefully and never run a job twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelfleet.config import Settings
from modelfleet.jobs import FINISHED, JobQueue, JobState, Worker
from tests.conftest import make_settings
from tests.servers import process_gone, wait_until

SLOW = Path(__file__).parent / "pipelines" / "slow.py"


def _wait(condition: Callable[[], bool], timeout: float = 60) -> None:
    wait_until(condition, timeout)


@pytest.fixture
def queue(db_url: str) -> Iterator[JobQueue]:
    q = JobQueue(db_url)
    yield q
    q.close()


def test_each_lost_lease_costs_one_attempt_until_the_job_gives_up(queue: JobQueue) -> None:
    job = queue.submit("p.py", max_attempts=3)
    seen = []
    for n in range(1, 4):
        claimed = queue.claim(f"w{n}", gpus=0, cpus=1, lease_s=0.15)
        assert claimed is not None and claimed.id == job.id
        seen.append((claimed.attempts, claimed.lease_owner, claimed.max_attempts))
        queue.append_log(job.id, claimed.attempts, f"try {n}\n")
        time.sleep(0.2)  # the worker vanished without a word
    assert seen == [(1, "w1", 3), (2, "w2", 3), (3, "w3", 3)]
    assert queue.claim("w4", gpus=0, cpus=1, lease_s=60) is None
    failed = queue.get(job.id)
    assert (failed.state, failed.attempts, failed.lease_owner) == (JobState.FAILED, 3, None)
    assert failed.error == "gave up after 3 attempts (workers lost)"
    assert failed.finished_at is not None and failed.started_at is not None
    assert not queue.finish(job.id, "w3", 3, JobState.SUCCEEDED)  # the last owner is fenced too
    assert [(a, t) for _, a, t in queue.logs(job.id)] == [
        (1, "try 1\n"),
        (2, "try 2\n"),
        (3, "try 3\n"),
    ]
    assert queue.get(job.id).state is JobState.FAILED


def test_a_retry_reports_to_the_new_attempt_only(queue: JobQueue) -> None:
    job = queue.submit("p.py", max_attempts=2)
    queue.claim("w1", gpus=0, cpus=1, lease_s=0.1)
    time.sleep(0.15)
    queue.claim("w2", gpus=0, cpus=1, lease_s=60)
    assert queue.heartbeat(job.id, "w2", 1, lease_s=60) is None  # right worker, old attempt
    assert not queue.finish(job.id, "w2", 1, JobState.FAILED, error="stale")
    assert queue.heartbeat(job.id, "w2", 2, lease_s=60) is False
    assert queue.finish(job.id, "w2", 2, JobState.FAILED, error="the step raised")
    done = queue.get(job.id)
    assert (done.state, done.error, done.attempts) == (JobState.FAILED, "the step raised", 2)


def _worker_process(settings: Settings, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MODELFLEET_HOME": str(settings.home)}
    return subprocess.Popen(
        [sys.executable, "-m", "modelfleet", "worker", *extra],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_sigterm_stops_the_worker_and_its_job_which_another_worker_then_finishes(
    settings: Settings, tmp_path: Path
) -> None:
    settings.home.mkdir(parents=True)
    queue = JobQueue(settings.db_url)
    marker = tmp_path / "attempts.txt"
    job = queue.submit(str(SLOW), {"marker": str(marker), "seconds": 120})
    worker = _worker_process(settings, "--name", "leaving", "--lease", "1")
    try:
        _wait(lambda: marker.exists() and marker.read_text().strip() != "")
        child = int(marker.read_text().split()[0])
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0
    assert out.decode().strip().endswith("worker leaving: 0 job(s) finished")
    _wait(lambda: process_gone(child), timeout=10)  # its job did not outlive it
    left = queue.get(job.id)  # handed back: queued again, the interrupted try not charged
    assert (left.state, left.attempts, left.result) == (JobState.QUEUED, 0, None)
    assert Worker(queue, settings, name="next", lease_s=10, poll_s=0.05).run(once=True) == 1
    done = queue.get(job.id)
    assert (done.state, done.attempts) == (JobState.SUCCEEDED, 1), done.error
    assert done.result is not None and done.result["steps"][0]["status"] == "ran"
    assert len(marker.read_text().split()) == 2
    queue.close()


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_two_workers_share_a_queue_and_run_every_job_once(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    extra = {} if dialect == "sqlite" else {"db_url": request.getfixturevalue("postgres_url")}
    settings = make_settings(tmp_path / "home", **extra)
    settings.home.mkdir(parents=True)
    queue = JobQueue(settings.db_url)
    markers = [tmp_path / f"job{i}.txt" for i in range(4)]
    ids = [queue.submit(str(SLOW), {"marker": str(m), "seconds": 0.3}).id for m in markers]
    workers = [
        Worker(JobQueue(settings.db_url), settings, name=f"w{i}", concurrency=2, poll_s=0.05)
        for i in range(2)
    ]
    finished = [0, 0]
    stop = threading.Event()

    def work(i: int) -> None:
        finished[i] = workers[i].run(stop)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        _wait(lambda: all(queue.get(i).state in FINISHED for i in ids), timeout=180)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert sum(finished) == len(ids)
    for job_id, marker in zip(ids, markers, strict=True):
        job = queue.get(job_id)
        assert (job.state, job.attempts) == (JobState.SUCCEEDED, 1), job.error
        assert len(marker.read_text().split()) == 1  # one process ever ran it
        assert job.log_key is not None
    for w in workers:
        w.queue.close()
    queue.close()
