"""``GET /monitor/summary``: per served model, the figures people look at, as JSON.

The figures come from the server's own Prometheus exposition (so with several worker
processes they cover all of them) and from the repository (versions, stages, state).
Rates, error ratio, cache hit ratio and p50/p99 are over the last ``window_s`` seconds:
each call keeps a snapshot of the counters and compares with the one taken about a window
ago (before that, with the server's start). ``modelfleet status URL`` and the page at ``/``
show this document.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from modelfleet import __version__
from modelfleet.stats import histogram_quantile, increase

Key = tuple[str, str]  # (model, version)


@dataclass
class Counts:
    """Cumulative counters of one model version at one moment."""

    requests: float = 0.0
    errors: float = 0.0  # 5xx
    rejected: float = 0.0  # 4xx
    hits: float = 0.0
    misses: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count

    def minus(self, old: Counts | None) -> Counts:
        """The change since ``old``; counters that went down (a restart) count from zero."""
        if old is None:
            return self

        return Counts(
            increase(self.requests, old.requests),
            increase(self.errors, old.errors),
            increase(self.rejected, old.rejected),
            increase(self.hits, old.hits),
            increase(self.misses, old.misses),
            {le: increase(c, old.buckets.get(le, 0.0)) for le, c in self.buckets.items()},
        )


@dataclass
class Scrape:
    """Everything read from one exposition."""

    counts: dict[Key, Counts] = field(default_factory=dict)
    gauges: dict[str, dict[tuple[str, ...], float]] = field(default_factory=dict)
    per_class: dict[Key, dict[str, float]] = field(default_factory=dict)
    feedback: dict[Key, dict[str, float]] = field(default_factory=dict)
    loads: dict[str, dict[str, float]] = field(default_factory=dict)


_GAUGES = {
    "modelfleet_queue_depth": ("model", "version"),
    "modelfleet_inflight_requests": ("model", "version"),
    "modelfleet_live_accuracy": ("model", "version"),
    "modelfleet_cache_enabled": ("model", "version"),
    "modelfleet_drift_score": ("model", "version", "feature", "method"),
}


def _requests(scrape: Scrape, key: Key, labels: dict[str, str], value: float) -> None:
    counts = scrape.counts.setdefault(key, Counts())
    counts.requests += value
    status = labels.get("status", "")
    if status.startswith("5"):
        counts.errors += value
    elif status.startswith("4"):
        counts.rejected += value


def _latency(scrape: Scrape, key: Key, labels: dict[str, str], value: float) -> None:
    buckets = scrape.counts.setdefault(key, Counts()).buckets
    le = float(labels["le"])
    buckets[le] = buckets.get(le, 0.0) + value


def _cache(scrape: Scrape, key: Key, labels: dict[str, str], value: float) -> None:
    counts = scrape.counts.setdefault(key, Counts())
    if labels.get("result") in ("hit", "shared"):
        counts.hits += value
    elif labels.get("result") == "miss":
        counts.misses += value


def _per_class(scrape: Scrape, key: Key, labels: dict[str, str], value: float) -> None:
    scrape.per_class.setdefault(key, {})[labels.get("class", "")] = value


def _feedback(scrape: Scrape, key: Key, labels: dict[str, str], value: float) -> None:
    scrape.feedback.setdefault(key, {})[labels.get("result", "")] = value


def _loads(scrape: Scrape, key: Key, labels: dict[str, str], value: float, name: str) -> None:
    # Summed over the model's versions: every load (and failure) of the served name.
    loads = scrape.loads.setdefault(key[0], {})
    kind = name.rsplit("_", 1)[-1]
    loads[kind] = loads.get(kind, 0.0) + value


_READERS = {
    "modelfleet_requests_total": _requests,
    "modelfleet_request_duration_seconds_bucket": _latency,
    "modelfleet_cache_lookups_total": _cache,
    "modelfleet_predictions_total": _per_class,
    "modelfleet_feedback_total": _feedback,
}
_LOADS = (
    "modelfleet_model_load_duration_seconds_sum",
    "modelfleet_model_load_duration_seconds_count",
    "modelfleet_model_load_failures_total",
)


def parse_exposition(text: str) -> Scrape:
    """Read the modelfleet series of a Prometheus text exposition."""
    scrape = Scrape()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, float(sample.value)
            key = (labels.get("model", ""), labels.get("version", ""))
            reader = _READERS.get(name)
            if reader is not None:
                reader(scrape, key, labels, value)
            elif name in _LOADS:
                _loads(scrape, key, labels, value, name)
            elif name in _GAUGES:
                label_key = tuple(labels.get(n, "") for n in _GAUGES[name])
                scrape.gauges.setdefault(name, {})[label_key] = value
    return scrape


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 4)


class Summarizer:
    """Turns expositions into summaries over a sliding window (one per server process)."""

    def __init__(self, window_s: float, clock: Any = time.monotonic) -> None:
        self.window_s = window_s
        self.clock = clock
        self.started = clock()
        self._snapshots: deque[tuple[float, dict[Key, Counts]]] = deque()

    def _baseline(self, now: float) -> tuple[float, dict[Key, Counts] | None]:
        old = [s for s in self._snapshots if s[0] <= now - self.window_s]
        if old:
            return old[-1]
        if self._snapshots:
            return self._snapshots[0]
        return self.started, None

    def summarize(self, repository: Any, exposition: bytes) -> dict[str, Any]:
        """The summary document of every served model."""
        now = self.clock()
        scrape = parse_exposition(exposition.decode())
        since, baseline = self._baseline(now)
        self._snapshots.append((now, scrape.counts))
        while self._snapshots and self._snapshots[0][0] < now - 3 * self.window_s:
            self._snapshots.popleft()
        elapsed = max(now - since, 1e-9)
        models = []
        for handle in repository.handles.values():
            models.append(self._model(handle, scrape, baseline, elapsed))
        return {
            "server": {
                "name": "modelfleet",
                "version": __version__,
                "uptime_s": round(now - self.started, 3),
                "time": time.time(),
            },
            "window_s": round(elapsed, 3),
            "models": models,
        }

    @staticmethod
    def _model(
        handle: Any, scrape: Scrape, baseline: dict[Key, Counts] | None, elapsed: float
    ) -> dict[str, Any]:
        instance = handle.current
        name = handle.name
        doc: dict[str, Any] = {
            "name": name,
            "ref": handle.config.ref,
            "state": handle.state,
            "reason": handle.last_error or "",
            "swaps": handle.swaps,
            "version": None,
        }
        gauges = scrape.gauges
        for field_name, metric in (
            ("queue_depth", "modelfleet_queue_depth"),
            ("inflight", "modelfleet_inflight_requests"),
        ):  # every version of the name (an old one may still finish work after a swap)
            doc[field_name] = sum(v for k, v in gauges.get(metric, {}).items() if k[0] == name)
        loads = scrape.loads.get(name, {})
        doc["load_failures"] = loads.get("total", 0.0)
        count = loads.get("count", 0.0)
        doc["load_seconds_mean"] = loads.get("sum", 0.0) / count if count else None
        if instance is None:
            return doc
        version = instance.version
        key = (name, version)
        source = instance.source
        doc.update(
            version=version,
            variant=source.variant,
            stages=list(source.stages),
            sha256=source.sha256,
            registered_metrics=source.metrics,
        )
        total = scrape.counts.get(key, Counts())
        delta = total.minus((baseline or {}).get(key))
        doc.update(
            requests=total.requests,
            errors=total.errors,
            rps=round(delta.requests / elapsed, 3),
            error_ratio=delta.errors / delta.requests if delta.requests else 0.0,
            rejected_ratio=delta.rejected / delta.requests if delta.requests else 0.0,
            p50_ms=_ms(histogram_quantile(0.5, delta.buckets)),
            p99_ms=_ms(histogram_quantile(0.99, delta.buckets)),
        )
        lookups = delta.hits + delta.misses
        doc["cache_hit_ratio"] = delta.hits / lookups if lookups else None
        watch = instance.watch
        status = watch.status() if watch is not None else {}
        doc["cache"] = status.get("cache", "on" if instance.cache is not None else "off")
        doc["cache_reason"] = status.get("cache_reason", "")
        drift = gauges.get("modelfleet_drift_score", {})
        psi = {f: v for (m, ver, f, meth), v in drift.items() if (m, ver, meth) == (*key, "psi")}
        ks = {f: v for (m, ver, f, meth), v in drift.items() if (m, ver, meth) == (*key, "ks")}
        doc["drift"] = {
            "profile": status.get("profile", False),
            "rows": status.get("drift_rows", 0),
            "max_psi": max(psi.values(), default=None),
            "max_ks": max(ks.values(), default=None),
            "psi": psi,
            "ks": ks,
        }
        feedback = scrape.feedback.get(key, {})
        doc["accuracy"] = {
            "classifier": status.get("classifier", False),
            "live": gauges.get("modelfleet_live_accuracy", {}).get(key),
            "labelled_requests": status.get("labelled_requests", 0),
            "labelled_rows": feedback.get("correct", 0.0) + feedback.get("wrong", 0.0),
            "registered": source.metrics.get("accuracy"),
        }
        doc["predictions"] = scrape.per_class.get(key, {})
        return doc
