"""The batcher: takes work from a model's scheduler, runs it as one ONNX call, fans results out.

One batcher task per model runs one batch at a time on the model's own runner thread (ONNX
Runtime releases the GIL, so the event loop keeps parsing requests meanwhile). Requests
that arrive while a batch runs are merged into the next one, up to ``max_batch_rows``; a
positive ``max_wait_ms`` additionally holds a batch open to let it fill.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from modelfleet.errors import ServingError, UnavailableError
from modelfleet.serving.metrics import ModelMetrics
from modelfleet.serving.runner import Runner
from modelfleet.serving.scheduler import Scheduler, WorkItem, merge, split
from modelfleet.serving.settings import BatchingConfig

logger = logging.getLogger(__name__)


class Batcher:
    """Runs a scheduler's work on a runner until stopped."""

    def __init__(
        self,
        scheduler: Scheduler,
        runner: Runner,
        config: BatchingConfig,
        metrics: ModelMetrics,
        *,
        batchable: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scheduler = scheduler
        self.runner = runner
        self.config = config
        self.metrics = metrics
        self.batchable = batchable and config.enabled
        self.clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelfleet-runner")
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.busy = False

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    async def stop(self) -> None:
        """Stop after the current batch; queued work is failed with a clear error."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.scheduler.fail_all(
            UnavailableError("the model was unloaded before this request ran", hint="retry")
        )
        self._executor.shutdown(wait=True)

    async def _loop(self) -> None:
        while True:
            await self.scheduler.wait()
            items = self._take()
            if not items:
                continue
            if self.config.max_wait_ms > 0 and self.batchable:
                items = await self._fill(items)
            await self.run_batch(items)

    def _take(self, room: int | None = None) -> list[WorkItem]:
        if not self.batchable:
            return self.scheduler.take_nowait(1 << 62, max_items=1)
        return self.scheduler.take_nowait(room or self.config.max_batch_rows)

    async def _fill(self, items: list[WorkItem]) -> list[WorkItem]:
        deadline = self.clock() + self.config.max_wait_ms / 1000
        rows = sum(i.rows for i in items)
        while rows < self.config.max_batch_rows:
            remaining = deadline - self.clock()
            if remaining <= 0 or not await self.scheduler.wait(remaining):
                break
            more = self._take(self.config.max_batch_rows - rows)
            if not more:
                break
            items.extend(more)
            rows += sum(i.rows for i in more)
        return items

    def can_run_now(self, rows: int) -> bool:
        """True when the runner is idle, nothing is queued and ``rows`` run within budget."""
        return (
            not self.busy
            and self.scheduler.depth == 0
            and rows <= self.config.max_batch_rows
            and rows * self.scheduler.cost_per_row <= self.config.inline_budget_ms / 1000
        )

    def run_now(self, inputs: dict[str, Any], rows: int) -> dict[str, Any]:
        """Run one request inline on the event loop (see :meth:`can_run_now`)."""
        start = self.clock()
        self.metrics.queue_wait.observe(0.0)
        outputs = self.runner.run(inputs)
        self._observe(rows, 1, self.clock() - start)
        return outputs

    def _observe(self, rows: int, requests: int, elapsed: float) -> None:
        self.batches += 1
        self.scheduler.observe(rows, elapsed)
        self.metrics.inference.observe(elapsed)
        self.metrics.batch_rows.observe(rows)
        self.metrics.batch_requests.observe(requests)

    async def run_batch(self, items: list[WorkItem]) -> None:
        """Run ``items`` as one call and resolve their futures."""
        loop = asyncio.get_running_loop()
        start = self.clock()
        for item in items:
            self.metrics.queue_wait.observe(start - item.enqueued)
        inputs = merge(items)
        rows = sum(i.rows for i in items)
        try:
            if rows * self.scheduler.cost_per_row <= self.config.inline_budget_ms / 1000:
                # Cheaper than handing the batch to a thread and back (tens of microseconds):
                # run it on the event loop.
                outputs = self.runner.run(inputs)
            else:
                self.busy = True
                try:
                    outputs = await loop.run_in_executor(self._executor, self.runner.run, inputs)
                finally:
                    self.busy = False
        except Exception as exc:  # a runtime failure must reach every waiting client
            error = _runtime_error(exc)
            for item in items:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        self._observe(rows, len(items), self.clock() - start)
        for item, result in zip(items, split(outputs, items), strict=True):
            if not item.future.done():
                item.future.set_result(result)


def _runtime_error(exc: BaseException) -> ServingError:
    logger.exception("inference failed")
    message: Any = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    return ServingError(f"inference failed: {message}", hint="check the inputs' values")
