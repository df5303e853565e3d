"""Which models are served, loading them, and hot swapping when a ``name@stage`` pointer moves.

A poll asks the registry what a reference points at (version and graph digest) and reads
the graph only when that changed. A new version is loaded and warmed up next to the old
one, then replaces it in one assignment: requests that already hold the old instance finish
on it, the old instance is stopped once idle. A failed load leaves the old version serving
and is reported in the status, once in the log, and in
``modelfleet_model_load_failures_total``; polls retry it with a doubling delay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelfleet.config import Settings
from modelfleet.errors import UnknownModelError
from modelfleet.refs import parse_ref
from modelfleet.serving.cache import Cache, open_cache
from modelfleet.serving.live.tower import Watchtower
from modelfleet.serving.metrics import ServingMetrics
from modelfleet.serving.model import ModelInstance, ModelSource, unavailable
from modelfleet.serving.resolver import Resolver, Target, is_file_ref
from modelfleet.serving.settings import ModelConfig, ServeConfig

logger = logging.getLogger(__name__)
# Operator events (loads, hot swaps, failed loads, drains of a replaced version). Without -v
# the CLI's root logger shows warnings only, while uvicorn's server log is shown at
# ``serve --log-level``; a child of that log prints these once, at the level the operator chose.
events = logging.getLogger("uvicorn.error").getChild("modelfleet")
_RETRY_CAP_S = 300.0  # longest wait between retries of a version that keeps failing to load


@dataclass(frozen=True)
class Retry:
    """A failed load: what it was for, why, how often, and when a poll may try again."""

    target: Target | None  # None: the reference itself could not be resolved
    error: str
    failures: int
    due: float


@dataclass
class ModelHandle:
    """A served name: the instance answering now, and how its last load went."""

    config: ModelConfig
    name: str
    current: ModelInstance | None = None
    state: str = "loading"
    last_error: str | None = None
    loaded_at: float | None = None
    swaps: int = 0
    loaded: Target | None = None
    retry: Retry | None = None
    retiring: set[asyncio.Task[None]] = field(default_factory=set)

    def status(self) -> dict[str, Any]:
        """What ``GET /v2/repository/index`` and ``modelfleet reload`` report."""
        return {
            "name": self.name,
            "ref": self.config.ref,
            "version": self.current.version if self.current else None,
            "state": self.state,
            "reason": self.last_error or "",
            "swaps": self.swaps,
        }


class ModelRepository:
    """Loads the configured models and keeps them current."""

    def __init__(
        self,
        config: ServeConfig,
        metrics: ServingMetrics,
        settings: Settings | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._clock = clock
        self.metrics = metrics
        self.settings = settings
        self.handles: dict[str, ModelHandle] = {}
        self.resolver = Resolver(settings)
        self._caches: dict[str, Cache] = {}
        self._lock = asyncio.Lock()
        self.watchtower = Watchtower(config.monitoring, metrics, config.state)
        for model in config.models:
            name = model.name or self._default_name(model.ref)
            self.handles[name] = ModelHandle(model, name)
            # Exported from 0, so the first failure is an increase alerts can see.
            metrics.load_failures.labels(name)

    @staticmethod
    def _default_name(ref: str) -> str:
        return Path(ref).stem if is_file_ref(ref) else parse_ref(ref).name

    # -- loading --------------------------------------------------------------------------

    def _cache_for(self, config: ModelConfig, source: ModelSource) -> Cache | None:
        cache = config.cache
        accurate = source.metrics.get(cache.metric, float("-inf")) >= cache.threshold
        if not (cache.enabled if cache.enabled is not None else accurate):
            return None
        if cache.backend not in self._caches:
            self._caches[cache.backend] = open_cache(
                cache.backend, max_bytes=cache.max_bytes, ttl_s=cache.ttl_s
            )
        return self._caches[cache.backend]

    async def _build(self, handle: ModelHandle, source: ModelSource) -> ModelInstance:
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        cache = self._cache_for(handle.config, source)
        instance = await loop.run_in_executor(
            None,
            lambda: ModelInstance(source, handle.config, self.metrics, cache_backend=cache),
        )
        if handle.config.watch.enabled:
            watch = self.watchtower.watch(
                handle.name,
                source.version,
                instance.signature,
                source.profile,
                handle.config.watch,
                cache_threshold=handle.config.cache.threshold if instance.cache else None,
            )
            watch.cache = instance.cache
            instance.watch = watch
        instance.start()
        if self.config.server.warmup:
            await instance.warm_up()
        self.metrics.load_seconds.labels(handle.name, source.version).observe(
            time.monotonic() - started
        )
        return instance

    async def load(
        self, handle: ModelHandle, *, force: bool = False, polled: bool = False
    ) -> dict[str, Any]:
        """(Re)load a handle if its reference now points elsewhere; keep the old on failure.

        ``polled``: a version that failed to load is retried only once its delay has passed.
        """
        async with self._lock:
            loop = asyncio.get_running_loop()
            target = None
            if polled and self._backing_off(handle, None):
                return handle.status()
            try:
                target = await loop.run_in_executor(None, self.resolver.locate, handle.config)
                if target == handle.loaded and not force:
                    return self._settle(handle, target)
                if polled and self._backing_off(handle, target):
                    return handle.status()
                source = await loop.run_in_executor(
                    None, self.resolver.resolve, handle.name, handle.config, target
                )
                current, same = handle.current, (source.version, source.sha256)
                if current and (current.version, current.source.sha256) == same and not force:
                    return self._settle(handle, target)  # a file touched, not changed
                instance = await self._build(handle, source)
            except Exception as exc:  # any failure must keep the old version serving
                self._failed(handle, target, exc)
                return handle.status()
            self._settle(handle, target)
            self._swap(handle, instance)
            return handle.status()

    def _backing_off(self, handle: ModelHandle, target: Target | None) -> bool:
        retry = handle.retry
        return retry is not None and retry.target == target and self._clock() < retry.due

    @staticmethod
    def _settle(handle: ModelHandle, target: Target) -> dict[str, Any]:
        """The reference points at what is (or is about to be) served: nothing is failing."""
        handle.loaded, handle.retry, handle.last_error = target, None, None
        return handle.status()

    def _failed(self, handle: ModelHandle, target: Target | None, exc: Exception) -> None:
        """Record a failed load and when a poll may retry it; log each new failure once."""
        error, previous = str(exc), handle.retry
        again = previous is not None and previous.target == target
        failures = previous.failures + 1 if previous is not None and again else 1
        poll_s = self.config.server.poll_interval_s
        cap_s = max(_RETRY_CAP_S, poll_s)
        delay = min(poll_s * 2**failures, cap_s)
        handle.retry = Retry(target, error, failures, self._clock() + delay)
        handle.last_error = error
        handle.state = "ready" if handle.current else "failed"
        self.metrics.load_failures.labels(handle.name).inc()
        what = f"version {target.version}" if target else handle.config.ref
        current = handle.current
        failed = f"hot swap of {handle.name} to {what}" if current else f"loading {handle.name}"
        if again and previous is not None and previous.error == error:
            events.debug("%s failed again (%d times): %s", failed, failures, error)
            return
        keeps = f"version {current.version} keeps serving" if current else "nothing is served"
        events.error(
            "%s failed: %s; %s; next try in %.3g s, waits double up to %.0f s",
            failed,
            error,
            keeps,
            delay,
            cap_s,
        )

    def _swap(self, handle: ModelHandle, instance: ModelInstance) -> None:
        old, handle.current = handle.current, instance
        handle.state, handle.last_error, handle.loaded_at = "ready", None, time.time()
        origin = instance.source.origin
        if old is None:
            events.info("loaded %s version %s from %s", handle.name, instance.version, origin)
            return
        handle.swaps += 1
        events.info(
            "hot swap %s: version %s -> %s (%s)", handle.name, old.version, instance.version, origin
        )
        task = asyncio.get_running_loop().create_task(self._retire(old))
        handle.retiring.add(task)
        task.add_done_callback(handle.retiring.discard)

    async def _retire(self, old: ModelInstance) -> None:
        started, timeout = self._clock(), self.config.server.drain_timeout_s
        events.info(
            "draining %s version %s: %d requests in flight", old.name, old.version, old.inflight
        )
        drained = await old.drain(timeout)
        await old.stop()
        if drained:
            waited = self._clock() - started
            events.info("retired %s version %s (drained in %.2f s)", old.name, old.version, waited)
        else:
            events.warning(
                "retired %s version %s after the %.0f s drain timeout: %d requests unfinished",
                old.name,
                old.version,
                timeout,
                old.inflight,
            )

    async def load_all(self) -> list[str]:
        """Load every configured model; returns one line per model that failed."""
        failures = []
        for handle in self.handles.values():
            status = await self.load(handle)
            if status["state"] == "failed":
                failures.append(f"{handle.name} ({handle.config.ref}): {status['reason']}")
        return failures

    async def reload(self, name: str | None = None) -> list[dict[str, Any]]:
        """Re-resolve one model (or all) now; the admin endpoint and ``modelfleet reload``."""
        targets = [self.handle(name)] if name else list(self.handles.values())
        return [await self.load(h) for h in targets]

    async def poll_forever(self) -> None:
        """Follow ``name@stage`` references: check every ``poll_interval_s`` seconds."""
        while True:
            await asyncio.sleep(self.config.server.poll_interval_s)
            for handle in self.handles.values():
                follows = (
                    handle.config.follow
                    and not is_file_ref(handle.config.ref)
                    and "@" in handle.config.ref
                )
                if follows or handle.current is None:
                    await self.load(handle, polled=True)

    # -- lookups --------------------------------------------------------------------------

    def handle(self, name: str) -> ModelHandle:
        """The handle of a served name, or a 404 listing the served ones."""
        handle = self.handles.get(name)
        if handle is None:
            raise UnknownModelError(name, served=sorted(self.handles))
        return handle

    def instance(self, name: str, version: str | None = None) -> ModelInstance:
        """The instance answering for ``name`` (and ``version`` when given)."""
        handle = self.handle(name)
        current = handle.current
        if current is None:
            raise unavailable(name, handle.last_error or "still loading")
        if version is not None and version != current.version:
            raise UnknownModelError(name, version, served=[f"{name} version {current.version}"])
        return current

    def refresh_gauges(self) -> None:
        """Publish every serving instance's in-flight and queue gauges."""
        for handle in self.handles.values():
            if handle.current is not None:
                handle.current.refresh_gauges()

    @property
    def ready(self) -> bool:
        """True when every configured model has a serving instance."""
        return all(h.current is not None for h in self.handles.values())

    async def close(self) -> None:
        """Stop every instance and cache; close the registry."""
        for handle in self.handles.values():
            for task in list(handle.retiring):
                await task
            if handle.current is not None:
                await handle.current.stop()
                handle.current = None
        await self.watchtower.close()
        for cache in self._caches.values():
            await cache.close()
        await asyncio.get_running_loop().run_in_executor(None, self.resolver.close)
