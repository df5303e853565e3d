"""What a release track served over a window, read from its pods' Prometheus expositions.

Each pod's ``/metrics`` holds cumulative counters per model version: requests by status
(``modelfleet_requests_total``), the latency histogram
(``modelfleet_request_duration_seconds``) and labelled rows by result
(``modelfleet_feedback_total``). A window's figures are the difference between two reads,
pod by pod, summed over the track's pods. A pod whose counters went down restarted, and a
pod first seen at the end of the window started during it: both count from zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelfleet.errors import DeployError, MissingDependencyError
from modelfleet.stats import histogram_quantile, increase


@dataclass
class Counters:
    """Cumulative counters of one model version in one exposition (or summed over several)."""

    requests: float = 0.0
    errors: float = 0.0  # answered with a 5xx status
    correct: float = 0.0  # labelled rows the version predicted right
    wrong: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count

    def since(self, old: Counters | None) -> Counters:
        """The change since ``old``; a counter that went down (a restart) counts from zero."""
        if old is None:
            return Counters(self.requests, self.errors, self.correct, self.wrong, {**self.buckets})

        return Counters(
            increase(self.requests, old.requests),
            increase(self.errors, old.errors),
            increase(self.correct, old.correct),
            increase(self.wrong, old.wrong),
            {le: increase(n, old.buckets.get(le, 0.0)) for le, n in self.buckets.items()},
        )

    def add(self, other: Counters) -> None:
        """Add ``other`` into these counters."""
        self.requests += other.requests
        self.errors += other.errors
        self.correct += other.correct
        self.wrong += other.wrong
        for le, n in other.buckets.items():
            self.buckets[le] = self.buckets.get(le, 0.0) + n


def exposition_parser() -> Any:
    """prometheus_client's text parser (it comes with the serving extra)."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError as exc:
        raise MissingDependencyError(
            "prometheus-client", "serve", purpose="read the servers' metrics"
        ) from exc
    return text_string_to_metric_families


def read_exposition(text: str, model: str, version: str) -> Counters:
    """The counters of ``model`` at ``version`` in a Prometheus text exposition."""
    counters = Counters()
    try:
        families = list(exposition_parser()(text))
    except ValueError as exc:
        raise DeployError(
            f"cannot read a Prometheus exposition: {exc}",
            hint="the address must be a modelfleet server's /metrics",
        ) from exc
    for family in families:
        for sample in family.samples:
            labels = sample.labels
            if labels.get("model") != model or labels.get("version") != version:
                continue
            value = float(sample.value)
            if sample.name == "modelfleet_requests_total":
                counters.requests += value
                if labels.get("status", "").startswith("5"):
                    counters.errors += value
            elif sample.name == "modelfleet_request_duration_seconds_bucket":
                le = float(labels["le"])  # one series per endpoint: summed per bucket
                counters.buckets[le] = counters.buckets.get(le, 0.0) + value
            elif sample.name == "modelfleet_feedback_total":
                if labels.get("result") == "correct":
                    counters.correct += value
                elif labels.get("result") == "wrong":
                    counters.wrong += value
    return counters


def window_counters(start: Mapping[str, Counters], end: Mapping[str, Counters]) -> Counters:
    """What the pods of ``end`` counted since ``start`` (both keyed by pod), summed."""
    total = Counters()
    for pod, now in end.items():
        total.add(now.since(start.get(pod)))
    return total


quantile = histogram_quantile  # the name the judge's figures read it by


@dataclass(frozen=True)
class Figures:
    """One track over the window: what the judge compares."""

    version: str
    pods: int
    seconds: float
    requests: float
    errors: float
    correct: float
    wrong: float
    p99_s: float | None

    @classmethod
    def of(cls, version: str, counters: Counters, *, pods: int, seconds: float) -> Figures:
        """Figures from a window's counters."""
        return cls(
            version=version,
            pods=pods,
            seconds=seconds,
            requests=counters.requests,
            errors=counters.errors,
            correct=counters.correct,
            wrong=counters.wrong,
            p99_s=quantile(0.99, counters.buckets),
        )

    @property
    def error_ratio(self) -> float:
        """5xx answers per request (0 without requests)."""
        return self.errors / self.requests if self.requests else 0.0

    @property
    def labelled(self) -> float:
        """Rows whose true label arrived as feedback in the window."""
        return self.correct + self.wrong

    @property
    def accuracy(self) -> float | None:
        """Live accuracy over the window's labelled rows (None without any)."""
        return self.correct / self.labelled if self.labelled else None

    @property
    def p99_ms(self) -> float | None:
        """p99 latency in milliseconds."""
        return None if self.p99_s is None else self.p99_s * 1000

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready values."""
        return {
            "version": self.version,
            "pods": self.pods,
            "seconds": round(self.seconds, 3),
            "requests": self.requests,
            "errors": self.errors,
            "error_ratio": self.error_ratio,
            "p99_ms": None if self.p99_ms is None else round(self.p99_ms, 3),
            "labelled": self.labelled,
            "accuracy": self.accuracy,
        }
