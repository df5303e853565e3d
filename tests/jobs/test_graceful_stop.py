"""A worker told to stop hands its jobs back at once, uncharged; ``--once`` drains the queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from modelfleet.config import Settings
from modelfleet.jobs import JobQueue, JobState, Worker
from tests.servers import process_gone, wait_until

SLOW = Path(__file__).parent / "pipelines" / "slow.py"


def _wait(condition: Callable[[], bool], timeout: float = 60) -> None:
    wait_until(condition, timeout)


def test_sigterm_hands_the_job_back_without_charging_an_attempt(
    settings: Settings, tmp_path: Path
) -> None:
    settings.home.mkdir(parents=True)
    queue = JobQueue(settings.db_url)
    marker = tmp_path / "attempts.txt"
    # One attempt allowed and a long lease: before, the stop used up the only attempt and
    # the job sat on the stopped worker's lease, then failed "gave up after 1 attempts".
    job = queue.submit(str(SLOW), {"marker": str(marker), "seconds": 120}, max_attempts=1)
    env = {**os.environ, "MODELFLEET_HOME": str(settings.home)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "modelfleet", "worker", "--name", "leaving", "--lease", "600"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
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
    back = queue.get(job.id)
    assert (back.state, back.attempts, back.lease_owner) == (JobState.QUEUED, 0, None)
    logs = "".join(text for _, _, text in queue.logs(job.id))
    assert "worker leaving stopped; the job goes back to the queue" in logs
    # Another worker takes it at once (no lease to wait out) and it counts as the first try.
    assert Worker(queue, settings, name="next", lease_s=10, poll_s=0.05).run(once=True) == 1
    done = queue.get(job.id)
    assert (done.state, done.attempts) == (JobState.SUCCEEDED, 1), done.error
    assert len(marker.read_text().split()) == 2
    queue.close()


def test_only_the_lease_holder_can_hand_a_job_back(db_url: str) -> None:
    queue = JobQueue(db_url)
    job = queue.submit("p.py", max_attempts=1)
    claimed = queue.claim("w1", gpus=0, cpus=1, lease_s=60)
    assert claimed is not None
    assert not queue.release(job.id, "w2", claimed.attempts)  # not its lease
    assert not queue.release(job.id, "w1", claimed.attempts + 1)  # not its attempt
    assert queue.get(job.id).state is JobState.RUNNING
    assert queue.release(job.id, "w1", claimed.attempts)
    assert not queue.finish(job.id, "w1", claimed.attempts, JobState.SUCCEEDED)  # fenced
    again = queue.claim("w2", gpus=0, cpus=1, lease_s=60)
    assert again is not None and (again.attempts, again.lease_owner) == (1, "w2")
    queue.cancel(job.id)
    assert queue.release(job.id, "w2", 1)  # a cancel asked for: it ends, not requeued
    ended = queue.get(job.id)
    assert (ended.state, ended.attempts) == (JobState.CANCELLED, 1)
    queue.close()


def test_once_runs_every_queued_job_before_it_stops(settings: Settings, tmp_path: Path) -> None:
    settings.home.mkdir(parents=True)
    queue = JobQueue(settings.db_url)
    markers = [tmp_path / f"m{i}" for i in range(3)]
    ids = [queue.submit(str(SLOW), {"marker": str(m), "seconds": 0.1}).id for m in markers]
    done = Worker(queue, settings, name="w", concurrency=1, poll_s=0.05).run(once=True)
    assert done == 3
    assert [queue.get(i).state for i in ids] == [JobState.SUCCEEDED] * 3
    queue.close()
