"""The scheduler's order, aging, bounds and deadlines, driven by an injected clock."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from modelfleet.errors import DeadlineExceededError, OverloadedError
from modelfleet.serving.scheduler import Scheduler, merge, split
from modelfleet.serving.settings import SchedulerConfig


class FakeClock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _rows(n: int, tag: float) -> dict[str, np.ndarray]:
    return {"X": np.full((n, 2), tag, np.float32)}


def _scheduler(clock: FakeClock, **config: object) -> Scheduler:
    # 1 ms per row: a 1-row request "costs" 1 ms, a 10,000-row one 10 s.
    return Scheduler(
        "m", SchedulerConfig(**config), chunk_rows=None, cost_per_row=1e-3, clock=clock
    )


def _tags(items: list) -> list[float]:
    return [float(item.arrays["X"][0, 0]) for item in items]


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_small_request_overtakes_a_queued_large_one() -> None:
    async def scenario() -> list[float]:
        clock = FakeClock()
        sched = _scheduler(clock, aging=8)
        sched.submit(_rows(10_000, 1), 10_000)
        clock.now += 0.5  # the 1-row request arrives half a second later
        sched.submit(_rows(1, 2), 1)
        return _tags(sched.take_nowait(1)) + _tags(sched.take_nowait(100_000))

    assert run(scenario()) == [2, 1]


def test_aging_lets_the_large_request_run_eventually() -> None:
    async def scenario() -> list[float]:
        clock = FakeClock()
        sched = _scheduler(clock, aging=8)
        sched.submit(_rows(10_000, 1), 10_000)  # key: t0 + 8 * 10 s = t0 + 80 s
        clock.now += 81  # small requests keep coming, but later than the large one's key
        sched.submit(_rows(1, 2), 1)
        return _tags(sched.take_nowait(10_000))

    assert run(scenario()) == [1]


def test_priority_levels_shift_order() -> None:
    async def scenario() -> list[float]:
        clock = FakeClock()
        sched = _scheduler(clock, priority_step_ms=100)
        sched.submit(_rows(1, 1), 1)
        sched.submit(_rows(1, 2), 1, priority=5)  # less urgent than the default level
        sched.submit(_rows(1, 3), 1, priority=1)  # most urgent
        return (
            _tags(sched.take_nowait(1)) + _tags(sched.take_nowait(1)) + _tags(sched.take_nowait(1))
        )

    assert run(scenario()) == [3, 1, 2]


def test_take_respects_the_row_budget_and_keeps_key_order() -> None:
    async def scenario() -> tuple[list[float], list[float]]:
        clock = FakeClock()
        sched = _scheduler(clock)
        for tag, rows in enumerate((3, 3, 3), start=1):
            sched.submit(_rows(rows, tag), rows)
        return _tags(sched.take_nowait(7)), _tags(sched.take_nowait(7))

    assert run(scenario()) == ([1, 2], [3])


def test_full_queue_raises_overloaded_with_retry_after() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        sched = _scheduler(clock, max_queued_requests=2, retry_after_s=3)
        sched.submit(_rows(1, 1), 1)
        sched.submit(_rows(1, 2), 1)
        with pytest.raises(OverloadedError) as info:
            sched.submit(_rows(1, 3), 1)
        assert info.value.retry_after == 3
        assert sched.depth == 2

    run(scenario())


def test_expired_items_are_failed_and_never_taken() -> None:
    async def scenario() -> list[float]:
        clock = FakeClock()
        sched = _scheduler(clock)
        late = sched.submit(_rows(1, 1), 1, timeout_s=0.010)[0]
        sched.submit(_rows(1, 2), 1)
        clock.now += 0.050
        taken = sched.take_nowait(10)
        with pytest.raises(DeadlineExceededError, match="10 ms deadline"):
            late.future.result()
        return _tags(taken)

    assert run(scenario()) == [2]


def test_cancelled_items_are_skipped() -> None:
    async def scenario() -> list[float]:
        sched = _scheduler(FakeClock())
        first = sched.submit(_rows(1, 1), 1)[0]
        sched.submit(_rows(1, 2), 1)
        assert sched.cancel(first)
        assert sched.depth == 1
        return _tags(sched.take_nowait(10))

    assert run(scenario()) == [2]


def test_large_requests_are_chunked_and_reassembled() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        sched = Scheduler("m", SchedulerConfig(), chunk_rows=4, cost_per_row=1e-3, clock=clock)
        arrays = {"X": np.arange(10, dtype=np.float32).reshape(10, 1)}
        items = sched.submit(arrays, 10)
        assert [i.rows for i in items] == [4, 4, 2]
        batch = sched.take_nowait(8)
        assert [i.rows for i in batch] == [4, 4]
        merged = merge(batch)
        assert merged["X"].ravel().tolist() == list(range(8))
        parts = split({"Y": merged["X"] * 2}, batch)
        assert parts[1]["Y"].ravel().tolist() == [8, 10, 12, 14]

    run(scenario())


def test_cost_estimate_follows_observed_batches() -> None:
    sched = _scheduler(FakeClock())
    for _ in range(50):
        sched.observe(100, 0.010)  # 0.1 ms per row measured
    assert sched.cost_per_row == pytest.approx(1e-4, rel=0.01)


def test_topping_up_never_exceeds_the_room_left() -> None:
    async def scenario() -> tuple[list[int], list[int]]:
        sched = _scheduler(FakeClock())
        sched.submit(_rows(64, 1), 64)
        opened = [i.rows for i in sched.take_nowait(100)]
        sched.submit(_rows(64, 2), 64)
        topped = [i.rows for i in sched.take_nowait(36, first_always=False)]
        return opened, topped

    assert run(scenario()) == ([64], [])
