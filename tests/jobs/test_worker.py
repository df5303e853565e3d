"""Real worker processes: jobs run, a killed worker's job is retried, cancel stops a job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from modelfleet.cli import main
from modelfleet.config import Settings
from modelfleet.jobs import JobQueue, JobState
from tests.servers import wait_until

SLOW = Path(__file__).parent / "pipelines" / "slow.py"
CHURN = Path(__file__).resolve().parents[2] / "examples" / "churn" / "pipeline.py"


def _wait(condition: Callable[[], bool], timeout: float = 60) -> None:
    wait_until(condition, timeout)


def _worker(settings: Settings, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MODELFLEET_HOME": str(settings.home)}
    with (settings.home / f"worker-{time.monotonic_ns()}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "modelfleet", "worker", *extra],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); its state says it is gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture
def queue(settings: Settings) -> JobQueue:
    settings.home.mkdir(parents=True, exist_ok=True)
    q = JobQueue(settings.db_url)
    yield q
    q.close()


def test_a_worker_runs_the_churn_pipeline_as_a_job(
    queue: JobQueue,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELFLEET_HOME", str(settings.home))
    assert (
        main(["jobs", "submit", str(CHURN), "--param", "rows=1500", "--param", "n_estimators=40"])
        == 0
    )
    assert main(["worker", "--once", "--lease", "10"]) == 0
    job = queue.list()[0]
    assert job.state is JobState.SUCCEEDED, job.error
    assert job.result is not None and job.result["version"] == "churn:1"
    assert job.log_key is not None
    capsys.readouterr()
    assert main(["jobs", "logs", str(job.id)]) == 0
    logs = capsys.readouterr().out
    assert "registered churn:1" in logs
    assert "gate: promoted churn:1 to dev" in logs
    assert main(["jobs", "show", str(job.id)]) == 0
    assert "succeeded" in capsys.readouterr().out


def test_a_killed_workers_job_is_retried_to_completion(
    queue: JobQueue,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marker = tmp_path / "attempts.txt"
    job = queue.submit(str(SLOW), {"marker": str(marker), "seconds": 60}, max_attempts=3)
    first = _worker(settings, "--lease", "2", "--name", "doomed")
    try:
        _wait(lambda: marker.exists() and marker.read_text().strip() != "")
        child_pid = int(marker.read_text().split()[0])
        assert queue.get(job.id).state is JobState.RUNNING
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        _wait(lambda: not _alive(child_pid), timeout=10)  # the job died with its worker
    finally:
        if first.poll() is None:
            first.kill()
    second = _worker(settings, "--lease", "2", "--name", "rescuer")
    try:  # it takes the job once the dead worker's lease runs out
        _wait(lambda: queue.get(job.id).state is not JobState.RUNNING, timeout=120)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    done = queue.get(job.id)
    assert done.state is JobState.SUCCEEDED, done.error
    assert done.attempts == 2
    assert done.result is not None
    assert done.result["steps"][0]["status"] == "ran"
    pids = marker.read_text().split()
    assert len(pids) == 2 and pids[0] != pids[1]  # never two attempts at once, none lost
    monkeypatch.setenv("MODELFLEET_HOME", str(settings.home))
    capsys.readouterr()
    assert main(["jobs", "list"]) == 0
    listing = capsys.readouterr().out
    assert "succeeded" in listing
    print(listing)


def test_cancelling_a_running_job_stops_it(
    queue: JobQueue, settings: Settings, tmp_path: Path
) -> None:
    marker = tmp_path / "cancel.txt"
    job = queue.submit(str(SLOW), {"marker": str(marker), "seconds": 120})
    worker = _worker(settings, "--lease", "1.5")
    try:
        _wait(lambda: marker.exists() and marker.read_text().strip() != "")
        child_pid = int(marker.read_text().split()[0])
        queue.cancel(job.id)
        _wait(lambda: queue.get(job.id).state is JobState.CANCELLED, timeout=30)
        assert not _alive(child_pid)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)


def test_a_failing_job_is_failed_with_its_error(
    queue: JobQueue, settings: Settings, tmp_path: Path
) -> None:
    job = queue.submit(str(SLOW), {"marker": str(tmp_path / "f.txt"), "fail": True})
    worker = _worker(settings, "--once", "--lease", "5")
    assert worker.wait(timeout=120) == 0
    failed = queue.get(job.id)
    assert failed.state is JobState.FAILED
    assert "this job fails on purpose" in (failed.error or "")
    assert failed.attempts == 1  # failures of the job itself are final; only lost workers retry


def test_follow_streams_logs_until_the_job_ends(
    queue: JobQueue, settings: Settings, tmp_path: Path
) -> None:
    job = queue.submit(str(SLOW), {"marker": str(tmp_path / "l.txt"), "seconds": 1})
    env = {**os.environ, "MODELFLEET_HOME": str(settings.home)}
    follower = subprocess.Popen(
        [sys.executable, "-m", "modelfleet", "jobs", "logs", str(job.id), "--follow"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    worker = _worker(settings, "--once", "--lease", "5")
    out, _ = follower.communicate(timeout=120)
    worker.wait(timeout=60)
    assert "attempt running in pid" in out
    assert "work done" in out
