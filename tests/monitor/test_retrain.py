"""The loop closes: live accuracy falls on a real server, the trigger queues the training job."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelfleet.config import Settings
from modelfleet.jobs.queue import JobQueue
from modelfleet.monitor.retrain import RetrainPolicy, RetrainTrigger
from modelfleet.pipeline import load_pipeline, run_pipeline
from modelfleet.registry import Registry
from modelfleet.serving.settings import ModelConfig, ServeConfig, WatchConfig
from tests.serving.conftest import run_server

PIPELINE = Path(__file__).with_name("iris_pipeline.py")


def _rows(X: np.ndarray[Any, Any]) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input",
                "shape": list(X.shape),
                "datatype": "FP32",
                "data": X.ravel().tolist(),
            }
        ]
    }


def write_data(path: Path, shift_labels: int = 0) -> None:
    """Iris as the pipeline reads it; ``shift_labels`` relabels it (the world changed)."""
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    np.savetxt(path, np.column_stack([X, (y + shift_labels) % 3]), delimiter=",", fmt="%g")


@pytest.fixture
def data(settings: Settings) -> Path:
    path = settings.home / "iris.csv"
    write_data(path)
    return path


@pytest.fixture
def trained(settings: Settings, registry: Registry, data: Path) -> Registry:
    params = {"data": str(data), "C": 0.5}
    run_pipeline(load_pipeline(PIPELINE), params, settings=settings, say=lambda _: None)
    return registry


def _serve(settings: Settings) -> Any:
    watch = WatchConfig(min_labels=5, drift_min_rows=50, drift_interval_s=0.1)
    return run_server(ServeConfig(models=(ModelConfig(ref="iris@dev", watch=watch),)), settings)


def _jobs(settings: Settings) -> list[Any]:
    queue = JobQueue(settings.db_url)
    try:
        return queue.list()
    finally:
        queue.close()


@pytest.mark.slow
def test_falling_accuracy_fires_the_trigger_dry_run_then_real_job(
    trained: Registry, settings: Settings, data: Path
) -> None:
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    with _serve(settings) as server:
        ids = []
        for start in range(0, 30, 3):
            answer = server.http.post("/v2/models/iris/infer", json=_rows(X[start : start + 3]))
            ids.append(answer.json()["id"])
        policy = RetrainPolicy(min_accuracy=0.8, max_psi=None, min_labels=5, sustain_s=0)
        dry = RetrainTrigger(policy, settings)
        assert dry.observe(server.http.get("/monitor/summary").json()) == []  # no labels yet

        # The world changed: the true labels now disagree with the model.
        wrong = [[int((v + 1) % 3) for v in y[s : s + 3]] for s in range(0, 30, 3)]
        feedback = server.http.post(
            "/v2/models/iris/feedback", json={"request_ids": ids, "labels": wrong}
        ).json()
        assert feedback["live_accuracy"]["value"] < 0.8
        summary = server.http.get("/monitor/summary").json()

    (decision,) = dry.observe(summary)
    assert not decision.submitted and decision.job_id is None
    params = {"data": str(data), "C": 0.5}
    assert decision.pipeline == str(PIPELINE.resolve()) and decision.params == params
    assert "live accuracy" in decision.reason
    assert "would submit" in decision.describe()
    assert _jobs(settings) == []  # a dry run queues nothing

    real = RetrainTrigger(policy, settings, auto=True)
    (submitted,) = real.observe(summary)
    assert submitted.submitted
    (job,) = _jobs(settings)
    assert job.id == submitted.job_id and job.pipeline == str(PIPELINE.resolve())
    assert job.params == params and job.state == "queued"
    assert real.observe(summary) == []  # cooling down: not queued twice

    # The labelled data now says what the feedback said; a worker runs the queued job and
    # a new version is trained on it, registered and gated.
    write_data(data, shift_labels=1)
    env = {**os.environ, "MODELFLEET_HOME": str(settings.home)}
    result = subprocess.run(
        [sys.executable, "-m", "modelfleet", "worker", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert [v.version for v in trained.versions("iris")] == [1, 2]
    assert trained.get("iris@dev").version == 2  # passed the gate
    assert _jobs(settings)[0].state == "succeeded"


def test_trigger_waits_for_the_breach_to_last(trained: Registry, settings: Settings) -> None:
    from sklearn.datasets import load_iris

    X, _ = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    with _serve(settings) as server:
        shifted = X[:80].copy()
        shifted[:, 3] += 5.0  # petal width far outside anything seen in training
        server.http.post("/v2/models/iris/infer", json=_rows(shifted))
        for _ in range(100):
            summary = server.http.get("/monitor/summary").json()
            if summary["models"][0]["drift"]["max_psi"] is not None:
                break
            time.sleep(0.1)
        assert summary["models"][0]["drift"]["max_psi"] > 1.0

    now = [0.0]
    policy = RetrainPolicy(min_accuracy=None, max_psi=0.2, sustain_s=60)
    trigger = RetrainTrigger(policy, settings, clock=lambda: now[0])
    assert trigger.observe(summary) == []
    now[0] = 30.0
    assert trigger.observe(summary) == [] and trigger.pending() == {"iris": 30.0}
    now[0] = 61.0
    (decision,) = trigger.observe(summary)
    assert "drift" in decision.reason and "input[3]" in decision.reason
    calm = {"models": [{**summary["models"][0], "drift": {"max_psi": 0.01}}]}
    assert trigger.observe(calm) == [] and trigger.pending() == {}
