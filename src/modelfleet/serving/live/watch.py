"""Watching served models: predictions by request id, drift, feedback, live accuracy.

The hot path only appends what monitoring needs of a request (its id, time and predicted
classes, and its tensors only when sampled for drift or the log) to the model's pending
list. Every ``flush_interval_s`` the watcher swaps that list out and, a few hundred requests
at a time between answers, counts the predicted classes, feeds sampled rows to the drift
window and the prediction log; the rows go to the feedback store on the watch thread.
Drift scores are recomputed every ``drift_interval_s`` off the event loop; live accuracy
is re-read from the store after every feedback call and once a second (worker processes
share the store). When live accuracy of a cached model falls under the cache threshold its
cached outputs are dropped and caching stops until it recovers.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson

from modelfleet.errors import NotAClassifierError
from modelfleet.serving.cache import OutputCache
from modelfleet.serving.live.feedback import (
    Accuracy,
    ClassOf,
    FeedbackStore,
    PredictionStore,
    class_reader,
    encode_classes,
    parse_feedback,
)
from modelfleet.serving.metrics import ServingMetrics
from modelfleet.serving.settings import MonitoringConfig, WatchConfig
from modelfleet.signature import ArrayDict, Arrays, Signature
from modelfleet.stats import DriftWindow, drift_scores

logger = logging.getLogger(__name__)

# What a request leaves for monitoring: id, time, predicted classes (the first rows), how many
# rows it predicted, the inputs when sampled for drift, the inputs and outputs (first rows)
# when sampled for the log.
Recorded = tuple[
    str, float, np.ndarray[Any, Any] | None, int, Arrays | None, tuple[Arrays, Arrays] | None
]
T = TypeVar("T")
STATE_DIR_ENV = "MODELFLEET_STATE_DIR"
_PENDING_LIMIT = 200_000
_ACCURACY_EVERY_S = 1.0
_PRUNE_EVERY_S = 60.0
# Recorded requests are handled this many at a time (about 0.3 ms of work), the event loop
# answering requests in between: a busy second's worth never holds an answer up for long.
# (On a thread it would: the loop waits a whole GIL switch interval, 5 ms, to get it back.)
_CHUNK = 256


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


def _rotating_log(path: Path, config: MonitoringConfig) -> logging.Logger:
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


class Watchtower:
    """Every model watch of one server process, the feedback store and the logs."""

    def __init__(self, config: MonitoringConfig, metrics: ServingMetrics) -> None:
        self.config = config
        self.metrics = metrics
        self.watches: list[ModelWatch] = []
        self._owned_dir: str | None = None
        given = config.state_dir or os.environ.get(STATE_DIR_ENV)
        if given:
            self.state_dir = Path(given)
        else:
            self._owned_dir = tempfile.mkdtemp(prefix="modelfleet-state-")
            self.state_dir = Path(self._owned_dir)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelfleet-watch")
        self.store: PredictionStore | None = None
        self._predictions_log: logging.Logger | None = None
        self._feedback_log: logging.Logger | None = None
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._accuracy_at = 0.0
        self._prune_at = 0.0

    async def _on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def start(self) -> None:
        """Open the store and logs, then flush periodically."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = await self._on_thread(
            lambda: FeedbackStore(
                self.state_dir / "predictions.sqlite3",
                retention_s=self.config.retention_s,
                max_predictions=self.config.max_predictions,
                max_bytes=self.config.max_store_bytes,
                feedback_retention_s=self.config.feedback_retention_s,
            )
        )
        pid = os.getpid()
        self._predictions_log = _rotating_log(
            self.state_dir / f"predictions-{pid}.jsonl", self.config
        )
        self._feedback_log = _rotating_log(self.state_dir / f"feedback-{pid}.jsonl", self.config)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def watch(
        self,
        name: str,
        version: str,
        signature: Signature,
        profile: Mapping[str, Any] | None,
        config: WatchConfig,
        *,
        cache_threshold: float | None,
    ) -> ModelWatch:
        """A new watch for a model version being loaded."""
        watch = ModelWatch(
            name,
            version,
            signature,
            profile,
            config,
            self.metrics,
            cache_threshold=cache_threshold,
            log_sample=self.config.log_sample if self._predictions_log is not None else 0.0,
            record_rows=self.config.max_recorded_rows,
        )
        self.watches.append(watch)
        return watch

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.flush_interval_s)
            try:
                await self.flush()
                await self._periodic()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep watching; the next round retries
                logger.exception("monitoring round failed")

    async def flush(self) -> None:
        """Write every pending prediction now (feedback calls this before joining).

        The requests recorded since the last flush are handled in small chunks with the
        event loop free to answer requests in between; the store's insert runs on the
        watch thread.
        """
        async with self._flush_lock:
            rows: list[tuple[Any, ...]] = []
            for watch in list(self.watches):
                items = watch.drain()
                while items:
                    chunk = [items.popleft() for _ in range(min(_CHUNK, len(items)))]
                    rows.extend(watch.take(chunk, self._predictions_log))
                    await asyncio.sleep(0)  # answers first
                if watch.closed and not watch.pending:
                    self.watches.remove(watch)
            if rows and self.store is not None:
                evicted = await self._on_thread(self.store.add_predictions, rows)
                for model, count in evicted.items():
                    self.metrics.store_dropped.labels(model, "evicted").inc(count)

    async def _periodic(self) -> None:
        now = time.monotonic()
        for watch in self.watches:
            if watch.drift_due(now):
                window = watch.drift_inputs(now)
                profile = watch.profile
                assert profile is not None  # drift_due checked it
                scores = await asyncio.get_running_loop().run_in_executor(
                    None, drift_scores, profile, window
                )
                watch.publish_drift(scores)
        if now - self._accuracy_at >= _ACCURACY_EVERY_S:
            self._accuracy_at = now
            for watch in self.watches:
                if watch.classes_of is not None and not watch.closed:
                    await self.refresh_accuracy(watch)
        if now - self._prune_at >= _PRUNE_EVERY_S and self.store is not None:
            self._prune_at = now
            await self._on_thread(self.store.prune)

    async def refresh_accuracy(self, watch: ModelWatch) -> None:
        """Re-read live accuracy; suspend or resume the cache when it crosses the threshold."""
        assert self.store is not None
        accuracy = await self._on_thread(
            self.store.accuracy, watch.name, watch.version, watch.config.accuracy_window
        )
        if watch.publish_accuracy(accuracy) and watch.gate is not None:
            if watch.gate.suspended:
                logger.warning(
                    "%s:%s: cache suspended: %s", watch.name, watch.version, watch.gate.reason
                )
                await self._drop_cache(watch)
            else:
                logger.info(
                    "%s:%s: live accuracy recovered; cache resumed", watch.name, watch.version
                )

    @staticmethod
    async def _drop_cache(watch: ModelWatch) -> None:
        if watch.cache is not None:
            dropped = await watch.cache.drop()
            logger.info("%s:%s: dropped %d cached outputs", watch.name, watch.version, dropped)

    async def feedback(self, watch: ModelWatch, body: bytes) -> dict[str, Any]:
        """Join a feedback body to recorded predictions; live accuracy after it."""
        ids, labels = parse_feedback(body)
        if watch.classes_of is None:
            raise NotAClassifierError(
                f"model {watch.name!r} has no class output, so labels cannot be compared",
                hint="feedback and live accuracy need a classifier (a label output or one "
                "score matrix)",
            )
        await self.flush()
        assert self.store is not None
        result = await self._on_thread(
            self.store.add_feedback, watch.name, ids, labels, watch.class_kind
        )
        by_version = {w.version: w for w in self.watches if w.name == watch.name}
        for version, (rows, correct) in result.per_version.items():
            target = by_version.get(version)
            if target is not None:
                target.feedback_counted(rows, correct)
        if self._feedback_log is not None:
            self._feedback_log.info(
                orjson.dumps(
                    {"ts": time.time(), "model": watch.name, "ids": ids, "labels": labels}
                ).decode()
            )
        await self.refresh_accuracy(watch)
        return {
            "model": watch.name,
            "accepted": result.accepted,
            "rows": result.rows,
            "correct": result.correct,
            "live_accuracy": {
                "version": watch.version,
                "value": watch.accuracy.value,
                "labelled_requests": watch.accuracy.requests,
                "window": watch.config.accuracy_window,
            },
            "cache": watch.status()["cache"],
        }

    async def close(self) -> None:
        """Flush what is pending, close the store, remove a temporary state directory."""
        if self._task is not None:
            self._task.cancel()
        try:
            await self.flush()
        finally:
            if self.store is not None:
                await self._on_thread(self.store.close)
            self._thread.shutdown(wait=True)
            for log in (self._predictions_log, self._feedback_log):
                for handler in list(log.handlers) if log else []:
                    handler.close()
                    log.removeHandler(handler)  # type: ignore[union-attr]
            if self._owned_dir:
                shutil.rmtree(self._owned_dir, ignore_errors=True)
