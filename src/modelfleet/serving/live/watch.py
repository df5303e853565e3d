"""Watching one served model version: predictions by request id, drift, live accuracy.

The hot path only appends what monitoring needs of a request (its id, time and predicted
classes, and its tensors only when sampled for drift or the log) to the model's pending
list; the :class:`~modelfleet.serving.live.tower.Watchtower` takes those lists every flush,
counts the predicted classes, feeds sampled rows to the drift window and the prediction log,
and writes the rows to the predictions store. Live accuracy read back from the store decides
the cache gate: when it falls under the cache threshold the model's cached outputs are
dropped and caching stops until it recovers.
"""

from __future__ import annotations

import logging
import logging.handlers
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from modelfleet.serving.cache import OutputCache
from modelfleet.serving.live.feedback import (
    Accuracy,
    ClassOf,
    class_reader,
    encode_classes,
)
from modelfleet.serving.metrics import ServingMetrics
from modelfleet.serving.settings import MonitoringConfig, WatchConfig
from modelfleet.signature import ArrayDict, Arrays, Signature
from modelfleet.stats import DriftWindow

logger = logging.getLogger(__name__)

# What a request leaves for monitoring: id, time, predicted classes (the first rows), how many
# rows it predicted, the inputs when sampled for drift, the inputs and outputs (first rows)
# when sampled for the log.
Recorded = tuple[
    str, float, np.ndarray[Any, Any] | None, int, Arrays | None, tuple[Arrays, Arrays] | None
]
_PENDING_LIMIT = 200_000


@dataclass
class CacheGate:
    """Whether a model's output cache may answer, decided by live accuracy."""

    threshold: float
    suspended: bool = False
    reason: str = ""


