"""Cache keys, the stored format, and both backends directly (Redis is a real redis-server)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from modelfleet.errors import ConfigError
from modelfleet.serving.cache import (
    CacheUnavailableError,
    MemoryCache,
    OutputCache,
    RedisCache,
    cache_key,
    decode_arrays,
    encode_arrays,
    key_prefix,
    open_cache,
)
from modelfleet.serving.metrics import ServingMetrics
from tests.models import ALL_DTYPES
from tests.servers import free_port, redis_server

NS = "0123456789abcdef" * 4  # a model version's sha256


def _arrays() -> dict[str, np.ndarray[Any, Any]]:
    out: dict[str, np.ndarray[Any, Any]] = {}
    for dtype in ALL_DTYPES:
        if dtype == "string":
            out[dtype] = np.array([["a", "β"], ["", "z"]], dtype=object)
        else:
            out[dtype] = np.arange(4).reshape(2, 2).astype(dtype)
    out["empty"] = np.zeros((0, 3), np.float32)
    out["strided"] = np.arange(12, dtype=np.int32).reshape(3, 4)[:, ::2]
    return out


def test_stored_outputs_decode_to_equal_arrays() -> None:
    original = _arrays()
    decoded = decode_arrays(encode_arrays(original))
    assert list(decoded) == list(original)
    for name, array in original.items():
        assert decoded[name].shape == array.shape
        assert decoded[name].dtype == array.dtype
        np.testing.assert_array_equal(decoded[name], array)


def test_keys_change_with_anything_that_changes_the_answer() -> None:
    x = {"X": np.array([[1.0, 2.0]], np.float32)}
    base = cache_key(NS, x, None)
    assert base.startswith(key_prefix(NS)) and key_prefix(NS) == b"mf:" + NS[:16].encode() + b":"
    assert cache_key(NS, {"X": np.array([[1.0, 2.0]], np.float32)}, None) == base
    assert cache_key(NS, x, ["a", "b"]) == cache_key(NS, x, ["b", "a"])
    different = [
        cache_key("f" * 64, x, None),  # another model version
        cache_key(NS, {"X": x["X"].astype(np.float64)}, None),  # same values, other dtype
        cache_key(NS, {"X": x["X"].reshape(2, 1)}, None),  # same bytes, other shape
        cache_key(NS, {"Y": x["X"]}, None),  # other input name
        cache_key(NS, {"X": np.array([[1.0, 2.5]], np.float32)}, None),
        cache_key(NS, x, ["a"]),  # other outputs selected
    ]
    assert len({base, *different}) == 1 + len(different)
    strings = [
        cache_key(NS, {"s": np.array(v, dtype=object)}, None) for v in (["ab", "c"], ["a", "bc"])
    ]
    assert strings[0] != strings[1]  # element boundaries count, not just the joined text


def test_memory_cache_lru_drop_and_oversize_entries() -> None:
    async def scenario() -> None:
        cache = MemoryCache(max_bytes=2000)
        value = {"Y": np.zeros(100)}  # ~870 bytes with its key: two fit
        await cache.set(b"mf:a:1", value)
        await cache.set(b"mf:a:2", value)
        assert await cache.get(b"mf:a:1") is not None  # 1 is now the most recent
        await cache.set(b"mf:b:3", value)
        assert await cache.get(b"mf:a:2") is None
        assert await cache.get(b"mf:a:1") is not None
        await cache.set(b"mf:b:huge", {"Y": np.zeros(10_000)})  # larger than the whole cache
        assert await cache.get(b"mf:b:huge") is None and len(cache) == 2
        await cache.set(b"mf:a:1", value)  # replacing an entry does not count it twice
        assert cache.bytes < 2000 and len(cache) == 2
        assert await cache.drop(b"mf:a:") == 1
        assert await cache.get(b"mf:b:3") is not None
        await cache.close()
        assert (len(cache), cache.bytes) == (0, 0)

    asyncio.run(scenario())


def test_unknown_backends_and_bad_urls_are_config_errors() -> None:
    assert isinstance(open_cache("memory", max_bytes=10, ttl_s=1), MemoryCache)
    with pytest.raises(ConfigError) as info:
        open_cache("memcached://x", max_bytes=10, ttl_s=1)
    assert str(info.value) == (
        "unknown cache backend 'memcached://x'; use 'memory' or redis://host:port/0"
    )
    with pytest.raises(ConfigError, match="invalid Redis URL 'redis://h:port/0'"):
        RedisCache("redis://h:port/0", ttl_s=1)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as (url, _):
        yield url


def test_redis_stores_expires_and_drops_one_version(redis_url: str) -> None:
    import redis.asyncio as aioredis

    async def scenario() -> None:
        assert isinstance(open_cache(redis_url, max_bytes=0, ttl_s=1), RedisCache)
        # The server's 50 ms socket timeout would make this test flaky on a busy machine.
        cache = RedisCache(redis_url, ttl_s=120, timeout_s=10)
        other = "e" * 64
        value = _arrays()
        keys = [cache_key(NS, {"X": np.array([float(i)])}, None) for i in range(1500)]
        for key in keys:
            await cache.set(key, value)
        kept = cache_key(other, {"X": np.array([0.0])}, None)
        await cache.set(kept, value)
        got = await cache.get(keys[7])
        assert got is not None
        for name, array in value.items():
            np.testing.assert_array_equal(got[name], array)
            assert got[name].dtype == array.dtype
        async with aioredis.Redis.from_url(redis_url) as plain:  # Redis's own view
            assert 0 < await plain.ttl(keys[7]) <= 120
        assert await cache.get(cache_key(NS, {"X": np.array([-1.0])}, None)) is None
        assert await cache.drop(key_prefix(NS)) == 1500  # more than one scan batch
        assert await cache.get(keys[0]) is None
        assert await cache.get(kept) is not None
        assert cache.errors == 0
        await cache.drop(key_prefix(other))
        await cache.close()

    asyncio.run(scenario())


def test_redis_unreachable_degrades_to_no_cache() -> None:
    async def scenario() -> None:
        cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", ttl_s=5, pause_s=60)
        with pytest.raises(CacheUnavailableError):
            await cache.get(b"mf:k")
        assert cache.errors == 1
        with pytest.raises(CacheUnavailableError):
            await cache.get(b"mf:k")  # paused: no new connection attempt, no new error
        await cache.set(b"mf:k", {"Y": np.zeros(1)})  # never raises
        assert cache.errors == 1
        await cache.close()

    asyncio.run(scenario())


def test_a_failed_computation_reaches_sharers_and_is_not_cached() -> None:
    async def scenario() -> None:
        metrics = ServingMetrics()
        backend = MemoryCache(1 << 20)
        cache = OutputCache(backend, NS, metrics.for_model("m", "1"))
        gate = asyncio.Event()
        calls = 0

        async def failing() -> dict[str, np.ndarray[Any, Any]]:
            nonlocal calls
            calls += 1
            await gate.wait()
            raise ValueError("runner blew up")

        x = {"X": np.array([[1.0]])}
        tasks = [asyncio.create_task(cache.fetch(x, None, failing)) for _ in range(3)]
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert calls == 1
        assert all(isinstance(r, ValueError) and str(r) == "runner blew up" for r in results)
        assert len(backend) == 0

        async def working() -> dict[str, np.ndarray[Any, Any]]:
            return {"Y": np.array([2.0])}

        assert (await cache.fetch(x, None, working))["Y"].tolist() == [2.0]
        assert (await cache.fetch(x, None, failing))["Y"].tolist() == [2.0]  # a hit
        assert await cache.drop() == 1

        def count(result: str) -> float:
            labels = {"model": "m", "version": "1", "result": result}
            return metrics.registry.get_sample_value("modelfleet_cache_lookups_total", labels)

        assert (count("miss"), count("shared"), count("hit")) == (2, 2, 1)

    asyncio.run(scenario())
