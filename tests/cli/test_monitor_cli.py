"""``modelfleet feedback`` and ``modelfleet monitor watch`` against a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelfleet.client import Client
from modelfleet.config import Settings
from modelfleet.jobs.queue import JobQueue
from modelfleet.pipeline import load_pipeline, run_pipeline
from modelfleet.serving.settings import ModelConfig, ServeConfig, WatchConfig
from tests.cli.runner import run
from tests.conftest import make_settings
from tests.monitor.test_retrain import PIPELINE, write_data
from tests.servers import free_port
from tests.serving.conftest import RunningServer, run_server


@pytest.fixture
def home_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    home = tmp_path / "home"
    monkeypatch.setenv("MODELFLEET_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")
    return make_settings(home)


@pytest.fixture
def server(home_settings: Settings) -> Iterator[RunningServer]:
    data = home_settings.home / "iris.csv"
    home_settings.home.mkdir(parents=True, exist_ok=True)
    write_data(data)
    params = {"data": str(data)}
    run_pipeline(load_pipeline(PIPELINE), params, settings=home_settings, say=lambda _: None)
    model = ModelConfig(ref="iris@dev", watch=WatchConfig(min_labels=3))
    with run_server(ServeConfig(models=(model,)), home_settings) as running:
        yield running


def _answer(url: str, rows: np.ndarray[Any, Any]) -> list[tuple[str, int]]:
    """Predict each row through the SDK; returns (request id, predicted class)."""
    answered = []
    with Client(url) as client:
        for row in rows:
            label = client.predict("iris", row[None, :].astype(np.float32))["label"][0]
            assert client.last_request_id
            answered.append((client.last_request_id, int(label)))
    return answered


def test_feedback_command_reports_live_accuracy_and_clear_errors(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from sklearn.datasets import load_iris

    X, _ = load_iris(return_X_y=True)
    answered = _answer(server.url, X[::30])  # five rows
    pairs = [f"{rid}={label}" for rid, label in answered[:3]]
    code, out, err = run(capsys, "feedback", "iris", *pairs, "--url", server.url)
    assert code == 0, err
    assert "3 labelled requests (3/3 rows right)" in out and "live accuracy 1.0000" in out

    sheet = tmp_path / "labels.csv"
    wrong = [(rid, (label + 1) % 3) for rid, label in answered[3:]]
    sheet.write_text("request_id,label\n" + "".join(f"{r},{v}\n" for r, v in wrong))
    code, out, _ = run(capsys, "feedback", "iris", "--file", str(sheet), "--url", server.url)
    assert code == 0
    assert "(0/2 rows right)" in out and "live accuracy 0.6000" in out

    code, _, err = run(capsys, "feedback", "iris", "nope=1", "--url", server.url)
    assert code == 1 and "no recorded prediction for request id 'nope'" in err
    code, _, err = run(capsys, "feedback", "iris", f"{answered[0][0]}=setosa", "--url", server.url)
    assert code == 1 and "integer labels" in err
    code, _, err = run(capsys, "feedback", "iris", "--url", server.url)
    assert code == 1 and "no labels given" in err
    code, _, err = run(
        capsys, "feedback", "iris", "x=1", "--url", f"http://127.0.0.1:{free_port()}"
    )
    assert code == 1 and "cannot reach" in err
    summary = server.http.get("/monitor/summary").json()["models"][0]
    assert summary["accuracy"]["labelled_requests"] == 5  # the failed calls changed nothing


def test_monitor_watch_dry_run_then_auto_retrain(
    server: RunningServer, home_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from sklearn.datasets import load_iris

    X, _ = load_iris(return_X_y=True)
    answered = _answer(server.url, X[::15])
    with Client(server.url) as client:
        client.feedback("iris", [r for r, _ in answered], [(v + 1) % 3 for _, v in answered])
    watch = ["monitor", "watch", server.url, "--for", "0", "--min-labels", "5", "--rounds", "1"]
    code, out, err = run(capsys, *watch)
    assert code == 0, err
    assert "dry run" in out and "live accuracy 0.000" in out
    assert (
        f"would submit (dry run, pass --auto-retrain): modelfleet jobs submit {PIPELINE.resolve()}"
        in out
    )

    code, out, err = run(capsys, *watch, "--auto-retrain", "--json")
    assert code == 0, err
    decision = json.loads(out)
    assert decision["submitted"] and decision["pipeline"] == str(PIPELINE.resolve())
    queue = JobQueue(home_settings.db_url)
    try:
        (job,) = queue.list()
    finally:
        queue.close()
    assert job.id == decision["job"] and job.params == decision["params"]

    code, _, err = run(
        capsys, "monitor", "watch", f"http://127.0.0.1:{free_port()}", "--rounds", "1"
    )
    assert code == 1 and "cannot reach" in err
