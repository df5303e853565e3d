"""Server metrics: one registry per server, per-version children, retiring a version."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelfleet.serving.metrics import LATENCY_BUCKETS, ServingMetrics


def _samples(metrics: ServingMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def _labels(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


def test_two_servers_in_one_process_count_separately(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    first, second = ServingMetrics(), ServingMetrics()  # same names, no duplicate error
    first.for_model("m", "1").request("infer", 200, 0.01)
    assert first.registry is not second.registry
    key = (
        "modelfleet_requests_total",
        _labels(model="m", version="1", endpoint="infer", status="200"),
    )
    assert _samples(first)[key] == 1
    assert key not in _samples(second)


def test_requests_are_counted_by_endpoint_and_status_with_latency() -> None:
    metrics = ServingMetrics()
    model = metrics.for_model("churn", "3")
    for status, seconds in ((200, 0.0004), (200, 0.003), (400, 0.0004), (503, 7.0)):
        model.request("infer", status, seconds)
    model.request("predict_v1", 200, 0.001)
    model.cache_result("hit")
    model.cache_result("hit")
    model.cache_result("error")
    samples = _samples(metrics)

    def count(status: str, endpoint: str = "infer") -> float:
        labels = _labels(model="churn", version="3", endpoint=endpoint, status=status)
        return samples[("modelfleet_requests_total", labels)]

    assert (count("200"), count("400"), count("503"), count("200", "predict_v1")) == (2, 1, 1, 1)
    latency = _labels(model="churn", version="3", endpoint="infer")
    assert samples[("modelfleet_request_duration_seconds_count", latency)] == 4
    assert samples[("modelfleet_request_duration_seconds_sum", latency)] == pytest.approx(7.0038)
    fastest = frozenset({*latency, ("le", str(LATENCY_BUCKETS[0]))})
    assert samples[("modelfleet_request_duration_seconds_bucket", fastest)] == 2
    cache = ("modelfleet_cache_lookups_total", _labels(model="churn", version="3", result="hit"))
    assert samples[cache] == 2


def test_a_retired_version_leaves_no_live_gauges_behind() -> None:
    metrics = ServingMetrics()
    old, new = metrics.for_model("m", "1"), metrics.for_model("m", "2")
    old.queue_depth.set(5)
    old.inflight.set(2)
    new.queue_depth.set(1)
    old.retire()
    samples = _samples(metrics)
    assert ("modelfleet_queue_depth", _labels(model="m", version="1")) not in samples
    assert ("modelfleet_inflight_requests", _labels(model="m", version="1")) not in samples
    assert samples[("modelfleet_queue_depth", _labels(model="m", version="2"))] == 1
