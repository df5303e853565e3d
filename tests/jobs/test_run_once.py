"""A job's effect happens once: a retry reuses its registration, leases and submits are sound."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelfleet.cli import main
from modelfleet.config import Settings
from modelfleet.errors import JobError
from modelfleet.jobs import JobQueue, JobState, Worker
from modelfleet.registry import Registry
from tests.servers import wait_until

SLOW = Path(__file__).parent / "pipelines" / "slow.py"

# Trains a model whose bytes differ on every run (its data is seeded by the process id), so
# only the job key, not the model digest, can tell a retry from a new run. The first attempt
# then lingers after registering and promoting (at exit, after the run report is written):
# the moment a killed worker has not yet recorded the outcome.
PIPELINE = """
import atexit, os, time
from pathlib import Path
import numpy as np
from modelfleet.pipeline import Pipeline, Registration, step

MARKER = Path(__file__).with_name("attempts.txt")


@step(outputs=("X", "y"), cache=False)
def data() -> tuple:
    rng = np.random.default_rng(os.getpid())
    X = rng.normal(size=(60, 3)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64)


@step(cache=False)
def model(X, y):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit(X, y)


@step(cache=False)
def scores(model, X, y) -> dict:
    return {"accuracy": float(model.score(X, y))}


def _linger() -> None:
    MARKER.write_text(MARKER.read_text() + "registered\\n")
    time.sleep(120)


if not MARKER.exists():
    MARKER.write_text("")
    atexit.register(_linger)
else:
    MARKER.write_text(MARKER.read_text() + "retry\\n")

pipeline = Pipeline(
    name="once",
    steps=[data, model, scores],
    register=Registration(name="once", model="model", metrics="scores", sample="X"),
    gate=["accuracy>=0.0"],
    promote_to="dev",
)
"""


def _wait(condition: Callable[[], bool], timeout: float = 120) -> None:
    wait_until(condition, timeout)


def test_a_retry_after_the_worker_was_killed_reuses_the_registered_version(
    settings: Settings, tmp_path: Path
) -> None:
    settings.home.mkdir(parents=True)
    source = tmp_path / "pipeline.py"
    source.write_text(PIPELINE)
    marker = tmp_path / "attempts.txt"
    queue = JobQueue(settings.db_url)
    job = queue.submit(str(source), max_attempts=2)
    env = {**os.environ, "MODELFLEET_HOME": str(settings.home)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "modelfleet", "worker", "--lease", "1"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: marker.exists() and "registered" in marker.read_text())
        worker.send_signal(signal.SIGKILL)  # registered and promoted, outcome not recorded
    finally:
        worker.kill()
        worker.wait()
    assert queue.get(job.id).state is JobState.RUNNING
    _wait(lambda: queue.get(job.id).lease_expires < datetime.now(UTC), timeout=30)
    assert Worker(queue, settings, name="next", lease_s=10, poll_s=0.05).run(once=True) == 1
    done = queue.get(job.id)
    assert (done.state, done.attempts) == (JobState.SUCCEEDED, 2), done.error
    assert marker.read_text().split() == ["registered", "retry"]  # the job did run twice
    assert done.result is not None and done.result["version"] == "once:1"
    with Registry.open(settings) as reg:
        assert [v.ref for v in reg.versions("once")] == ["once:1"]
        assert [(e.stage, e.version) for e in reg.history("once")] == [("dev", 1)]
        assert reg.get("once@dev").lineage.extra["job"] == job.id
    queue.close()


@pytest.mark.parametrize("lease", [0.0, -5.0, math.nan, math.inf])
def test_a_lease_of_no_time_is_refused_and_the_job_stays_queued(db_url: str, lease: float) -> None:
    queue = JobQueue(db_url)
    job = queue.submit("p.py")
    try:
        with pytest.raises(JobError, match="invalid lease"):
            queue.claim("w1", gpus=0, cpus=1, lease_s=lease)
        with pytest.raises(JobError, match="invalid lease"):
            queue.take(job.id, "pod/a", lease_s=lease)
        left = queue.get(job.id)
        assert (left.state, left.attempts, left.lease_owner) == (JobState.QUEUED, 0, None)
        first = queue.claim("w1", gpus=0, cpus=1, lease_s=60)
        assert first is not None and first.id == job.id
        assert queue.claim("w2", gpus=0, cpus=1, lease_s=60) is None  # w1 holds it
        with pytest.raises(JobError, match="invalid lease"):
            queue.heartbeat(job.id, "w1", 1, lease_s=lease)
    finally:
        queue.close()


@pytest.mark.parametrize("lease", ["0", "-5", "nan"])
def test_the_worker_command_refuses_a_lease_of_no_time(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    lease: str,
) -> None:
    settings.home.mkdir(parents=True)
    monkeypatch.setenv("MODELFLEET_HOME", str(settings.home))
    queue = JobQueue(settings.db_url)
    marker = settings.home / "ran.txt"
    queue.submit(str(SLOW), {"marker": str(marker), "seconds": 0.1})
    before = signal.getsignal(signal.SIGTERM)
    try:
        code = main(["worker", "--once", "--lease", lease])
    finally:
        signal.signal(signal.SIGTERM, before)
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: invalid lease") and len(err.strip().splitlines()) == 1
    assert [j.state for j in queue.list()] == [JobState.QUEUED]
    assert not marker.exists()
    queue.close()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "Kubernetes jobs need a registry the pods can reach"),
        (["--memory", "lots"], "memory request"),
    ],
)
def test_a_refused_kubernetes_submit_queues_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
    extra: list[str],
    message: str,
) -> None:
    monkeypatch.setenv("MODELFLEET_HOME", str(tmp_path / "home"))
    if extra:  # a registry the pods could reach, so the memory check is what refuses
        monkeypatch.setenv("MODELFLEET_DB_URL", request.getfixturevalue("postgres_url"))
    out = tmp_path / "k8s"
    args = ["jobs", "submit", str(SLOW), "--backend", "kubernetes", "--out", str(out), *extra]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert main(["jobs", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert not out.exists() or not any(out.iterdir())
