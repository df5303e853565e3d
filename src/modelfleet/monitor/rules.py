"""Prometheus alert rules for served models, written once and used everywhere.

The same rule groups go into a plain rules file (``modelfleet monitor rules``), into the
``PrometheusRule`` a deployment renders, and into promtool's unit tests. Every expression
stays quiet when there is nothing to judge: no traffic, no feedback labels, no drift figures.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml

from modelfleet.errors import ConfigError
from modelfleet.refs import validate_name

# Prometheus durations: one or more <number><unit>, largest unit first (e.g. 1h30m).
_DURATION = re.compile(r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")
# The failure counter's series appears with its first failure, so increase() over it reads 0;
# the rule also alerts on a non-zero series that had no sample this long ago. (A Prometheus
# with no history yet therefore reports old failures once, for this long.)
_LOAD_WINDOW = "15m"


def _selector(model: str | None) -> str:
    return f'model="{validate_name(model)}"' if model else 'model!=""'


def _check(what: str, value: float, ok: bool, expected: str) -> None:
    if not (math.isfinite(value) and ok):
        raise ConfigError(f"invalid {what} {value!r} for the alert rules", hint=expected)


def _check_thresholds(
    latency_p99_ms: float,
    error_ratio: float,
    queue_depth: float,
    drift_score: float,
    min_accuracy: float,
    min_feedback: int,
    duration: str,
) -> None:
    _check("p99 latency", latency_p99_ms, latency_p99_ms > 0, "use milliseconds above 0")
    _check("error ratio", error_ratio, 0 < error_ratio < 1, "use a fraction, e.g. 0.01 for 1%")
    _check("queue depth", queue_depth, queue_depth > 0, "use a number of requests above 0")
    _check("drift score", drift_score, drift_score > 0, "use a PSI above 0; 0.2 is a real shift")
    _check("minimum accuracy", min_accuracy, 0 < min_accuracy <= 1, "use a fraction, e.g. 0.8")
    _check("minimum feedback", min_feedback, min_feedback >= 1, "use a number of labels, e.g. 30")
    if not duration or not _DURATION.match(duration):
        raise ConfigError(
            f"invalid alert duration {duration!r}",
            hint="use a Prometheus duration such as 30s, 5m or 1h",
        )


def _alert(
    name: str, expr: str, severity: str, summary: str, description: str, duration: str | None
) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if duration is not None:
        rule["for"] = duration
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {"summary": summary, "description": description}
    return rule


def _traffic_rules(
    sel: str, latency_p99_ms: float, error_ratio: float, queue_depth: float, duration: str
) -> list[dict[str, Any]]:
    requests = f"modelfleet_requests_total{{{sel}}}"
    errors = f'modelfleet_requests_total{{{sel},status=~"5.."}}'
    # With no requests the quantile is NaN and the ratio's denominator is dropped: both
    # comparisons then yield nothing, so an idle model never alerts.
    return [
        _alert(
            "ModelfleetHighLatency",
            "histogram_quantile(0.99, sum by (model, version, le) "
            f"(rate(modelfleet_request_duration_seconds_bucket{{{sel}}}[5m]))) "
            f"> {latency_p99_ms / 1000:g}",
            "warning",
            f"{{{{ $labels.model }}}}:{{{{ $labels.version }}}} p99 latency above "
            f"{latency_p99_ms:g} ms",
            "p99 is {{ $value | humanizeDuration }} over the last 5 minutes.",
            duration,
        ),
        _alert(
            "ModelfleetErrorRatio",
            f"sum by (model, version) (rate({errors}[5m])) "
            f"/ (sum by (model, version) (rate({requests}[5m])) > 0) > {error_ratio:g}",
            "critical",
            f"{{{{ $labels.model }}}}:{{{{ $labels.version }}}} more than "
            f"{error_ratio * 100:g}% of requests fail",
            "Server errors (5xx) are {{ $value | humanizePercentage }} of requests.",
            duration,
        ),
        _alert(
            "ModelfleetQueueSaturated",
            f"max by (model) (modelfleet_queue_depth{{{sel}}}) > {queue_depth:g}",
            "warning",
            f"{{{{ $labels.model }}}} queue above {queue_depth:g} requests",
            "{{ $value }} requests wait; add replicas or lower the load, full queues answer 503.",
            duration,
        ),
    ]


def _quality_rules(
    sel: str, drift_score: float, min_accuracy: float, min_feedback: int, duration: str
) -> list[dict[str, Any]]:
    failures = f"modelfleet_model_load_failures_total{{{sel}}}"
    return [
        _alert(
            "ModelfleetDrift",
            # PSI only: the KS statistic is on another scale and has no common threshold.
            "max by (model, version, feature) "
            f'(modelfleet_drift_score{{{sel},method="psi"}}) > {drift_score:g}',
            "warning",
            "{{ $labels.model }}:{{ $labels.version }} input drift on {{ $labels.feature }}",
            f"PSI {{{{ $value }}}} against the training profile (alerts above {drift_score:g}).",
            duration,
        ),
        _alert(
            "ModelfleetLowAccuracy",
            # A rolling accuracy over a handful of labels is noise: judge it only once
            # enough feedback has arrived.
            f"min by (model, version) (modelfleet_live_accuracy{{{sel}}}) < {min_accuracy:g} "
            f"and on (model, version) "
            f"sum by (model, version) (modelfleet_feedback_total{{{sel}}}) >= {min_feedback}",
            "critical",
            f"{{{{ $labels.model }}}}:{{{{ $labels.version }}}} live accuracy under "
            f"{min_accuracy:g}",
            "Accuracy from feedback labels is {{ $value }}; consider retraining.",
            duration,
        ),
        _alert(
            "ModelfleetLoadFailures",
            f"increase({failures}[{_LOAD_WINDOW}]) > 0 "
            f"or ({failures} > 0 unless {failures} offset {_LOAD_WINDOW})",
            "warning",
            "{{ $labels.model }}: a model load or hot swap failed",
            "The previous version keeps serving; see the server log.",
            None,
        ),
    ]


def alert_rules(
    model: str | None = None,
    *,
    latency_p99_ms: float = 100.0,
    error_ratio: float = 0.01,
    queue_depth: float = 100.0,
    drift_score: float = 0.2,
    min_accuracy: float = 0.8,
    min_feedback: int = 30,
    duration: str = "5m",
) -> list[dict[str, Any]]:
    """Rule groups: p99 latency, error ratio, queue saturation, drift, accuracy, load failures.

    ``model`` limits every rule to one model; ``drift_score`` is a PSI; ``min_feedback`` is
    how many feedback labels the live accuracy needs before it can alert; ``duration`` is
    how long a condition must hold (load failures alert at once).
    """
    _check_thresholds(
        latency_p99_ms, error_ratio, queue_depth, drift_score, min_accuracy, min_feedback, duration
    )
    sel = _selector(model)
    rules = [
        *_traffic_rules(sel, latency_p99_ms, error_ratio, queue_depth, duration),
        *_quality_rules(sel, drift_score, min_accuracy, min_feedback, duration),
    ]
    return [{"name": f"modelfleet.{model}" if model else "modelfleet", "rules": rules}]


def render_yaml(document: Any) -> str:
    """YAML text of a rules file or resource: keys in order, expressions kept on one line."""
    return yaml.safe_dump(document, sort_keys=False, width=1_000_000, allow_unicode=True)


def render_rules_file(groups: list[dict[str, Any]]) -> str:
    """A plain Prometheus rules file (``rule_files:``) holding ``groups``."""
    return render_yaml({"groups": groups})