class ModelWatch:
    """What is watched for one served model version."""

    def __init__(
        self,
        name: str,
        version: str,
        signature: Signature,
        profile: Mapping[str, Any] | None,
        config: WatchConfig,
        metrics: ServingMetrics,
        *,
        cache_threshold: float | None,
        log_sample: float = 0.0,
        record_rows: int = 1024,
    ) -> None:
        self.name = name
        self.version = version
        self.config = config
        self.metrics = metrics
        self.profile = profile
        self.classes_of: ClassOf | None
        self.classes_of, self.class_kind = class_reader(signature)
        self.pending: deque[Recorded] = deque()
        self.log_sample = log_sample
        self.record_rows = record_rows
        self._drift_sample = config.drift_sample if profile is not None else 0.0
        self.dropped = 0
        # Evenly spaced sampling (no RNG: the image leaves numpy.random out).
        self._drift_credit = 0.0
        self._log_credit = 0.0
        self.window = DriftWindow(config.drift_window_rows)
        self.drift: dict[tuple[str, str], float] = {}
        self._drift_seen = 0
        self._drift_at = 0.0
        self.accuracy = Accuracy(None, 0, 0)
        self.gate = CacheGate(cache_threshold) if cache_threshold is not None else None
        self.closed = False
        self.cache: OutputCache | None = None  # set by the instance that owns the cache
        self._class_children: dict[str, Any] = {}
        self._drift_children: dict[tuple[str, str], Any] = {}
        self._accuracy_gauge: Any = None  # exported once there is a first label
        self._cache_gauge = metrics.cache_enabled.labels(name, version)
        self._cache_gauge.set(1 if self.gate is not None else 0)

    @property
    def suspended(self) -> bool:
        """True while live accuracy keeps the output cache off."""
        return self.gate is not None and self.gate.suspended

    def record(self, request_id: str, inputs: Arrays, outputs: Arrays) -> None:
        """Hot path: keep what monitoring needs of an answered request until the next flush.

        Only the id, the time and the predicted classes are kept, plus the inputs of the
        rows sampled for drift and the log: a request's tensors are freed with the request,
        not in bulk at the next flush (which showed as milliseconds at p99). Classes and
        logged tensors are cut to ``record_rows`` rows: one huge request cannot fill the store.
        """
        if len(self.pending) >= _PENDING_LIMIT:
            self.dropped += 1  # the flusher is far behind; keep memory bounded
            return
        classes = self.classes_of(outputs) if self.classes_of is not None else None
        rows = 0 if classes is None else len(classes)
        if classes is not None and rows > self.record_rows:  # a copy: the output can go
            classes = classes[: self.record_rows].copy()
        drift = None
        if self._drift_sample:
            self._drift_credit += self._drift_sample
            if self._drift_credit >= 1.0:
                self._drift_credit -= 1.0
                drift = inputs
        logged = None
        if self.log_sample:
            self._log_credit += self.log_sample
            if self._log_credit >= 1.0:
                self._log_credit -= 1.0
                logged = (_head(inputs, self.record_rows), _head(outputs, self.record_rows))
        self.pending.append((request_id, time.time(), classes, rows, drift, logged))

    def drain(self) -> deque[Recorded]:
        """Hand the pending requests over (O(1)); :meth:`take` works on them."""
        items, self.pending = self.pending, deque()
        return items

    def take(self, items: Iterable[Recorded], log: logging.Logger | None) -> list[tuple[Any, ...]]:
        """Count classes, feed drift and log; returns the rows for the store."""
        rows: list[tuple[Any, ...]] = []
        predicted: list[np.ndarray[Any, Any]] = []
        over = 0
        for rid, ts, classes, count, drift, logged in items:
            if drift is not None:
                self.window.add(drift)
            if classes is not None:
                rows.append((self.name, rid, self.version, ts, encode_classes(classes), count))
                predicted.append(classes)
                over += count - len(classes)
            if logged is not None and log is not None:
                log.info(_log_line(self.name, self.version, rid, ts, *logged))
        if predicted:
            self._count(predicted)
        if over:
            self.metrics.store_dropped.labels(self.name, "over_cap").inc(over)
        return rows

    def _count(self, predicted: list[np.ndarray[Any, Any]]) -> None:
        """Predictions per class: one count for the whole flush, not one per request."""
        labels, counts = np.unique(np.concatenate(predicted).astype(str), return_counts=True)
        for label, count in zip(labels.tolist(), counts.tolist(), strict=True):
            child = self._class_children.get(label)
            if child is None:
                child = self._class_children[label] = self.metrics.predictions.labels(
                    self.name, self.version, label
                )
            child.inc(count)

    def drift_due(self, now: float) -> bool:
        """True when enough new rows arrived since the last drift computation."""
        return (
            self.profile is not None
            and self.window.rows >= self.config.drift_min_rows
            and self.window.seen != self._drift_seen
            and now - self._drift_at >= self.config.drift_interval_s
        )

    def drift_inputs(self, now: float) -> ArrayDict:
        """A copy of the window to score off the event loop."""
        self._drift_seen, self._drift_at = self.window.seen, now
        return {k: v.copy() for k, v in self.window.arrays().items()}

    def publish_drift(self, scores: dict[tuple[str, str], float]) -> None:
        """Export fresh drift scores."""
        self.drift = scores
        for key, score in scores.items():
            child = self._drift_children.get(key)
            if child is None:
                child = self._drift_children[key] = self.metrics.drift.labels(
                    self.name, self.version, key[0], key[1]
                )
            child.set(score)

    def publish_accuracy(self, accuracy: Accuracy) -> bool:
        """Export live accuracy; returns True when the cache gate changed."""
        self.accuracy = accuracy
        if accuracy.value is not None:
            if self._accuracy_gauge is None:
                self._accuracy_gauge = self.metrics.live_accuracy.labels(self.name, self.version)
            self._accuracy_gauge.set(accuracy.value)
        gate = self.gate
        if gate is None or accuracy.value is None:
            return False
        if accuracy.requests < self.config.min_labels:
            return False
        low = accuracy.value < gate.threshold
        if low == gate.suspended:
            return False
        gate.suspended = low
        gate.reason = (
            f"live accuracy {accuracy.value:.3f} < {gate.threshold:g} over "
            f"{accuracy.requests} labelled requests"
            if low
            else ""
        )
        self._cache_gauge.set(0 if low else 1)
        return True

    def feedback_counted(self, rows: int, correct: int) -> None:
        """Count labelled rows."""
        self.metrics.feedback.labels(self.name, self.version, "correct").inc(correct)
        self.metrics.feedback.labels(self.name, self.version, "wrong").inc(rows - correct)

    def status(self) -> dict[str, Any]:
        """Drift, accuracy and cache state for the summary."""
        psi = {f: s for (f, m), s in self.drift.items() if m == "psi"}
        ks = {f: s for (f, m), s in self.drift.items() if m == "ks"}
        return {
            "classifier": self.classes_of is not None,
            "profile": self.profile is not None,
            "drift_rows": self.window.rows,
            "drift_psi": psi,
            "drift_ks": ks,
            "drift_max_psi": max(psi.values(), default=None),
            "live_accuracy": self.accuracy.value,
            "labelled_requests": self.accuracy.requests,
            "cache": ("off" if self.gate is None else "suspended" if self.gate.suspended else "on"),
            "cache_reason": self.gate.reason if self.gate else "",
        }


def _head(arrays: Arrays, rows: int) -> Arrays:
    """The first ``rows`` rows of each tensor (copies, so the request's tensors can go)."""
    return {k: v[:rows].copy() if v.ndim and len(v) > rows else v for k, v in arrays.items()}


def _log_line(name: str, version: str, rid: str, ts: float, inputs: Arrays, outputs: Arrays) -> str:
    return orjson.dumps(
        {
            "ts": ts,
            "model": name,
            "version": version,
            "id": rid,
            "inputs": {k: v.tolist() for k, v in inputs.items()},
            "outputs": {k: v.tolist() for k, v in outputs.items()},
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    ).decode()


def rotating_log(path: Path, config: MonitoringConfig) -> logging.Logger:
    log = logging.getLogger(f"modelfleet.watch.{path}")
    log.propagate = False
    log.setLevel(logging.INFO)
    if not log.handlers:
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=config.log_max_bytes, backupCount=config.log_backups
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    return log
