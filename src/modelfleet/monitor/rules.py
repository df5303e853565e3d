"""Prometheus alert rules for served models, written once and used everywhere.

The same rules go into a plain rules file (``modelfleet monitor rules``), into the
``PrometheusRule`` a deployment renders, and into promtool's unit tests.
"""

from __future__ import annotations

from typing import Any


def _selector(model: str | None) -> str:
    return f'model="{model}"' if model else 'model!=""'


def alert_rules(
    model: str | None = None,
    *,
    latency_p99_ms: float = 100.0,
    error_ratio: float = 0.01,
    queue_depth: float = 100.0,
    drift_score: float = 0.2,
    min_accuracy: float = 0.8,
    duration: str = "5m",
) -> list[dict[str, Any]]:
    """Rule groups: p99 latency, error ratio, queue saturation, drift, accuracy, load failures."""
    sel = _selector(model)
    summary = "{{ $labels.model }}"
    rules = [
        {
            "alert": "ModelfleetHighLatency",
            "expr": (
                "histogram_quantile(0.99, sum by (le, model) "
                f"(rate(modelfleet_request_duration_seconds_bucket{{{sel}}}[5m]))) "
                f"> {latency_p99_ms / 1000:g}"
            ),
            "for": duration,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": f"{summary}: p99 latency above {latency_p99_ms:g} ms",
                "description": "p99 is {{ $value | humanizeDuration }} over the last 5 minutes.",
            },
        },
        {
            "alert": "ModelfleetErrorRatio",
            "expr": (
                f'sum by (model) (rate(modelfleet_requests_total{{{sel},status=~"5.."}}[5m])) '
                f"/ sum by (model) (rate(modelfleet_requests_total{{{sel}}}[5m])) > {error_ratio:g}"
            ),
            "for": duration,
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": f"{summary}: more than {error_ratio:.0%} of requests fail",
                "description": "Server errors are {{ $value | humanizePercentage }} of requests.",
            },
        },
        {
            "alert": "ModelfleetQueueSaturated",
            "expr": f"max by (model) (modelfleet_queue_depth{{{sel}}}) > {queue_depth:g}",
            "for": duration,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": f"{summary}: queue above {queue_depth:g} requests",
                "description": "Add replicas or lower the load; full queues answer 503.",
            },
        },
        {
            "alert": "ModelfleetDrift",
            "expr": f"max by (model, feature) (modelfleet_drift_score{{{sel}}}) > {drift_score:g}",
            "for": duration,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": f"{summary}: input drift on {{{{ $labels.feature }}}}",
                "description": "Drift score {{ $value }} against the training profile.",
            },
        },
        {
            "alert": "ModelfleetLowAccuracy",
            "expr": f"min by (model) (modelfleet_live_accuracy{{{sel}}}) < {min_accuracy:g}",
            "for": duration,
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": f"{summary}: live accuracy under {min_accuracy:g}",
                "description": "Accuracy from feedback labels is {{ $value }}.",
            },
        },
        {
            "alert": "ModelfleetLoadFailures",
            "expr": f"increase(modelfleet_model_load_failures_total{{{sel}}}[15m]) > 0",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": f"{summary}: a model load or hot swap failed",
                "description": "The previous version keeps serving; see the server log.",
            },
        },
    ]
    return [{"name": "modelfleet", "rules": rules}]
