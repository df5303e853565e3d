"""The chain follows a retraining job through: job → gate → promotion to the release stage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modelfleet.config import Settings
from modelfleet.errors import ModelfleetError
from modelfleet.jobs import JobQueue
from modelfleet.monitor import RetrainChain
from modelfleet.pipeline import load_pipeline, run_pipeline
from modelfleet.refs import Stage
from modelfleet.registry import Registry
from tests.monitor.test_retrain import PIPELINE, write_data


def _work(settings: Settings) -> None:
    """A worker runs what is queued, then stops."""
    env = {**os.environ, "MODELFLEET_HOME": str(settings.home)}
    done = subprocess.run(
        [sys.executable, "-m", "modelfleet", "worker", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def served_v1(settings: Settings, registry: Registry) -> Path:
    data = settings.home / "iris.csv"
    write_data(data)
    params = {"data": str(data), "C": 0.5}
    run_pipeline(load_pipeline(PIPELINE), params, settings=settings, say=lambda _: None)
    registry.promote("iris:1", Stage.PROD)
    return data


def test_a_retrained_version_that_passes_its_gate_is_promoted_to_the_release_stage(
    settings: Settings, registry: Registry, served_v1: Path
) -> None:
    chain = RetrainChain(settings, release_to=Stage.PROD)
    write_data(served_v1, shift_labels=1)  # the world changed; the labels say so
    job = chain.submit("iris", str(PIPELINE), {"data": str(served_v1), "C": 0.5}, "accuracy fell")
    assert chain.poll() == []  # queued, not run yet: nothing to say
    _work(settings)
    (event,) = chain.poll()
    assert (event.job_id, event.kind, event.ref, event.stage) == (
        job,
        "promoted",
        "iris:2",
        Stage.PROD,
    )
    assert "passed its gate and now holds iris@prod" in event.message
    assert registry.get("iris@prod").version == 2
    assert chain.poll() == []  # followed once
    history = registry.history("iris")
    assert any(f"job {job}" in e.reason for e in history)


def test_a_version_failing_its_gate_or_a_failed_job_promotes_nothing(
    settings: Settings, registry: Registry, served_v1: Path
) -> None:
    chain = RetrainChain(settings, release_to=Stage.PROD)
    noise = settings.home / "noise.csv"
    rng = np.random.default_rng(0)
    rows = np.column_stack([rng.normal(size=(150, 4)), rng.integers(0, 3, 150)])
    np.savetxt(noise, rows, delimiter=",", fmt="%g")  # labels nobody can learn
    gated = chain.submit("iris", str(PIPELINE), {"data": str(noise)}, "drift")
    _work(settings)
    missing = chain.submit("iris", str(PIPELINE), {"data": str(settings.home / "gone.csv")}, "x")
    _work(settings)
    events = {e.job_id: e for e in chain.poll()}
    assert events[gated].kind == "not-promoted" and events[gated].ref == "iris:2"
    assert "accuracy" in events[gated].message
    assert events[missing].kind == "failed" and f"job {missing} failed" in events[missing].message
    assert registry.get("iris@prod").version == 1  # the served stage never moved


def test_kubernetes_submission_without_a_cluster_is_refused_and_queues_nothing(
    settings: Settings, registry: Registry, served_v1: Path, tmp_path: Path
) -> None:
    del registry
    chain = RetrainChain(settings, backend="kubernetes", kubeconfig=tmp_path / "absent")
    with pytest.raises(ModelfleetError, match="registry the pods can reach"):
        chain.submit("iris", str(PIPELINE), {"data": str(served_v1)}, "x")
    queue = JobQueue(settings.db_url)
    try:
        assert queue.list() == []
    finally:
        queue.close()
    with pytest.raises(ModelfleetError, match="unknown job backend"):
        RetrainChain(settings, backend="slurm")


def test_watch_refuses_a_release_without_auto_retrain(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelfleet.cli import main

    monkeypatch.setenv("MODELFLEET_HOME", str(settings.home))
    url = "http://127.0.0.1:9"
    assert main(["monitor", "watch", url, "--release", "prod", "--rounds", "1"]) == 1
    assert "--release needs --auto-retrain" in capsys.readouterr().err
    args = ["monitor", "watch", url, "--auto-retrain", "--backend", "slurm", "--rounds", "1"]
    assert main(args) == 1
    assert "unknown job backend 'slurm'" in capsys.readouterr().err
