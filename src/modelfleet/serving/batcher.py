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
_MAX_GATHER_ROUNDS = 8


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
        cpu_timing: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scheduler = scheduler
        self.runner = runner
        self.config = config
        self.metrics = metrics
        self.batchable = batchable and config.enabled
        self.cpu_timing = cpu_timing
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
            if self.batchable:
                items = await self._gather_ready(items)
                if self.config.max_wait_ms > 0:
                    items = await self._fill(items)
            await self.run_batch(items)
            # An inline batch never suspends, and a set event does not either: yield once
            # so requests that arrived meanwhile are parsed and queued (and can overtake the
            # rest of a large request) before the next batch is chosen.
            await asyncio.sleep(0)

    def _take(self, room: int | None = None) -> list[WorkItem]:
        """Open a batch (``room`` None) or top one up with at most ``room`` more rows."""
        if not self.batchable:
            return self.scheduler.take_nowait(1 << 62, max_items=1)
        if room is None:
            return self.scheduler.take_nowait(self.config.max_batch_rows)
        return self.scheduler.take_nowait(room, first_always=False)

    async def _gather_ready(self, items: list[WorkItem]) -> list[WorkItem]:
        """Let requests that already reached the server join before the batch closes.

        Bytes sitting in sockets become queued requests only after a loop iteration or
        two (parse, then the request task runs). Yielding until an iteration brings
        nothing new costs microseconds for a lone request and, under load, turns a
        trickle of tiny batches into full ones.
        """
        rows = sum(i.rows for i in items)
        quiet = 0
        for _ in range(_MAX_GATHER_ROUNDS):
            if rows >= self.config.max_batch_rows:
                break
            await asyncio.sleep(0)
            more = self._take(self.config.max_batch_rows - rows)
            if more:
                items.extend(more)
                rows += sum(i.rows for i in more)
                quiet = 0
            else:
                quiet += 1
                if quiet == 2:
                    break
        return items

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
        self.metrics.queue_wait.observe(0.0)
        outputs, wall, cost = self._timed_run(inputs)
        self._observe(rows, 1, wall, cost)
        return outputs

    def _timed_run(self, inputs: dict[str, Any]) -> tuple[dict[str, Any], float, float]:
        """Run and time in the running thread: (outputs, wall seconds, compute seconds).

        The cost estimate must not include waiting for the GIL after a batch ran on the
        runner thread, or a busy loop would make every batch look expensive and keep it off
        the loop for good. With one intra-op thread, ONNX Runtime computes in the calling
        thread, so that thread's CPU time is the model's cost.
        """
        wall, cpu = time.perf_counter(), time.thread_time()
        outputs = self.runner.run(inputs)
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        return outputs, wall, cpu if self.cpu_timing else wall

    def _observe(self, rows: int, requests: int, elapsed: float, cost: float) -> None:
        self.batches += 1
        self.scheduler.observe(rows, cost)
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
                outputs, wall, cost = self._timed_run(inputs)
            else:
                self.busy = True
                try:
                    outputs, wall, cost = await loop.run_in_executor(
                        self._executor, self._timed_run, inputs
                    )
                finally:
                    self.busy = False
        except Exception as exc:  # a runtime failure must reach every waiting client
            error = _runtime_error(exc)
            for item in items:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        self._observe(rows, len(items), wall, cost)
        for item, result in zip(items, split(outputs, items), strict=True):
            if not item.future.done():
                item.future.set_result(result)


def _runtime_error(exc: BaseException) -> ServingError:
    logger.exception("inference failed")
    message: Any = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    return ServingError(f"inference failed: {message}", hint="check the inputs' values")
