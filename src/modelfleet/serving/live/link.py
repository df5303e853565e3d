"""The server's link to its predictions store: off the event loop, never in inference's way.

Every store call runs on one dedicated thread and is bounded by ``state.timeout_s``. When a
call fails (the backend is down, slow or restarting) the link marks the backend down for
``state.retry_after_s``: until then calls fail at once with :class:`StateUnavailableError`
without touching the backend, so a dead PostgreSQL or Redis costs inference nothing.
Predictions recorded meanwhile are dropped and counted; feedback gets 503 with
``Retry-After``. The first failure and the recovery are each logged once, and
``modelfleet_state_backend_up`` shows the state to alerts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from modelfleet.errors import StateUnavailableError
from modelfleet.serving.live.feedback import PredictionStore
from modelfleet.serving.live.stores import backend_of
from modelfleet.serving.metrics import ServingMetrics
from modelfleet.serving.settings import StateConfig

logger = logging.getLogger(__name__)
T = TypeVar("T")


class StateLink:
    """Calls into one :class:`PredictionStore`, with the backend's health tracked."""

    def __init__(self, state: StateConfig, metrics: ServingMetrics) -> None:
        self.state = state
        self.backend = backend_of(state.url)
        self.store: PredictionStore | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelfleet-state")
        self._down_until = 0.0
        self._down_reason = ""
        self._up_gauge = metrics.state_backend_up.labels(self.backend)
        self._up_gauge.set(1)

    @property
    def down(self) -> bool:
        """True while calls are refused without trying the backend."""
        return time.monotonic() < self._down_until

    async def open(self, make: Callable[[], PredictionStore]) -> None:
        """Create the store on the link's thread (backends do not connect here)."""
        self.store = await self._run(make)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def call(self, method: str, *args: Any) -> Any:
        """``store.method(*args)`` on the thread; :class:`StateUnavailableError` if down."""
        if self.store is None:
            raise StateUnavailableError(
                "the predictions store is not open yet", retry_after=self.state.retry_after_s
            )
        left = self._down_until - time.monotonic()
        if left > 0:
            raise StateUnavailableError(
                f"the {self.backend} state backend is unavailable: {self._down_reason}",
                retry_after=max(1.0, left),
            )
        future = self._run(getattr(self.store, method), *args)
        try:
            # The store's own timeouts bound the call; this bounds a backend that ignores them
            # (the thread finishes the call in the background and later calls queue behind it).
            result = await asyncio.wait_for(future, timeout=self.state.timeout_s * 4 + 1)
        except StateUnavailableError as exc:
            self._went_down(str(exc).split("; ", 1)[0])
            raise StateUnavailableError(str(exc), retry_after=self.state.retry_after_s) from exc
        except TimeoutError:
            reason = f"a {method} call took longer than {self.state.timeout_s * 4 + 1:g} s"
            self._went_down(reason)
            raise StateUnavailableError(
                f"the {self.backend} state backend is unavailable: {reason}",
                retry_after=self.state.retry_after_s,
            ) from None
        if self._down_reason:
            logger.warning("%s state backend is back; recording predictions again", self.backend)
            self._down_reason = ""
            self._up_gauge.set(1)
        return result

    def _went_down(self, reason: str) -> None:
        self._down_until = time.monotonic() + self.state.retry_after_s
        if not self._down_reason:  # one line per outage, not one per flush
            logger.warning(
                "%s state backend unavailable (%s): predictions are dropped and counted and "
                "feedback gets 503 until it is back; retrying every %g s",
                self.backend,
                reason,
                self.state.retry_after_s,
            )
        self._down_reason = reason
        self._up_gauge.set(0)

    async def close(self) -> None:
        """Close the store and stop the thread."""
        try:
            if self.store is not None:
                await self._run(self.store.close)
        finally:
            self._thread.shutdown(wait=True)
