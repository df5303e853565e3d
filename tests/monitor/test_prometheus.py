"""A real Prometheus scrapes a real modelfleet server and loads the alert rules.

What an operator checks after wiring monitoring up: the target is up, the series the
dashboard and the rules need are there with the right labels and values, the dashboard's
panels have data, and every alert rule evaluates cleanly.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import modelfleet as mf
from modelfleet.cli import main
from modelfleet.config import Settings
from modelfleet.registry import Registry
from modelfleet.serving.settings import ModelConfig, ServeConfig
from tests.models import sum_graph
from tests.monitor.test_dashboard import EXPORTED
from tests.prometheus import Prometheus
from tests.serving.conftest import RunningServer, run_server

ALERTS = {
    "ModelfleetHighLatency",
    "ModelfleetErrorRatio",
    "ModelfleetQueueSaturated",
    "ModelfleetDrift",
    "ModelfleetLowAccuracy",
    "ModelfleetLoadFailures",
}
# Panels whose metrics a server that only answered requests has; each must show data.
LIVE_PANELS = {
    "Requests per second",
    "Error ratio (5xx)",
    "Request latency",
    "In-flight requests",
    "Queue wait",
    "Inference time per batch",
    "Batch size",
    "Queue depth",
    "Cache hit ratio",
    "Model load time (mean since start)",
    "Served versions",
}


@pytest.fixture
def server(registry: Registry, settings: Settings) -> Iterator[RunningServer]:
    """A modelfleet server for "adder" (accuracy 1.0, so its outputs are cached)."""
    mf.register(sum_graph(), name="adder", metrics={"accuracy": 1.0}, registry=registry)
    with run_server(ServeConfig(models=(ModelConfig(ref="adder"),)), settings) as running:
        yield running


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """The rules file and the dashboard, written by the CLI."""
    assert main(["monitor", "rules", "--out", str(tmp_path)]) == 0
    assert main(["monitor", "dashboard", "--out", str(tmp_path)]) == 0
    return tmp_path / "modelfleet-rules.yml", tmp_path / "modelfleet-dashboard.json"


def infer(http: httpx.Client, values: list[float]) -> httpx.Response:
    body = {"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": values}]}
    return http.post("/v2/models/adder/infer", json=body)


def by(label: str, result: list[dict[str, Any]]) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in result}


def equals(expected: dict[str, float], label: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda result: by(label, result) == expected


def test_prometheus_scrapes_the_server_and_loads_the_rules(
    registry: Registry,
    server: RunningServer,
    files: tuple[Path, Path],
    start_prometheus: Callable[..., Prometheus],
) -> None:
    rules, dashboard = files
    prom = start_prometheus(targets=[server.url.removeprefix("http://")], rule_files=[rules])
    prom.wait_for('up{job="modelfleet"}', equals({"modelfleet": 1.0}, "job"))

    # Traffic in two scrapes apart, so that rates see the counters move.
    assert infer(server.http, [1, 2, 3]).status_code == 200  # miss
    assert infer(server.http, [1, 2, 3]).status_code == 200  # hit
    prom.wait_for('modelfleet_cache_lookups_total{model="adder",result="hit"}')
    for values in ([1, 2, 3], [4, 5, 6]):  # hit, miss
        assert infer(server.http, values).status_code == 200
    bad = server.http.post("/v2/models/adder/infer", json={"inputs": []})
    assert bad.status_code == 400
    v1 = server.http.post("/v1/models/adder:predict", json={"instances": [[0, 0, 1]]})
    assert v1.status_code == 200

    requests = 'sum by (endpoint, status) (modelfleet_requests_total{model="adder",version="1"})'
    result = prom.wait_for(requests, lambda r: len(r) == 3)
    counts = {(r["metric"]["endpoint"], r["metric"]["status"]): r["value"][1] for r in result}
    assert counts == {("v2", "200"): "4", ("v2", "400"): "1", ("v1", "200"): "1"}

    latency = "modelfleet_request_duration_seconds"
    prom.wait_for(
        'sum(modelfleet_request_duration_seconds_count{model="adder"})',
        equals({"": 6.0}, "model"),
    )
    buckets = prom.vector(f'{latency}_bucket{{model="adder",endpoint="v2"}}')
    assert {r["metric"]["le"] for r in buckets} >= {"0.001", "0.1", "1.0", "+Inf"}
    p99 = prom.vector(
        f'histogram_quantile(0.99, sum by (le) (rate({latency}_bucket{{model="adder"}}[1m])))'
    )
    assert 0 < float(p99[0]["value"][1]) < 10

    assert by("model", prom.vector('modelfleet_queue_depth{model="adder"}')) == {"adder": 0.0}
    lookups = prom.wait_for(
        'modelfleet_cache_lookups_total{model="adder",version="1"}',
        lambda r: by("result", r).get("hit") == 2,
    )
    assert by("result", lookups)["miss"] == server.metric(
        "modelfleet_cache_lookups_total", model="adder", result="miss"
    )

    [info] = prom.vector('modelfleet_model_info{model="adder"}')
    assert info["value"][1] == "1"
    assert info["metric"]["version"] == "1" and info["metric"]["variant"] == "fp32"
    onnx = registry.get("adder:1").artifact("onnx")
    assert onnx is not None
    assert info["metric"]["sha256"] and onnx.sha256.startswith(info["metric"]["sha256"])

    _exports_match_the_contract(prom)
    _dashboard_panels_have_data(prom, json.loads(dashboard.read_text()))
    _rules_are_healthy(prom)


def _exports_match_the_contract(prom: Prometheus) -> None:
    """Every modelfleet series scraped has exactly the labels the dashboard and rules assume."""
    seen: dict[str, set[str]] = {}
    for series in prom.vector('{__name__=~"modelfleet_.+",job="modelfleet"}'):
        labels = set(series["metric"]) - {"__name__", "job", "instance"}
        name = series["metric"]["__name__"]
        if not name.endswith("_created"):  # prometheus-client's creation timestamps
            seen.setdefault(name, set()).update(labels)
    assert seen, "no modelfleet series scraped"
    wrong = {name: labels for name, labels in seen.items() if EXPORTED.get(name) != labels}
    assert not wrong, f"exported label names differ from the monitoring contract: {wrong}"


def _dashboard_panels_have_data(prom: Prometheus, board: dict[str, Any]) -> None:
    live = [p for p in board["panels"] if p.get("title") in LIVE_PANELS]
    assert {p["title"] for p in live} == LIVE_PANELS
    for panel in live:
        for target in panel["targets"]:
            expr = target["expr"].replace("$model", "adder").replace("$__rate_interval", "1m")
            result = prom.wait_for(expr, timeout=15)
            values = [float(r["value"][1]) for r in result]
            assert all(math.isfinite(v) for v in values), f"{panel['title']}: {result}"
            if panel["title"] == "Cache hit ratio":  # one hit and one miss since the last scrape
                assert 0 < values[0] <= 1


def _rules_are_healthy(prom: Prometheus) -> None:
    deadline = time.monotonic() + 30
    rules = [r for g in prom.rule_groups() for r in g["rules"]]
    while any(r["health"] != "ok" for r in rules) and time.monotonic() < deadline:
        time.sleep(0.25)
        rules = [r for g in prom.rule_groups() for r in g["rules"]]
    assert {r["name"] for r in rules} == ALERTS
    broken = {r["name"]: (r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"}
    assert not broken
    assert all(r["type"] == "alerting" and r["state"] != "firing" for r in rules)


def test_shifted_inputs_raise_the_drift_score_and_fire_the_alert(
    registry: Registry,
    settings: Settings,
    tmp_path: Path,
    start_prometheus: Callable[..., Prometheus],
) -> None:
    """Real server, real Prometheus, the rules the CLI wrote: drift is seen and alerted on."""
    from modelfleet.serving.settings import WatchConfig
    from tests.models import logistic_pipeline

    model, X, _ = logistic_pipeline()
    mf.register(model, name="iris", sample_input=X, training_data=X, registry=registry)
    watch = WatchConfig(drift_window_rows=100, drift_min_rows=50, drift_interval_s=0.2)
    config = ServeConfig(models=(ModelConfig(ref="iris", watch=watch),))
    rules = tmp_path / "rules.yml"
    assert main(["monitor", "rules", "--out", str(rules), "--for", "0s"]) == 0
    with run_server(config, settings) as server:
        prom = start_prometheus(targets=[server.url.removeprefix("http://")], rule_files=[rules])

        def send(rows: Any) -> None:
            body = {
                "inputs": [
                    {
                        "name": "input",
                        "shape": list(rows.shape),
                        "datatype": "FP32",
                        "data": rows.ravel().tolist(),
                    }
                ]
            }
            assert server.http.post("/v2/models/iris/infer", json=body).status_code == 200

        psi = 'max by (model) (modelfleet_drift_score{model="iris",method="psi"})'
        firing = 'ALERTS{alertname="ModelfleetDrift",alertstate="firing",model="iris"}'
        sample = X[np.random.default_rng(0).permutation(len(X))[:100]]
        send(sample)  # like the training data
        calm = prom.wait_for(psi, lambda r: len(r) == 1)
        assert float(calm[0]["value"][1]) < 0.2
        time.sleep(2)  # two evaluations of the rules: a calm window does not alert
        assert prom.vector(firing) == []
        shifted = sample.copy()
        shifted[:, 2] *= 2.0  # petal length doubled: values training never saw
        send(shifted)
        prom.wait_for(psi, lambda r: len(r) == 1 and float(r[0]["value"][1]) > 0.5)
        [alert] = prom.wait_for(firing, timeout=20)
        assert alert["metric"]["feature"] == "input[2]"
