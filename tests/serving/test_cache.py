"""The output cache: hits, the accuracy gate, new versions, bypass, Redis shared and down."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

import modelfleet as mf
from modelfleet.registry import Registry
from modelfleet.serving.settings import ModelConfig
from tests.models import sum_graph
from tests.servers import redis_server
from tests.serving.conftest import RunningServer

Start = Callable[..., RunningServer]


def _row(values: list[float]) -> dict[str, object]:
    return {"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": values}]}


def _lookups(server: RunningServer, model: str, result: str) -> float:
    return server.metric("modelfleet_cache_lookups_total", model=model, result=result)


def test_repeated_inputs_hit_the_cache(models: Registry, served: Start) -> None:
    server = served(ModelConfig(ref="adder"))  # accuracy 1.0 >= 0.8: cached
    assert server.http.get("/v2/models/adder").json()["parameters"]["cache"] is True
    first = server.http.post("/v2/models/adder/infer", json=_row([1, 2, 3])).json()
    second = server.http.post("/v2/models/adder/infer", json=_row([1, 2, 3])).json()
    assert first["outputs"] == second["outputs"]
    server.http.post("/v2/models/adder/infer", json=_row([1, 2, 4]))
    assert _lookups(server, "adder", "hit") == 1
    assert _lookups(server, "adder", "miss") == 2
    # Selecting other outputs is another key; so is Cache-Control: no-cache (a bypass).
    bypass = server.http.post(
        "/v2/models/adder/infer", json=_row([1, 2, 3]), headers={"cache-control": "no-cache"}
    )
    assert bypass.status_code == 200
    assert _lookups(server, "adder", "hit") == 1
    batches = server.metric("modelfleet_batch_rows_count", model="adder")
    assert batches == 1 + 3  # warm-up, two misses, one bypass: the hit never ran


def test_models_below_the_accuracy_threshold_are_not_cached(
    registry: Registry, served: Start
) -> None:
    mf.register(sum_graph(), name="shaky", metrics={"accuracy": 0.6}, registry=registry)
    mf.register(sum_graph(), name="unmeasured", registry=registry)
    strict = ModelConfig.model_validate({"ref": "shaky"})
    loose = ModelConfig.model_validate({"ref": "unmeasured", "cache": {"enabled": True}})
    server = served(strict, loose)
    assert server.http.get("/v2/models/shaky").json()["parameters"]["cache"] is False
    for _ in range(2):
        server.http.post("/v2/models/shaky/infer", json=_row([1, 1, 1]))
        server.http.post("/v2/models/unmeasured/infer", json=_row([1, 1, 1]))
    assert _lookups(server, "shaky", "hit") == 0
    assert _lookups(server, "unmeasured", "hit") == 1


def test_a_new_version_never_sees_old_entries(registry: Registry, served: Start) -> None:
    mf.register(sum_graph(), name="adder", metrics={"accuracy": 0.99}, registry=registry)
    mf.promote("adder:1", to="prod", registry=registry)
    server = served(ModelConfig(ref="adder@prod"), poll_interval_s=3600)
    server.http.post("/v2/models/adder/infer", json=_row([1, 2, 3]))
    server.http.post("/v2/models/adder/infer", json=_row([1, 2, 3]))
    assert _lookups(server, "adder", "hit") == 1
    mf.register(sum_graph(4), name="adder", metrics={"accuracy": 0.99}, registry=registry)
    mf.promote("adder:2", to="prod", registry=registry)
    status = server.http.post("/v2/repository/models/adder/load").json()
    assert status["version"] == "2"
    fresh = server.http.post(
        "/v2/models/adder/infer",
        json={"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 0]}]},
    )
    assert fresh.status_code == 200
    assert (
        server.metric("modelfleet_cache_lookups_total", model="adder", version="2", result="hit")
        == 0
    )


@pytest.fixture
def redis() -> Iterator[tuple[str, object]]:
    with redis_server() as (url, proc):
        yield url, proc


def test_redis_cache_is_shared_between_servers(
    models: Registry, served: Start, redis: tuple[str, object]
) -> None:
    url, _ = redis
    config = ModelConfig.model_validate({"ref": "adder", "cache": {"backend": url}})
    first, second = served(config), served(config)
    a = first.http.post("/v2/models/adder/infer", json=_row([5, 5, 5])).json()
    b = second.http.post("/v2/models/adder/infer", json=_row([5, 5, 5])).json()
    assert a["outputs"] == b["outputs"]
    assert _lookups(first, "adder", "miss") == 1
    assert _lookups(second, "adder", "hit") == 1


def test_redis_down_means_uncached_not_failed(
    models: Registry, served: Start, redis: tuple[str, object]
) -> None:
    url, proc = redis
    server = served(ModelConfig.model_validate({"ref": "adder", "cache": {"backend": url}}))
    assert server.http.post("/v2/models/adder/infer", json=_row([1, 1, 1])).status_code == 200
    proc.terminate()  # type: ignore[attr-defined]
    proc.wait(timeout=10)  # type: ignore[attr-defined]
    answers = [
        server.http.post("/v2/models/adder/infer", json=_row([1, 1, float(i)])) for i in range(5)
    ]
    assert [a.status_code for a in answers] == [200] * 5
    assert [a.json()["outputs"][0]["data"] for a in answers] == [[2.0 + i] for i in range(5)]
    assert _lookups(server, "adder", "error") >= 1


def test_identical_requests_in_flight_share_one_computation() -> None:
    import asyncio

    from modelfleet.serving.cache import MemoryCache, OutputCache
    from modelfleet.serving.metrics import ServingMetrics

    calls = 0

    async def scenario() -> list[np.ndarray]:
        cache = OutputCache(MemoryCache(1 << 20), "sha", ServingMetrics().for_model("m", "1"))
        gate = asyncio.Event()

        async def compute() -> dict[str, np.ndarray]:
            nonlocal calls
            calls += 1
            await gate.wait()
            return {"Y": np.array([42.0])}

        inputs = {"X": np.array([[1.0, 2.0]])}
        tasks = [asyncio.create_task(cache.fetch(inputs, None, compute)) for _ in range(5)]
        await asyncio.sleep(0)
        gate.set()
        return [r["Y"] for r in await asyncio.gather(*tasks)]

    results = asyncio.run(scenario())
    assert calls == 1
    assert [r.tolist() for r in results] == [[42.0]] * 5


def test_memory_cache_is_bounded_by_bytes() -> None:
    import asyncio

    from modelfleet.serving.cache import MemoryCache

    async def scenario() -> MemoryCache:
        cache = MemoryCache(max_bytes=3000)
        for i in range(10):
            await cache.set(bytes([i]), {"Y": np.zeros(100)})  # ~900 bytes each
        assert await cache.get(bytes([0])) is None  # evicted, least recently used
        assert await cache.get(bytes([9])) is not None
        return cache

    cache = asyncio.run(scenario())
    assert cache.bytes <= 3000
    assert len(cache) == 3
