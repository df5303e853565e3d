"""Every model watch of one server process, its link to the predictions store, and the logs.

The hot path only appends to a model's pending list (see :mod:`.watch`). Every
``flush_interval_s`` the tower swaps those lists out, turns them into store rows a few
hundred requests at a time between answers, and writes them through the :class:`StateLink`
on its own thread. Live accuracy is re-read from the store every ``state.refresh_s``: with a
shared store (PostgreSQL or Redis) every replica reads the same fleet-wide figure, so all of
them suspend or resume the output cache within one refresh of a threshold crossing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from modelfleet.errors import (
    NotAClassifierError,
    StateUnavailableError,
    UnknownRequestIdError,
)
from modelfleet.serving.live.feedback import FeedbackResult, parse_feedback
from modelfleet.serving.live.link import StateLink
from modelfleet.serving.live.stores import STATE_URL_ENV, describe, open_store
from modelfleet.serving.live.watch import ModelWatch, rotating_log
from modelfleet.serving.metrics import ServingMetrics
from modelfleet.serving.settings import MonitoringConfig, StateConfig, WatchConfig
from modelfleet.signature import Signature
from modelfleet.stats import drift_scores

logger = logging.getLogger(__name__)

STATE_DIR_ENV = "MODELFLEET_STATE_DIR"
_PRUNE_EVERY_S = 60.0
# Recorded requests are handled this many at a time (about 0.3 ms of work), the event loop
# answering requests in between: a busy second's worth never holds an answer up for long.
# (On a thread it would: the loop waits a whole GIL switch interval, 5 ms, to get it back.)
_CHUNK = 256


class Watchtower:
    """Every model watch of one server process, the predictions store and the logs."""

    def __init__(
        self,
        config: MonitoringConfig,
        metrics: ServingMetrics,
        state: StateConfig | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        state = state or StateConfig()
        if state.url is None and os.environ.get(STATE_URL_ENV):
            state = state.model_copy(update={"url": os.environ[STATE_URL_ENV]})
        self.state = state
        self.watches: list[ModelWatch] = []
        self._owned_dir: str | None = None
        given = config.state_dir or os.environ.get(STATE_DIR_ENV)
        if given:
            self.state_dir = Path(given)
        else:
            self._owned_dir = tempfile.mkdtemp(prefix="modelfleet-state-")
            self.state_dir = Path(self._owned_dir)
        self.link = StateLink(state, metrics)
        self._predictions_log: logging.Logger | None = None
        self._feedback_log: logging.Logger | None = None
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._accuracy_at = 0.0
        self._prune_at = 0.0

    @property
    def shared(self) -> bool:
        """True when the store is shared beyond this server (PostgreSQL or Redis)."""
        return self.link.backend != "sqlite"

    async def start(self) -> None:
        """Open the store and logs, then flush periodically."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        await self.link.open(lambda: open_store(self.state, self.config, self.state_dir))
        logger.info("predictions store: %s", describe(self.state.url))
        pid = os.getpid()
        self._predictions_log = rotating_log(
            self.state_dir / f"predictions-{pid}.jsonl", self.config
        )
        self._feedback_log = rotating_log(self.state_dir / f"feedback-{pid}.jsonl", self.config)
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
        link's thread. While the backend is unavailable the rows are dropped and counted.
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
            if not rows:
                return
            try:
                evicted = await self.link.call("add_predictions", rows)
            except StateUnavailableError:
                lost: dict[str, int] = {}
                for row in rows:
                    lost[row[0]] = lost.get(row[0], 0) + int(row[5])
                for model, count in lost.items():
                    self.metrics.store_dropped.labels(model, "backend_down").inc(count)
                return
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
        if now - self._accuracy_at >= self.state.refresh_s:
            self._accuracy_at = now
            for watch in self.watches:
                if watch.classes_of is not None and not watch.closed:
                    try:
                        await self.refresh_accuracy(watch)
                    except StateUnavailableError:
                        break  # keep the last figure; the link logged the outage
        if now - self._prune_at >= _PRUNE_EVERY_S:
            self._prune_at = now
            with contextlib.suppress(StateUnavailableError):  # pruned on a later round
                await self.link.call("prune")

    async def refresh_accuracy(self, watch: ModelWatch) -> None:
        """Re-read live accuracy; suspend or resume the cache when it crosses the threshold."""
        accuracy = await self.link.call(
            "accuracy", watch.name, watch.version, watch.config.accuracy_window
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
        """Join a feedback body to recorded predictions; live accuracy after it.

        Raises :class:`StateUnavailableError` (503 with Retry-After) while the store's
        backend is unavailable: nothing is written, the client sends it again later.
        """
        ids, labels = parse_feedback(body)
        if watch.classes_of is None:
            raise NotAClassifierError(
                f"model {watch.name!r} has no class output, so labels cannot be compared",
                hint="feedback and live accuracy need a classifier (a label output or one "
                "score matrix)",
            )
        await self.flush()
        try:
            result: FeedbackResult = await self.link.call(
                "add_feedback", watch.name, ids, labels, watch.class_kind
            )
        except UnknownRequestIdError:
            if not self.shared:
                raise
            # Another replica may have answered moments ago and not flushed yet: give it
            # two of its flushes, then look again (a second miss is a real 404).
            await asyncio.sleep(min(2 * self.config.flush_interval_s + 0.05, 5.0))
            result = await self.link.call("add_feedback", watch.name, ids, labels, watch.class_kind)
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
        # The labels are stored; when the figure cannot be read, it follows at the next refresh.
        with contextlib.suppress(StateUnavailableError):
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
            await self.link.close()
            for log in (self._predictions_log, self._feedback_log):
                for handler in list(log.handlers) if log else []:
                    handler.close()
                    log.removeHandler(handler)  # type: ignore[union-attr]
            if self._owned_dir:
                shutil.rmtree(self._owned_dir, ignore_errors=True)
