"""Real workers share their GPUs: GPU jobs never overlap on too few, each sees only its own
devices, jobs without GPUs run alongside, and GPUs come back however a job ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelfleet.config import Settings
from modelfleet.jobs import FINISHED, JobQueue, JobState, Worker
from tests.servers import wait_until

HOLD = Path(__file__).parent / "pipelines" / "gpu_hold.py"


def _wait(condition: Callable[[], bool], timeout: float = 60) -> None:
    wait_until(condition, timeout)


def _notes(record: Path) -> dict[str, dict[str, Any]]:
    """What a job of the ``gpu_hold`` pipeline noted, by event (``start``, ``end``)."""
    if not record.exists():
        return {}
    lines = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
    return {line["event"]: line for line in lines}


def _started(record: Path) -> bool:
    return "start" in _notes(record)


@pytest.fixture
def queue(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[JobQueue]:
    # Workers in this process find their GPUs from the environment: none leaks in.
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    settings.home.mkdir(parents=True)
    q = JobQueue(settings.db_url)
    yield q
    q.close()


def _hold(queue: JobQueue, folder: Path, name: str, *, gpus: int, **params: Any) -> Any:
    """Queue a ``gpu_hold`` job noting into ``folder/name.jsonl``."""
    record = str(folder / f"{name}.jsonl")
    return queue.submit(str(HOLD), {"record": record, **params}, gpus=gpus)


def _worker(settings: Settings, *args: str, **env: str) -> subprocess.Popen[bytes]:
    """``modelfleet worker`` in a process of its own, finding its GPUs from ``env`` only."""
    full = {**os.environ, "MODELFLEET_HOME": str(settings.home)}
    full.pop("CUDA_VISIBLE_DEVICES", None)
    full.update(env)
    with (settings.home / f"worker-{time.monotonic_ns()}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "modelfleet", "worker", "--lease", "5", *args],
            env=full,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _stop(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_one_gpu_runs_gpu_jobs_one_after_the_other_and_others_alongside(
    queue: JobQueue, settings: Settings, tmp_path: Path
) -> None:
    first = _hold(queue, tmp_path, "first", gpus=1, gate=str(tmp_path / "first.go"))
    second = _hold(queue, tmp_path, "second", gpus=1, gate=str(tmp_path / "second.go"))
    worker = _worker(settings, "--concurrency", "2", MODELFLEET_GPUS="1")
    try:
        _wait(lambda: _started(tmp_path / "first.jsonl"))
        # Queued behind the waiting GPU job, but it needs no GPU: it takes the free slot.
        plain = _hold(queue, tmp_path, "plain", gpus=0, gate=str(tmp_path / "plain.go"))
        _wait(lambda: _started(tmp_path / "plain.jsonl"))
        # The worker has claimed since the first job took the GPU; the second still waits.
        assert queue.get(second.id).state is JobState.QUEUED
        (tmp_path / "first.go").touch()
        _wait(lambda: _started(tmp_path / "second.jsonl"))
        (tmp_path / "second.go").touch()
        (tmp_path / "plain.go").touch()
        ids = (first.id, second.id, plain.id)
        _wait(lambda: all(queue.get(i).state in FINISHED for i in ids))
    finally:
        _stop(worker)
    for job_id in ids:
        job = queue.get(job_id)
        assert job.state is JobState.SUCCEEDED, job.error
    one, two, other = (_notes(tmp_path / f"{n}.jsonl") for n in ("first", "second", "plain"))
    assert one["end"]["at"] < two["start"]["at"]  # never both on the one GPU
    assert other["start"]["at"] < one["end"]["at"]  # the job without GPUs ran alongside
    assert (one["start"]["gpus"], two["start"]["gpus"], other["start"]["gpus"]) == ("0", "0", "")


@pytest.mark.parametrize(
    ("args", "env", "devices"),
    [
        (["--gpus", "2"], {}, {"0", "1"}),
        ([], {"CUDA_VISIBLE_DEVICES": "7,3"}, {"7", "3"}),
        (["--gpus", "2"], {"CUDA_VISIBLE_DEVICES": "5,2,6"}, {"5", "2"}),
    ],
    ids=["numbered", "found-in-cuda-visible-devices", "first-two-listed"],
)
def test_two_gpus_run_two_gpu_jobs_at_once_each_on_its_own(
    queue: JobQueue,
    settings: Settings,
    tmp_path: Path,
    args: list[str],
    env: dict[str, str],
    devices: set[str],
) -> None:
    gate = tmp_path / "go"
    jobs = [_hold(queue, tmp_path, name, gpus=1, gate=str(gate)) for name in ("a", "b")]
    records = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    worker = _worker(settings, "--concurrency", "2", *args, **env)
    try:
        # Neither ends before the gate opens: both starting means they run at once.
        _wait(lambda: all(_started(r) for r in records))
        gate.touch()
        _wait(lambda: all(queue.get(j.id).state in FINISHED for j in jobs))
    finally:
        _stop(worker)
    assert [queue.get(j.id).state for j in jobs] == [JobState.SUCCEEDED] * 2
    notes = [_notes(r) for r in records]
    assert {n["start"]["gpus"] for n in notes} == devices
    assert max(n["start"]["at"] for n in notes) < min(n["end"]["at"] for n in notes)


def test_a_failing_gpu_job_gives_its_gpu_to_the_next(
    queue: JobQueue, settings: Settings, tmp_path: Path
) -> None:
    failing = _hold(queue, tmp_path, "failing", gpus=1, fail=True)
    waiting = _hold(queue, tmp_path, "waiting", gpus=1)
    worker = Worker(queue, settings, name="one-gpu", gpus=1, concurrency=2, poll_s=0.05)
    # ``once`` stops as soon as nothing it can start is left: a GPU kept by the failed job
    # would leave the second job queued.
    assert worker.run(once=True) == 2
    failed, done = queue.get(failing.id), queue.get(waiting.id)
    assert failed.state is JobState.FAILED
    assert "this GPU job fails on purpose" in (failed.error or "")
    assert done.state is JobState.SUCCEEDED, done.error
    before, after = _notes(tmp_path / "failing.jsonl"), _notes(tmp_path / "waiting.jsonl")
    assert before["end"]["at"] < after["start"]["at"]
    assert (before["start"]["gpus"], after["start"]["gpus"]) == ("0", "0")


@pytest.mark.parametrize("end", ["cancel", "crash"])
def test_a_cancelled_or_crashed_gpu_job_gives_its_gpu_back(
    queue: JobQueue, settings: Settings, tmp_path: Path, end: str
) -> None:
    stuck = _hold(queue, tmp_path, "stuck", gpus=1, gate=str(tmp_path / "never"))
    waiting = _hold(queue, tmp_path, "waiting", gpus=1)
    worker = Worker(
        queue, settings, name="one-gpu", gpus=1, concurrency=2, lease_s=1.5, poll_s=0.05
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        _wait(lambda: _started(tmp_path / "stuck.jsonl"))
        assert queue.get(waiting.id).state is JobState.QUEUED
        if end == "cancel":
            queue.cancel(stuck.id)
        else:
            os.kill(_notes(tmp_path / "stuck.jsonl")["start"]["pid"], signal.SIGKILL)
        _wait(lambda: queue.get(waiting.id).state in FINISHED)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    ended = queue.get(stuck.id)
    assert ended.state is (JobState.CANCELLED if end == "cancel" else JobState.FAILED)
    assert "end" not in _notes(tmp_path / "stuck.jsonl")
    done = queue.get(waiting.id)
    assert done.state is JobState.SUCCEEDED, done.error
    assert _notes(tmp_path / "waiting.jsonl")["start"]["gpus"] == "0"


def test_a_job_asking_more_gpus_than_the_worker_has_fails_at_once(
    queue: JobQueue, settings: Settings, tmp_path: Path
) -> None:
    greedy = _hold(queue, tmp_path, "greedy", gpus=3)
    plain = _hold(queue, tmp_path, "plain", gpus=0)
    worker = Worker(queue, settings, name="two-gpus", gpus=2, poll_s=0.05)
    assert worker.run(once=True) == 1  # the job without GPUs; the greedy one never started
    failed = queue.get(greedy.id)
    assert (failed.state, failed.attempts) == (JobState.FAILED, 0)
    assert failed.error == (
        "the job asks for 3 GPU(s) but the biggest live worker offers 2, so it would wait "
        "forever; submit it with --backend kubernetes, or start a worker on a machine that has "
        "them with 'modelfleet worker --gpus 3'"
    )
    assert not (tmp_path / "greedy.jsonl").exists()
    assert queue.get(plain.id).state is JobState.SUCCEEDED
