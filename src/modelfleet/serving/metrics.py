"""Prometheus metrics of the server, in a registry each server instance owns.

With several worker processes (``--workers N``) every process writes its samples to files in
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` aggregates all of them, so a scrape that lands
on any worker reports the whole server. Hot-path children are bound once per model version.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_enabled() -> bool:
    """True when samples go to shared files (several worker processes)."""
    return bool(os.environ.get(_MULTIPROC_ENV))


class ServingMetrics:
    """Every metric the server exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "modelfleet_requests",
            "Requests by model, version, endpoint and status.",
            ["model", "version", "endpoint", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "modelfleet_request_duration_seconds",
            "End-to-end request latency.",
            ["model", "version", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "modelfleet_queue_wait_seconds",
            "Time from enqueue to the start of its batch.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "modelfleet_inference_duration_seconds",
            "ONNX Runtime time per batch.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "modelfleet_batch_rows",
            "Rows per ONNX Runtime call.",
            ["model", "version"],
            buckets=ROW_BUCKETS,
            registry=r,
        )
        self.batch_requests = Histogram(
            "modelfleet_batch_requests",
            "Requests (or chunks) merged per ONNX Runtime call.",
            ["model", "version"],
            buckets=ROW_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "modelfleet_queue_depth",
            "Requests waiting in the model version's queue.",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.inflight = Gauge(
            "modelfleet_inflight_requests",
            "Requests being handled by the model version.",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.cache = Counter(
            "modelfleet_cache_lookups",
            "Output cache lookups by result (hit, miss, bypass, error).",
            ["model", "version", "result"],
            registry=r,
        )
        self.load_seconds = Histogram(
            "modelfleet_model_load_duration_seconds",
            "Time to load and warm up a model version.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.load_failures = Counter(
            "modelfleet_model_load_failures",
            "Failed model loads and hot swaps.",
            ["model"],
            registry=r,
        )
        self.info = Gauge(
            "modelfleet_model_info",
            "Served model versions (1 = serving).",
            ["model", "version", "variant", "sha256"],
            registry=r,
            multiprocess_mode="max",
        )

        self.predictions = Counter(
            "modelfleet_predictions",
            "Predicted rows by class (classifiers).",
            ["model", "version", "class"],
            registry=r,
        )
        self.drift = Gauge(
            "modelfleet_drift_score",
            "Drift of recent inputs from the training profile (psi: population stability "
            "index, ks: Kolmogorov-Smirnov statistic).",
            ["model", "version", "feature", "method"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.live_accuracy = Gauge(
            "modelfleet_live_accuracy",
            "Accuracy over the most recent labelled requests (from feedback).",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.feedback = Counter(
            "modelfleet_feedback",
            "Labelled rows received as feedback, by result (correct, wrong).",
            ["model", "version", "result"],
            registry=r,
        )
        self.store_dropped = Counter(
            "modelfleet_store_dropped_rows",
            "Predicted rows the predictions store did not keep, by reason (over_cap: rows of "
            "a request beyond max_recorded_rows; evicted: oldest predictions or feedback "
            "dropped to stay within max_store_bytes; backend_down: recorded while the "
            "shared state backend was unavailable).",
            ["model", "reason"],
            registry=r,
        )
        self.state_backend_up = Gauge(
            "modelfleet_state_backend_up",
            "1 while the predictions store (sqlite, postgresql or redis) answers, 0 while it "
            "is unavailable (predictions dropped, feedback refused with 503).",
            ["backend"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self.cache_enabled = Gauge(
            "modelfleet_cache_enabled",
            "1 while the model version's output cache answers, 0 while it is off "
            "(never enabled, or suspended because live accuracy fell under the threshold).",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livemin",
        )

    def for_model(self, model: str, version: str) -> ModelMetrics:
        """Children bound to one model version, for the hot path."""
        return ModelMetrics(self, model, version)

    def render(self) -> tuple[bytes, str]:
        """The exposition text (aggregated over worker processes when there are several)."""
        if multiprocess_enabled():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Drop a finished worker's live gauges from the shared files."""
    if multiprocess_enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


@dataclass
class ModelMetrics:
    """Pre-bound metric children of one model version."""

    parent: ServingMetrics
    model: str
    version: str
    _requests: dict[tuple[str, str], Any] = field(default_factory=dict)
    _latency: dict[str, Any] = field(default_factory=dict)
    _cache: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p, m, v = self.parent, self.model, self.version
        self.queue_wait = p.queue_wait.labels(m, v)
        self.inference = p.inference.labels(m, v)
        self.batch_rows = p.batch_rows.labels(m, v)
        self.batch_requests = p.batch_requests.labels(m, v)
        self.queue_depth = p.queue_depth.labels(m, v)
        self.inflight = p.inflight.labels(m, v)

    def retire(self) -> None:
        """Drop the live gauges of a version that stopped serving."""
        for gauge in (self.parent.queue_depth, self.parent.inflight):
            gauge.labels(self.model, self.version).set(0)
            if not multiprocess_enabled():
                gauge.remove(self.model, self.version)

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one finished request and its latency."""
        key = (endpoint, str(status))
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = self.parent.requests.labels(
                self.model, self.version, endpoint, key[1]
            )
        counter.inc()
        latency = self._latency.get(endpoint)
        if latency is None:
            latency = self._latency[endpoint] = self.parent.request_seconds.labels(
                self.model, self.version, endpoint
            )
        latency.observe(seconds)

    def cache_result(self, result: str) -> None:
        """Count a cache lookup: hit, miss, bypass or error."""
        child = self._cache.get(result)
        if child is None:
            child = self._cache[result] = self.parent.cache.labels(self.model, self.version, result)
        child.inc()
