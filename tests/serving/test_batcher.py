"""The batcher over a real ONNX Runtime session: merging, splitting, failures, stop; the runner."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from modelfleet.errors import ServingError, UnavailableError
from modelfleet.serving.batcher import Batcher
from modelfleet.serving.metrics import ServingMetrics
from modelfleet.serving.runner import OnnxRunner
from modelfleet.serving.scheduler import Scheduler
from modelfleet.serving.settings import BatchingConfig, SchedulerConfig
from tests.models import ALL_DTYPES, echo_graph, sum_graph


@pytest.fixture(scope="module")
def adder() -> OnnxRunner:
    return OnnxRunner(sum_graph().SerializeToString())


class Rig:
    """A scheduler, a batcher on the adder and the metrics they write, on the running loop."""

    def __init__(self, runner: OnnxRunner, **batching: Any) -> None:
        config = BatchingConfig(**batching)
        self.metrics = ServingMetrics()
        self.scheduler = Scheduler(
            "adder", SchedulerConfig(), chunk_rows=config.max_batch_rows, cost_per_row=1e-6
        )
        self.batcher = Batcher(
            self.scheduler,
            runner,
            config,
            self.metrics.for_model("adder", "1"),
            batchable=True,
        )

    def submit(self, rows: np.ndarray[Any, Any]) -> Awaitable[list[dict[str, Any]]]:
        items = self.scheduler.submit({"X": rows}, len(rows))
        return asyncio.gather(*(item.future for item in items))

    def sample(self, name: str) -> float:
        value = self.metrics.registry.get_sample_value(name, {"model": "adder", "version": "1"})
        return value or 0.0


def _run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(scenario(), timeout=30))


def _rows(*sums: float) -> np.ndarray[Any, Any]:
    return np.array([[s, 0, 0] for s in sums], np.float32)


def test_queued_requests_run_as_one_call_and_each_gets_its_own_rows(adder: OnnxRunner) -> None:
    async def scenario() -> tuple[list[Any], Rig]:
        rig = Rig(adder)
        waits = [rig.submit(_rows(1, 2)), rig.submit(_rows(3)), rig.submit(_rows(4, 5, 6))]
        rig.batcher.start()
        results = await asyncio.gather(*waits)
        await rig.batcher.stop()
        return results, rig

    results, rig = _run(scenario)
    got = [[part["Y"].ravel().tolist() for part in parts] for parts in results]
    assert got == [[[1, 2]], [[3]], [[4, 5, 6]]]
    assert rig.batcher.batches == 1
    assert rig.sample("modelfleet_batch_rows_sum") == 6
    assert rig.sample("modelfleet_batch_requests_sum") == 3


def test_batches_never_exceed_max_rows_and_large_requests_come_back_whole(
    adder: OnnxRunner,
) -> None:
    async def scenario() -> tuple[list[Any], Rig]:
        rig = Rig(adder, max_batch_rows=4)
        large = rig.submit(_rows(*range(10)))
        small = rig.submit(_rows(100))
        rig.batcher.start()
        results = await asyncio.gather(large, small)
        await rig.batcher.stop()
        return results, rig

    (chunks, small), rig = _run(scenario)
    assert np.concatenate([c["Y"] for c in chunks]).ravel().tolist() == list(range(10))
    assert small[0]["Y"].tolist() == [[100]]
    assert rig.sample("modelfleet_batch_rows_sum") == 11
    # The 1-row request overtakes the large one, then its three chunks run: 1, 4, 4, 2.
    assert rig.sample("modelfleet_batch_rows_count") == 4
    within = rig.metrics.registry.get_sample_value(
        "modelfleet_batch_rows_bucket", {"model": "adder", "version": "1", "le": "4.0"}
    )
    assert within == 4


def test_without_batching_every_request_is_its_own_call(adder: OnnxRunner) -> None:
    async def scenario() -> Rig:
        rig = Rig(adder, enabled=False)
        waits = [rig.submit(_rows(i)) for i in range(5)]
        rig.batcher.start()
        await asyncio.gather(*waits)
        await rig.batcher.stop()
        return rig

    rig = _run(scenario)
    assert rig.batcher.batches == 5
    assert rig.sample("modelfleet_batch_rows_sum") == 5


def test_max_wait_holds_a_batch_open_for_late_arrivals(adder: OnnxRunner) -> None:
    async def scenario(wait_ms: float) -> int:
        rig = Rig(adder, max_batch_rows=2, max_wait_ms=wait_ms)
        rig.batcher.start()
        first = rig.submit(_rows(1))
        await asyncio.sleep(0.02)
        second = rig.submit(_rows(2))
        await asyncio.gather(first, second)
        await rig.batcher.stop()
        return rig.batcher.batches

    assert asyncio.run(scenario(0)) == 2
    assert asyncio.run(scenario(1000)) == 1  # closes when full, long before the second passes


@pytest.mark.parametrize("inline_budget_ms", [100.0, 0.0], ids=["inline", "thread"])
def test_a_runtime_failure_reaches_every_waiter_and_the_loop_goes_on(
    adder: OnnxRunner, inline_budget_ms: float
) -> None:
    async def scenario() -> tuple[list[BaseException], list[Any]]:
        rig = Rig(adder, inline_budget_ms=inline_budget_ms)
        bad = [
            rig.submit(np.ones((1, 3), np.float64)),  # the model takes float32
            rig.submit(np.ones((2, 3), np.float64)),
        ]
        rig.batcher.start()
        errors = await asyncio.gather(*bad, return_exceptions=True)
        good = await rig.submit(_rows(7))
        await rig.batcher.stop()
        return errors, good

    errors, good = _run(scenario)
    for error in errors:
        assert isinstance(error, ServingError)
        assert error.status == 500
        assert str(error).startswith("inference failed: ")
        assert "double" in str(error)  # ONNX Runtime's own reason, first line only
        assert str(error).endswith("; check the inputs' values")
        assert "\n" not in str(error)
    assert errors[0] is errors[1]
    assert good[0]["Y"].tolist() == [[7]]


def test_stop_fails_queued_work_with_a_retryable_error(adder: OnnxRunner) -> None:
    async def scenario() -> tuple[list[BaseException], int]:
        rig = Rig(adder)
        rig.batcher.start()
        await rig.submit(_rows(1))
        waits = [rig.submit(_rows(i)) for i in range(3)]  # queued, never taken
        await rig.batcher.stop()
        errors = await asyncio.gather(*waits, return_exceptions=True)
        return errors, rig.scheduler.depth

    errors, depth = _run(scenario)
    assert depth == 0
    for error in errors:
        assert isinstance(error, UnavailableError)
        assert error.status == 503
        assert str(error) == "the model was unloaded before this request ran; retry"


def test_can_run_now_only_when_idle_empty_and_cheap(adder: OnnxRunner) -> None:
    async def scenario() -> list[bool]:
        rig = Rig(adder, inline_budget_ms=0.5, max_batch_rows=64)  # 1 us per row: 500 rows
        answers = [rig.batcher.can_run_now(10), rig.batcher.can_run_now(65)]
        pending = rig.submit(_rows(1))
        answers.append(rig.batcher.can_run_now(1))  # something queued: it goes first
        rig.batcher.start()
        await pending
        answers.append(rig.batcher.can_run_now(1))
        out = rig.batcher.run_now({"X": _rows(3, 4)}, 2)
        answers.append(out["Y"].ravel().tolist() == [3, 4])
        await rig.batcher.stop()
        return answers

    assert _run(scenario) == [True, False, False, True, True]


def test_the_runner_reads_its_signature_from_the_graph() -> None:
    echo = OnnxRunner(echo_graph().SerializeToString())
    assert [s.dtype for s in echo.signature.inputs] == list(ALL_DTYPES)
    assert {s.shape for s in echo.signature.outputs} == {(None, 2)}
    adder = OnnxRunner(sum_graph(5).SerializeToString(), threads=2)
    assert adder.signature.inputs[0].shape == (None, 5)
    out = adder.run({"X": np.ones((3, 5), np.float32)}, outputs=["Y"])
    assert list(out) == ["Y"] and out["Y"].ravel().tolist() == [5, 5, 5]
    strings = np.array([["a", "b"]], dtype=object)
    inputs = {
        s.name: strings if s.dtype == "string" else np.zeros((1, 2), s.dtype)
        for s in echo.signature.inputs
    }
    assert echo.run(inputs, outputs=["y_string"])["y_string"].tolist() == [["a", "b"]]


def test_a_graph_onnx_runtime_cannot_load_is_a_clear_error() -> None:
    with pytest.raises(ServingError) as info:
        OnnxRunner(b"this is not an onnx graph")
    message = str(info.value)
    assert message.startswith("ONNX Runtime cannot load the model: ")
    assert info.value.hint == "check the artifact with 'modelfleet show' and re-freeze it"
    assert "\n" not in message
