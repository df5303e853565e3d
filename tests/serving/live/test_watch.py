"""Request ids, feedback, live accuracy, cache gating, drift and the summary, on a real server."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelfleet as mf
from modelfleet.registry import Registry
from modelfleet.serving.settings import (
    CacheConfig,
    ModelConfig,
    MonitoringConfig,
    WatchConfig,
)
from tests.models import logistic_pipeline, sum_graph
from tests.serving.conftest import RunningServer

Served = Callable[..., RunningServer]


@pytest.fixture
def iris_data() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    _, X, y = logistic_pipeline()
    order = np.random.default_rng(0).permutation(len(X))
    return X[order], y[order]


@pytest.fixture
def watched(registry: Registry) -> Registry:
    """iris registered with its training data (so with a drift profile), and adder."""
    model, X, y = logistic_pipeline()
    mf.register(
        model,
        name="iris",
        sample_input=X,
        training_data=X,
        metrics={"accuracy": model.score(X, y)},
        registry=registry,
    )
    mf.register(sum_graph(), name="adder", registry=registry)
    return registry


def _row(x: np.ndarray[Any, Any]) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": x.tolist()}]}


def _predict(server: RunningServer, rows: np.ndarray[Any, Any]) -> list[str]:
    ids = []
    for x in rows:
        response = server.http.post("/v2/models/iris/infer", json=_row(x))
        assert response.status_code == 200, response.text
        ids.append(response.json()["id"])
    return ids


def _wait(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_every_prediction_carries_a_request_id(watched: Registry, served: Served) -> None:
    server = served(ModelConfig(ref="iris"))
    X = np.ones((1, 4), dtype=np.float32)
    first = server.http.post("/v2/models/iris/infer", json=_row(X[0]))
    second = server.http.post("/v2/models/iris/infer", json=_row(X[0]))
    assert first.json()["id"] == first.headers["x-request-id"]
    assert first.json()["id"] != second.json()["id"]  # generated, unique
    mine = server.http.post("/v2/models/iris/infer", json={**_row(X[0]), "id": "order-17"})
    assert mine.json()["id"] == "order-17" == mine.headers["x-request-id"]
    header = server.http.post(
        "/v2/models/iris/infer", json=_row(X[0]), headers={"X-Request-Id": "trace-9"}
    )
    assert header.json()["id"] == "trace-9"
    v1 = server.http.post("/v1/models/iris:predict", json={"instances": X.tolist()})
    assert v1.status_code == 200 and v1.headers["x-request-id"]
    too_long = server.http.post("/v2/models/iris/infer", json={**_row(X[0]), "id": "x" * 200})
    assert too_long.status_code == 400
    assert "more than 128" in too_long.json()["error"]


def test_feedback_joins_labels_to_predictions_and_rejects_bad_input(
    watched: Registry, served: Served, iris_data: Any
) -> None:
    X, y = iris_data
    server = served(ModelConfig(ref="iris"))
    ids = _predict(server, X[:40])
    truth = [int(v) for v in y[:40]]
    # Labels that disagree with the model on 10 of the 40 requests.
    labels = [(t + 1) % 3 if i < 10 else t for i, t in enumerate(truth)]

    def bad(body: Any, status: int, words: str, **kwargs: Any) -> None:
        response = server.http.post("/v2/models/iris/feedback", json=body, **kwargs)
        assert response.status_code == status, response.text
        assert words in response.json()["error"]

    bad({"request_ids": ids[:2], "labels": [1]}, 400, "2 request_ids but 1 labels")
    bad({"request_ids": ids[:1], "labels": ["setosa"]}, 400, "integer labels")
    bad({"request_ids": ids[:1], "labels": [[0, 1]]}, 400, "predicted 1 row")
    bad({"request_ids": [*ids[:3], "never-seen"], "labels": [0, 0, 0, 0]}, 404, "never-seen")
    bad({"labels": [1]}, 400, "request_ids")
    bad({"request_ids": [ids[0], ids[0]], "labels": [0, 0]}, 400, "twice")
    response = server.http.post(
        "/v2/models/iris/feedback", content=b"{not json", headers={"content-type": "x"}
    )
    assert response.status_code == 400
    assert server.http.post("/v2/models/nope/feedback", json={}).status_code == 404
    # Nothing above was applied.
    assert server.metric("modelfleet_feedback_total", model="iris") == 0

    response = server.http.post(
        "/v2/models/iris/feedback", json={"request_ids": ids, "labels": labels}
    )
    assert response.status_code == 200, response.text
    doc = response.json()
    predicted = [
        int(np.argmax(p))
        for p in server.app.repository.instance("iris").runner.run({"input": X[:40]})[
            "probabilities"
        ]
    ]
    expected = sum(p == t for p, t in zip(predicted, labels, strict=True))
    assert doc["accepted"] == 40 and doc["correct"] == expected
    assert doc["live_accuracy"]["value"] == pytest.approx(expected / 40)
    assert server.metric("modelfleet_live_accuracy", model="iris") == pytest.approx(expected / 40)
    assert server.metric("modelfleet_feedback_total", model="iris", result="wrong") == 40 - expected
    # Labels sent again for the same requests replace the earlier ones.
    fixed = server.http.post("/v2/models/iris/feedback", json={"request_ids": ids, "labels": truth})
    assert fixed.json()["live_accuracy"]["value"] == pytest.approx(
        sum(p == t for p, t in zip(predicted, truth, strict=True)) / 40
    )


def test_feedback_needs_a_classifier(watched: Registry, served: Served) -> None:
    server = served(ModelConfig(ref="adder"))
    answer = server.http.post(
        "/v2/models/adder/infer",
        json={"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
    )
    response = server.http.post(
        "/v2/models/adder/feedback", json={"request_ids": [answer.json()["id"]], "labels": [6]}
    )
    assert response.status_code == 409
    assert "no class output" in response.json()["error"]


def test_low_live_accuracy_suspends_the_cache_until_it_recovers(
    watched: Registry, served: Served, iris_data: Any
) -> None:
    X, y = iris_data
    watch = WatchConfig(accuracy_window=10, min_labels=5)
    server = served(ModelConfig(ref="iris", watch=watch, cache=CacheConfig(threshold=0.8)))
    probe = _row(X[100])

    def hits() -> float:
        return server.metric("modelfleet_cache_lookups_total", model="iris", result="hit")

    server.http.post("/v2/models/iris/infer", json=probe)
    server.http.post("/v2/models/iris/infer", json=probe)
    assert hits() == 1
    assert server.metric("modelfleet_cache_enabled", model="iris") == 1

    ids = _predict(server, X[:10])
    wrong = [int((t + 1) % 3) for t in y[:10]]
    doc = server.http.post(
        "/v2/models/iris/feedback", json={"request_ids": ids, "labels": wrong}
    ).json()
    assert doc["live_accuracy"]["value"] < 0.8
    assert doc["cache"] == "suspended"
    assert server.metric("modelfleet_cache_enabled", model="iris") == 0
    server.http.post("/v2/models/iris/infer", json=probe)
    assert hits() == 1  # answered by the model, not the cache
    summary = server.http.get("/monitor/summary").json()["models"][0]
    assert summary["cache"] == "suspended" and "live accuracy" in summary["cache_reason"]

    ids = _predict(server, X[10:20])
    right = server.http.post(
        "/v2/models/iris/feedback",
        json={"request_ids": ids, "labels": [int(t) for t in y[10:20]]},
    ).json()
    assert right["live_accuracy"]["value"] >= 0.8 and right["cache"] == "on"
    assert server.metric("modelfleet_cache_enabled", model="iris") == 1
    before = hits()
    server.http.post("/v2/models/iris/infer", json=probe)  # dropped while suspended: a miss
    assert hits() == before
    server.http.post("/v2/models/iris/infer", json=probe)
    assert hits() == before + 1


def test_drift_score_rises_when_inputs_shift(
    watched: Registry, served: Served, iris_data: Any
) -> None:
    X, _ = iris_data
    watch = WatchConfig(drift_window_rows=100, drift_min_rows=50, drift_interval_s=0.1)
    server = served(ModelConfig(ref="iris", watch=watch))

    def psi() -> float:
        return max(
            server.metric(
                "modelfleet_drift_score", model="iris", feature=f"input[{j}]", method="psi"
            )
            for j in range(4)
        )

    # Rows like the training data: stable.
    rows = np.concatenate([X, X])[:100]
    server.http.post(
        "/v2/models/iris/infer",
        json={
            "inputs": [
                {
                    "name": "input",
                    "shape": [100, 4],
                    "datatype": "FP32",
                    "data": rows.ravel().tolist(),
                }
            ]
        },
    )
    _wait(lambda: server.metric("modelfleet_drift_score", model="iris", method="ks") > 0)
    calm = psi()
    assert calm < 0.1
    # Petal length doubled: the window fills with values training never saw.
    shifted = X[:100].copy()
    shifted[:, 2] *= 2.0
    _predict(server, shifted)
    _wait(lambda: psi() > 0.5)
    summary = server.http.get("/monitor/summary").json()["models"][0]
    drift = summary["drift"]
    assert max(drift["psi"], key=drift["psi"].get) == "input[2]"
    assert drift["ks"]["input[2]"] > 0.3
    assert drift["psi"]["input[0]"] < 0.2  # the other features did not move


def test_predictions_and_feedback_are_logged_for_joining(
    watched: Registry, served: Served, iris_data: Any, tmp_path: Path
) -> None:
    X, y = iris_data
    state = tmp_path / "state"
    monitoring = MonitoringConfig(state_dir=str(state), log_sample=1.0, flush_interval_s=0.1)
    server = served(ModelConfig(ref="iris"), monitoring=monitoring)
    ids = _predict(server, X[:5])
    server.http.post(
        "/v2/models/iris/feedback", json={"request_ids": ids, "labels": [int(v) for v in y[:5]]}
    )
    predictions = [
        json.loads(line)
        for path in state.glob("predictions-*.jsonl")
        for line in path.read_text().splitlines()
    ]
    feedback = [
        json.loads(line)
        for path in state.glob("feedback-*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert {p["id"] for p in predictions} == set(ids)
    assert predictions[0]["inputs"]["input"] == [X[0].tolist()]
    assert feedback[0]["ids"] == ids
    assert (state / "predictions.sqlite3").is_file()


def test_summary_reports_rates_latency_and_cache(watched: Registry, served: Served) -> None:
    server = served(ModelConfig(ref="iris"), monitoring=MonitoringConfig(summary_window_s=60))
    row = _row(np.ones(4, dtype=np.float32))
    for _ in range(20):
        server.http.post("/v2/models/iris/infer", json=row)
    server.http.post("/v2/models/iris/infer", json={"inputs": []})  # a 400
    doc = server.http.get("/monitor/summary").json()
    model = doc["models"][0]
    assert model["name"] == "iris" and model["version"] == "1" and model["state"] == "ready"
    assert model["requests"] == 21
    assert model["rps"] > 0
    assert model["rejected_ratio"] == pytest.approx(1 / 21)
    assert 0 < model["p50_ms"] <= model["p99_ms"]
    assert model["cache_hit_ratio"] == pytest.approx(19 / 20)
    assert model["accuracy"]["registered"] > 0.9
    assert model["predictions"]  # classes counted


def test_a_request_leaves_only_what_monitoring_needs() -> None:
    """Tensors go with their request unless sampled for drift or the log; classes are kept."""
    import weakref

    from modelfleet.serving.live.watch import ModelWatch
    from modelfleet.serving.metrics import ServingMetrics
    from modelfleet.signature import Signature, TensorSpec

    signature = Signature(
        inputs=(TensorSpec(name="X", dtype="float32", shape=(None, 2)),),
        outputs=(TensorSpec(name="label", dtype="int64", shape=(None,)),),
    )
    profile = {"features": {}}  # any profile turns drift sampling on
    watch = ModelWatch(
        "m",
        "1",
        signature,
        profile,
        WatchConfig(drift_sample=0.5),
        ServingMetrics(),
        cache_threshold=None,
    )
    inputs = [{"X": np.full((1, 2), i, np.float32)} for i in range(4)]
    kept = [weakref.ref(x["X"]) for x in inputs]
    for i, x in enumerate(inputs):
        watch.record(f"r{i}", x, {"label": np.array([i % 2])})
    del inputs, x
    alive = [ref() is not None for ref in kept]
    assert alive.count(True) == 2  # every other request's inputs wait for the drift window
    rows = watch.take(watch.drain(), None)
    assert [(r[1], json.loads(r[4])) for r in rows] == [
        ("r0", [0]),
        ("r1", [1]),
        ("r2", [0]),
        ("r3", [1]),
    ]
    assert watch.window.rows == 2
