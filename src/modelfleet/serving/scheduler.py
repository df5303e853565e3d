"""Per-model request queue: cheapest work first, aging so nothing starves, bounded, with deadlines.

Ordering. Each queued item gets a static key

    key = enqueued_at + aging * estimated_run_time(rows of the whole request) + priority offset

and the smallest key runs first. Comparing keys of two items is the same as comparing their
"aged cost" (cost minus time already waited) at any common instant, so a 1-row request
overtakes a queued 10,000-row one, yet the large one runs once it has waited ``aging`` times
its own run time. Run time is rows times the per-row cost the batcher observes.

A request larger than the batch limit is split into chunks that share its key and run in
order, so small requests can slip in between chunks instead of waiting for all of them.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from modelfleet.errors import DeadlineExceededError, OverloadedError, ServingError
from modelfleet.serving.settings import SchedulerConfig
from modelfleet.signature import ArrayDict, Arrays

QUEUED, STARTED, CANCELLED = 0, 1, 2
DEFAULT_PRIORITY_LEVEL = 3  # V2 'priority': 1 most urgent … 0 or absent = this level


@dataclass(eq=False, slots=True)
class _Job:
    """A request as the queue counts it: done when its last chunk leaves the queue."""

    waiting: int


@dataclass(eq=False, slots=True)
class WorkItem:
    """One unit the batcher runs: a request, or one chunk of a large request."""

    arrays: ArrayDict
    rows: int
    future: asyncio.Future[ArrayDict]
    enqueued: float
    deadline: float | None
    job: _Job | None  # None for a request that was not split
    state: int = QUEUED


# Heap entries are plain tuples (key, seq, item): tuple comparison runs in C, and seq is
# unique, so items themselves are never compared.
_Entry = tuple[float, int, WorkItem]


class Scheduler:
    """A bounded priority queue of :class:`WorkItem` for one model."""

    def __init__(
        self,
        model: str,
        config: SchedulerConfig,
        *,
        chunk_rows: int | None,
        cost_per_row: float = 1e-5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.config = config
        self.chunk_rows = chunk_rows
        self.cost_per_row = cost_per_row
        self.clock = clock
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._live = 0
        self._requests = 0
        self._ready: asyncio.Event | None = None
        # Settings read on every submit, copied out of the config once.
        self._max_queued = config.max_queued_requests
        self._aging = config.aging
        self._priority_step = config.priority_step_ms / 1000
        ms = config.default_timeout_ms
        self._default_timeout_s = ms / 1000 if ms is not None else None

    @property
    def depth(self) -> int:
        """Requests waiting to run, a split request counting once (cancelled ones excluded)."""
        return self._requests

    def _leave(self, item: WorkItem) -> None:
        self._live -= 1
        job = item.job
        if job is None:
            self._requests -= 1
            return
        job.waiting -= 1
        if job.waiting == 0:
            self._requests -= 1

    def _event(self) -> asyncio.Event:
        if self._ready is None:
            self._ready = asyncio.Event()
        return self._ready

    def observe(self, rows: int, seconds: float) -> None:
        """Fold a measured batch into the per-row cost estimate (moving average)."""
        if rows > 0 and seconds > 0:
            self.cost_per_row = 0.8 * self.cost_per_row + 0.2 * (seconds / rows)

    def key_for(self, rows: int, priority: int, now: float) -> float:
        """The ordering key of a request of ``rows`` rows arriving at ``now``."""
        key = now + self._aging * rows * self.cost_per_row
        if priority > 0:
            key += (priority - DEFAULT_PRIORITY_LEVEL) * self._priority_step
        return key

    def submit(
        self,
        arrays: ArrayDict,
        rows: int,
        *,
        priority: int = 0,
        timeout_s: float | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> list[WorkItem]:
        """Queue a request (split into chunks when large); raise when the queue is full."""
        if self._requests >= self._max_queued:
            raise OverloadedError(self.model, self._requests, retry_after=self.config.retry_after_s)
        loop = loop or asyncio.get_running_loop()
        now = self.clock()
        key = self.key_for(rows, priority, now)
        if timeout_s is None:
            timeout_s = self._default_timeout_s
        deadline = None if timeout_s is None else now + timeout_s
        size = self.chunk_rows
        if size is None or rows <= size:
            # The common case: one item, no job bookkeeping.
            item = WorkItem(arrays, rows, loop.create_future(), now, deadline, None)
            heapq.heappush(self._heap, (key, next(self._seq), item))
            items = [item]
        else:
            starts = range(0, rows, size)
            job = _Job(len(starts))
            items = []
            for start in starts:
                part = {k: v[start : start + size] for k, v in arrays.items()}
                item = WorkItem(
                    part, min(size, rows - start), loop.create_future(), now, deadline, job
                )
                heapq.heappush(self._heap, (key, next(self._seq), item))
                items.append(item)
        self._live += len(items)
        self._requests += 1
        ready = self._ready
        if ready is None:
            ready = self._ready = asyncio.Event()
        ready.set()
        return items

    def cancel(self, item: WorkItem) -> bool:
        """Drop a queued item (it stays in the heap until popped); False if already started."""
        if item.state != QUEUED:
            return False
        item.state = CANCELLED
        self._leave(item)
        return True

    def take_nowait(
        self, max_rows: int, *, max_items: int | None = None, first_always: bool = True
    ) -> list[WorkItem]:
        """Pop runnable items in key order while they fit in ``max_rows`` rows.

        The first item is taken even if larger than ``max_rows`` (a batch of one), unless
        ``first_always`` is False (when topping up a batch that is already open). Expired
        items are failed with :class:`DeadlineExceededError` and never run.
        """
        taken: list[WorkItem] = []
        rows = 0
        now = self.clock()
        while self._heap:
            item = self._heap[0][2]
            if item.state == CANCELLED:
                heapq.heappop(self._heap)
                continue
            if item.deadline is not None and now > item.deadline:
                heapq.heappop(self._heap)
                self._expire(item)
                continue
            if (taken or not first_always) and (
                rows + item.rows > max_rows or len(taken) == max_items
            ):
                break
            heapq.heappop(self._heap)
            item.state = STARTED
            self._leave(item)
            taken.append(item)
            rows += item.rows
        if not self._live and self._ready is not None:
            self._ready.clear()
        return taken

    def _expire(self, item: WorkItem) -> None:
        item.state = CANCELLED
        self._leave(item)
        if not item.future.done():
            timeout = (item.deadline or item.enqueued) - item.enqueued
            item.future.set_exception(DeadlineExceededError(self.model, timeout))

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until something is queued (or ``timeout`` passes); True if something is."""
        event = self._event()
        if timeout is None:
            await event.wait()
            return True
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return self._live > 0
        return True

    def fail_all(self, error: ServingError) -> None:
        """Fail every queued item (shutdown)."""
        while self._heap:
            item = heapq.heappop(self._heap)[2]
            if item.state == QUEUED and not item.future.done():
                item.future.set_exception(error)
        self._live = 0
        self._requests = 0


def merge(items: list[WorkItem]) -> ArrayDict:
    """Concatenate the items' inputs along the batch axis (no copy for a single item)."""
    if len(items) == 1:
        return items[0].arrays
    names = items[0].arrays.keys()
    return {name: np.concatenate([item.arrays[name] for item in items]) for name in names}


def split(outputs: Arrays, items: list[WorkItem]) -> list[ArrayDict]:
    """Cut batched outputs back into per-item outputs."""
    if len(items) == 1:
        return [dict(outputs)]
    parts = []
    start = 0
    for item in items:
        end = start + item.rows
        parts.append({name: value[start:end] for name, value in outputs.items()})
        start = end
    return parts
