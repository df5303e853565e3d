"""A loaded model version: its session, queue, batcher and cache, and how a request runs on it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelfleet.errors import DeadlineExceededError, UnavailableError
from modelfleet.serving.batcher import Batcher
from modelfleet.serving.cache import Cache, OutputCache
from modelfleet.serving.live.watch import ModelWatch
from modelfleet.serving.metrics import ModelMetrics, ServingMetrics
from modelfleet.serving.runner import OnnxRunner, Runner
from modelfleet.serving.scheduler import STARTED, Scheduler, WorkItem
from modelfleet.serving.settings import ModelConfig
from modelfleet.signature import STRING, ArrayDict, Signature

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSource:
    """What was resolved for loading: identity, the graph and what the registry knows."""

    name: str
    version: str
    variant: str
    sha256: str
    graph: bytes
    origin: str
    metrics: dict[str, float] = field(default_factory=dict)
    stages: tuple[str, ...] = ()
    ms_per_row: float | None = None
    profile: dict[str, Any] | None = None  # training data profile, for drift


def _batchable(signature: Signature) -> bool:
    return all(s.has_batch_axis for s in (*signature.inputs, *signature.outputs))


def warmup_inputs(signature: Signature) -> ArrayDict:
    """One zero-valued row per input, to run before a model is declared ready."""
    arrays: ArrayDict = {}
    for spec in signature.inputs:
        shape = tuple(1 if d is None else d for d in spec.shape)
        if spec.dtype == STRING:
            arrays[spec.name] = np.full(shape, "", dtype=object)
        else:
            arrays[spec.name] = np.zeros(shape, dtype=spec.numpy_dtype)
    return arrays


class ModelInstance:
    """One model version ready to serve; create it inside the server's event loop."""

    def __init__(
        self,
        source: ModelSource,
        config: ModelConfig,
        metrics: ServingMetrics,
        *,
        cache_backend: Cache | None,
        runner: Runner | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.config = config
        self.name = source.name
        self.version = source.version
        self.runner = runner or OnnxRunner(source.graph, threads=config.threads)
        self.signature = self.runner.signature
        self.batchable = _batchable(self.signature) and config.batching.enabled
        self.metrics: ModelMetrics = metrics.for_model(self.name, self.version)
        self.scheduler = Scheduler(
            self.name,
            config.scheduler,
            chunk_rows=config.batching.max_batch_rows if self.batchable else None,
            cost_per_row=(source.ms_per_row or 0.01) / 1000,
            clock=clock,
        )
        self.batcher = Batcher(
            self.scheduler,
            self.runner,
            config.batching,
            self.metrics,
            batchable=self.batchable,
            cpu_timing=config.threads == 1,
            clock=clock,
        )
        self.cache = (
            OutputCache(cache_backend, source.sha256, self.metrics)
            if cache_backend is not None
            else None
        )
        self.watch: ModelWatch | None = None  # set by the repository when watched
        self.inflight = 0
        self._idle: asyncio.Event | None = None
        self._checks = [(s.name, s.numpy_dtype, s.shape) for s in self.signature.inputs]
        self._info = metrics.info.labels(
            self.name, self.version, source.variant, source.sha256[:16]
        )

    @property
    def ref(self) -> str:
        """``name:version`` of what this instance serves."""
        return f"{self.name}:{self.version}"

    def start(self) -> None:
        """Start the batcher; call from the running event loop."""
        self._idle = asyncio.Event()
        self._idle.set()
        self.batcher.start()
        self._info.set(1)

    async def warm_up(self) -> None:
        """Run one request end to end so the first client does not pay for lazy set-up."""
        await self.infer(warmup_inputs(self.signature), 1, use_cache=False)

    async def infer(
        self,
        inputs: ArrayDict,
        rows: int,
        *,
        outputs: Sequence[str] | None = None,
        priority: int = 0,
        timeout_s: float | None = None,
        use_cache: bool = True,
    ) -> ArrayDict:
        """Run validated inputs through cache, queue and batcher; returns every output."""
        self._enter()
        try:
            cache = self.cache
            if cache is not None and use_cache and not (self.watch and self.watch.suspended):
                return await cache.fetch(
                    inputs, outputs, lambda: self._queued(inputs, rows, priority, timeout_s)
                )
            return await self._queued(inputs, rows, priority, timeout_s)
        finally:
            self._leave()

    def _enter(self) -> None:
        # Gauges are refreshed from these counters periodically, not per request.
        self.inflight += 1
        if self._idle is not None:
            self._idle.clear()

    def _leave(self) -> None:
        self.inflight -= 1
        if self.inflight == 0 and self._idle is not None:
            self._idle.set()

    def refresh_gauges(self) -> None:
        """Publish in-flight requests and queue depth."""
        self.metrics.inflight.set(self.inflight)
        self.metrics.queue_depth.set(self.scheduler.depth)

    def validate(self, inputs: ArrayDict) -> ArrayDict | None:
        """The inputs unchanged when they already match the signature exactly, else None.

        The full check (casts, reshapes, messages) is ``prepare_inputs``; this is the cheap
        test the common case passes.
        """
        if len(inputs) != len(self._checks):
            return None
        for name, dtype, shape in self._checks:
            array = inputs.get(name)
            if array is None or array.dtype != dtype or array.ndim != len(shape):
                return None
            for want, got in zip(shape, array.shape, strict=True):
                if want is not None and want != got:
                    return None
        return inputs

    async def _queued(
        self, inputs: ArrayDict, rows: int, priority: int, timeout_s: float | None
    ) -> ArrayDict:
        if self.inflight == 1 and self.batcher.can_run_now(rows):
            # Let every request that arrived with this one enter first; if it is still
            # alone and the runner idle, there is nothing to batch with or to overtake.
            await asyncio.sleep(0)
            if self.inflight == 1 and self.batcher.can_run_now(rows):
                return self.batcher.run_now(inputs, rows)
        items = self.scheduler.submit(inputs, rows, priority=priority, timeout_s=timeout_s)
        if timeout_s is None and self.config.scheduler.default_timeout_ms is None:
            return await _collect(items)
        return await self._with_deadline(items, timeout_s)

    async def _with_deadline(self, items: list[WorkItem], timeout_s: float | None) -> ArrayDict:
        default_ms = self.config.scheduler.default_timeout_ms
        timeout = timeout_s if timeout_s is not None else (default_ms or 0) / 1000
        gathered = asyncio.ensure_future(_collect(items))
        try:
            return await asyncio.wait_for(asyncio.shield(gathered), timeout)
        except TimeoutError:
            if items[0].state == STARTED:
                return await gathered  # already running: the answer is on its way
            for item in items:
                self.scheduler.cancel(item)
            gathered.cancel()
            raise DeadlineExceededError(self.name, timeout) from None

    async def drain(self, timeout_s: float) -> bool:
        """Wait until no request is in flight (or the timeout passes); True if drained."""
        if self._idle is None or self.inflight == 0:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Stop the batcher and release the session; queued work fails with a clear error."""
        await self.batcher.stop()
        self.runner.close()
        self._info.set(0)
        self.metrics.retire()
        if self.watch is not None:
            self.watch.closed = True  # flushed once more, then forgotten


async def _collect(items: list[WorkItem]) -> ArrayDict:
    if len(items) == 1:
        return await items[0].future
    parts = await asyncio.gather(*(item.future for item in items))
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def unavailable(name: str, why: str) -> UnavailableError:
    """The error for a model that cannot take requests right now."""
    return UnavailableError(f"model {name!r} is not ready: {why}", hint="retry shortly")
