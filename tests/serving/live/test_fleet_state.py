"""Two replicas sharing one state backend (real PostgreSQL and Redis servers).

Each test starts two real servers on the same registry, as two pods of one Deployment
behind a Service would be, with ``state.url`` naming the shared backend.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import modelfleet as mf
from modelfleet.registry import Registry
from modelfleet.serving.settings import (
    CacheConfig,
    ModelConfig,
    MonitoringConfig,
    StateConfig,
    WatchConfig,
)
from tests.models import logistic_pipeline
from tests.servers import redis_server, wait_until
from tests.serving.conftest import RunningServer

Served = Callable[..., RunningServer]
FAST = MonitoringConfig(flush_interval_s=0.1)


@pytest.fixture(params=["postgresql", "redis"])
def state_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A shared state backend: a fresh PostgreSQL database or a private Redis server."""
    if request.param == "postgresql":
        yield str(request.getfixturevalue("postgres_url"))
        return
    with redis_server() as (url, _):
        yield url


@pytest.fixture
def redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    with redis_server() as started:
        yield started


@pytest.fixture
def iris(registry: Registry) -> tuple[Registry, np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    model, X, y = logistic_pipeline()
    mf.register(
        model,
        name="iris",
        sample_input=X,
        metrics={"accuracy": model.score(X, y)},
        registry=registry,
    )
    order = np.random.default_rng(0).permutation(len(X))
    return registry, X[order], y[order]


def _infer(server: RunningServer, x: np.ndarray[Any, Any]) -> str:
    row = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": x.tolist()}]}
    response = server.http.post("/v2/models/iris/infer", json=row)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def _feedback(server: RunningServer, ids: list[str], labels: list[int]) -> Any:
    return server.http.post("/v2/models/iris/feedback", json={"request_ids": ids, "labels": labels})


def _two(served: Served, state: StateConfig, model: ModelConfig | None = None) -> list[Any]:
    model = model or ModelConfig(ref="iris")
    return [served(model, monitoring=FAST, state=state) for _ in range(2)]


def test_feedback_lands_on_any_replica(iris: Any, served: Served, state_url: str) -> None:
    """Predictions answered by one replica take feedback on the other: none gets 404."""
    _, X, y = iris
    a, b = _two(served, StateConfig(url=state_url, refresh_s=0.2))
    ids_a = [_infer(a, x) for x in X[:15]]
    ids_b = [_infer(b, x) for x in X[15:30]]
    # Each replica takes labels for the other's answers (the Service's coin came up wrong).
    correct = 0
    for server, ids, labels in ((b, ids_a, y[:15]), (a, ids_b, y[15:30])):
        response = _feedback(server, ids, [int(t) for t in labels])
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 15
        correct += response.json()["correct"]
    expected = correct / 30

    def accuracy(server: RunningServer) -> dict[str, Any]:
        return dict(server.http.get("/monitor/summary").json()["models"][0]["accuracy"])

    # Each replica re-reads the shared figure within a refresh: both see all 30 labels.
    wait_until(lambda: [accuracy(s)["labelled_requests"] for s in (a, b)] == [30, 30], timeout=10)
    assert [accuracy(s)["live"] for s in (a, b)] == [expected, expected]


def test_two_replicas_flip_the_cache_together(iris: Any, served: Served, state_url: str) -> None:
    """Wrong labels sent to one replica suspend the cache on both; right ones resume both."""
    _, X, y = iris
    model = ModelConfig(
        ref="iris",
        watch=WatchConfig(accuracy_window=10, min_labels=5),
        cache=CacheConfig(threshold=0.8),
    )
    a, b = _two(served, StateConfig(url=state_url, refresh_s=0.2), model)
    for server in (a, b):
        assert server.metric("modelfleet_cache_enabled", model="iris") == 1

    ids = [_infer(b, x) for x in X[:10]]
    wrong = [int((t + 1) % 3) for t in y[:10]]
    assert _feedback(a, ids, wrong).status_code == 200
    # b never saw a label: it follows the shared figure within a refresh or two.
    wait_until(lambda: b.metric("modelfleet_cache_enabled", model="iris") == 0, timeout=5)
    assert a.metric("modelfleet_cache_enabled", model="iris") == 0
    status = b.http.get("/monitor/summary").json()["models"][0]
    assert status["cache"] == "suspended" and "live accuracy" in status["cache_reason"]

    ids = [_infer(a, x) for x in X[10:20]]
    assert _feedback(b, ids, [int(t) for t in y[10:20]]).status_code == 200
    wait_until(lambda: a.metric("modelfleet_cache_enabled", model="iris") == 1, timeout=5)
    assert b.metric("modelfleet_cache_enabled", model="iris") == 1


def test_a_hung_or_dead_backend_never_fails_inference(
    iris: Any, served: Served, redis: tuple[str, subprocess.Popen[bytes]]
) -> None:
    """Redis frozen (SIGSTOP), then back: answers go on, feedback waits with 503."""
    url, proc = redis
    _, X, y = iris
    state = StateConfig(url=url, timeout_s=0.5, retry_after_s=1.0, refresh_s=0.2)
    a, b = _two(served, state)
    before = [_infer(a, x) for x in X[:5]]
    assert _feedback(b, before, [int(t) for t in y[:5]]).status_code == 200

    os.kill(proc.pid, signal.SIGSTOP)
    try:
        lost = [_infer(a, x) for x in X[5:45]]  # every one answered while the backend hangs
        wait_until(
            lambda: a.metric("modelfleet_state_backend_up", backend="redis") == 0, timeout=10
        )
        refused = _feedback(a, lost[:1], [int(y[5])])
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        assert "redis" in refused.json()["error"] and "retry" in refused.json()["error"]
        more = [_infer(a, x) for x in X[45:60]]
        wait_until(
            lambda: a.metric("modelfleet_store_dropped_rows_total", reason="backend_down") > 0,
            timeout=10,
        )
        assert len(more) == 15
    finally:
        os.kill(proc.pid, signal.SIGCONT)

    # Back: after retry_after_s new predictions are recorded and take feedback again.
    def recovered() -> bool:
        rid = _infer(a, X[60])
        time.sleep(0.3)  # a flush
        return _feedback(b, [rid], [int(y[60])]).status_code == 200

    wait_until(recovered, timeout=15)
    assert a.metric("modelfleet_state_backend_up", backend="redis") == 1
    # The predictions recorded before the outage were kept, and labelled on the other replica.
    summary = b.http.get("/monitor/summary").json()["models"][0]
    assert summary["accuracy"]["labelled_requests"] >= 6


def test_a_backend_down_at_start_does_not_stop_the_server(iris: Any, served: Served) -> None:
    """A replica starts and answers with its state backend unreachable."""
    _, X, _ = iris
    server = served(
        ModelConfig(ref="iris"),
        monitoring=FAST,
        state=StateConfig(url="redis://127.0.0.1:1/0", timeout_s=0.5, retry_after_s=1.0),
    )
    rid = _infer(server, X[0])
    response = _feedback(server, [rid], [0])
    assert response.status_code == 503
    assert server.http.get("/v2/health/ready").status_code == 200
