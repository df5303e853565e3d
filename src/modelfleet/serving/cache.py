"""Output cache: repeat answers for repeated inputs, in memory or in Redis shared by replicas.

Keys are the sha256 of the model artifact's digest, the canonical bytes of every input and
the requested outputs, so a new version never sees an old version's entries. Identical
requests in flight share one computation. A Redis outage never fails a request: lookups
count as errors, serving continues uncached, and Redis is retried after a short pause.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import numpy as np
import orjson

from modelfleet.errors import ConfigError, MissingDependencyError
from modelfleet.serving.metrics import ModelMetrics
from modelfleet.signature import ArrayDict, Arrays

logger = logging.getLogger(__name__)


class Cache(Protocol):
    """Where cached outputs live."""

    name: str

    async def get(self, key: bytes) -> ArrayDict | None:
        """The stored outputs, or None on a miss."""
        ...

    async def set(self, key: bytes, value: ArrayDict) -> None:
        """Store outputs."""
        ...

    async def drop(self, prefix: bytes) -> int:
        """Remove every entry whose key starts with ``prefix``; returns how many."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def cache_key(namespace: str, inputs: Arrays, outputs: Sequence[str] | None) -> bytes:
    """``key_prefix(namespace)`` + digest of (namespace, inputs with dtype and shape, outputs).

    The prefix lets every entry of one model version be dropped at once.
    """
    digest = hashlib.sha256(namespace.encode())
    for name in sorted(inputs):
        array = inputs[name]
        digest.update(f"|{name}|{array.dtype.str}|{array.shape}|".encode())
        if array.dtype.kind == "O":
            for item in array.ravel():
                text = str(item).encode()
                digest.update(struct.pack("<I", len(text)))
                digest.update(text)
        else:
            digest.update(np.ascontiguousarray(array).data)
    digest.update(b"|outputs|" + ",".join(sorted(outputs) if outputs else ["*"]).encode())
    return key_prefix(namespace) + digest.digest()


def key_prefix(namespace: str) -> bytes:
    """The start of every cache key of one namespace (a model version's sha256)."""
    return b"mf:" + namespace[:16].encode() + b":"


def _nbytes(value: Arrays) -> int:
    total = 0
    for array in value.values():
        if array.dtype.kind == "O":
            total += sum(len(str(v)) for v in array.ravel()) + 8 * array.size
        else:
            total += array.nbytes
    return total + 64


class MemoryCache:
    """In-process LRU bounded by the bytes of the outputs it holds."""

    name = "memory"

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[bytes, tuple[ArrayDict, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: bytes) -> ArrayDict | None:
        """Look up and mark as recently used."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    async def set(self, key: bytes, value: ArrayDict) -> None:
        """Store, evicting the least recently used entries beyond the byte budget."""
        size = _nbytes(value) + len(key)
        if size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self._entries[key] = (value, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.bytes -= dropped

    async def drop(self, prefix: bytes) -> int:
        """Remove the entries of one namespace."""
        doomed = [key for key in self._entries if key.startswith(prefix)]
        for key in doomed:
            self.bytes -= self._entries.pop(key)[1]
        return len(doomed)

    async def clear(self) -> None:
        """Drop everything."""
        self._entries.clear()
        self.bytes = 0

    async def close(self) -> None:
        """Nothing to release."""
        await self.clear()


def encode_arrays(value: Arrays) -> bytes:
    """Named arrays to bytes without pickle: a JSON header, then the raw buffers."""
    header: list[list[Any]] = []
    blobs: list[bytes] = []
    for name, array in value.items():
        if array.dtype.kind in ("O", "U", "S"):
            header.append([name, "str", list(array.shape), [str(v) for v in array.ravel()]])
        else:
            data = np.ascontiguousarray(array).tobytes()
            header.append([name, array.dtype.str, list(array.shape), len(data)])
            blobs.append(data)
    head = orjson.dumps(header)
    return struct.pack("<I", len(head)) + head + b"".join(blobs)


def decode_arrays(data: bytes) -> ArrayDict:
    """Inverse of :func:`encode_arrays`."""
    (length,) = struct.unpack_from("<I", data)
    header = orjson.loads(data[4 : 4 + length])
    offset = 4 + length
    out: ArrayDict = {}
    for name, dtype, shape, extra in header:
        if dtype == "str":
            out[name] = np.array(extra, dtype=object).reshape(shape)
        else:
            out[name] = np.frombuffer(
                data, dtype=np.dtype(dtype), count=int(np.prod(shape)), offset=offset
            ).reshape(shape)
            offset += extra
    return out


class RedisCache:
    """Outputs in Redis, shared by every replica; an outage degrades to no caching."""

    name = "redis"

    def __init__(
        self, url: str, *, ttl_s: int, timeout_s: float = 0.05, pause_s: float = 1.0
    ) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:
            raise MissingDependencyError("redis", "redis", purpose="use a Redis cache") from exc
        try:
            self._client = aioredis.Redis.from_url(
                url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
            )
        except ValueError as exc:
            raise ConfigError(f"invalid Redis URL {url!r}: {exc}") from exc
        self.url = url
        self.ttl_s = ttl_s
        self.pause_s = pause_s
        self._down_until = 0.0
        self.errors = 0

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        if self._available():
            logger.warning("redis cache at %s unavailable (%s); serving uncached", self.url, exc)
        self._down_until = time.monotonic() + self.pause_s

    async def get(self, key: bytes) -> ArrayDict | None:
        """Look up; raises :class:`CacheUnavailableError` while Redis is down."""
        if not self._available():
            raise CacheUnavailableError(self.url)
        try:
            data = await self._client.get(key)
        except (OSError, TimeoutError, _redis_errors()) as exc:
            self._failed(exc)
            raise CacheUnavailableError(self.url) from exc
        if data is None:
            return None
        return decode_arrays(data if isinstance(data, bytes) else data.encode("latin-1"))

    async def set(self, key: bytes, value: ArrayDict) -> None:
        """Store with the configured expiry; failures are counted, never raised."""
        if not self._available():
            return
        try:
            await self._client.set(key, encode_arrays(value), ex=self.ttl_s)
        except (OSError, TimeoutError, _redis_errors()) as exc:
            self._failed(exc)

    async def drop(self, prefix: bytes) -> int:
        """Remove the entries of one namespace (every replica sees them go)."""
        dropped = 0
        try:
            batch: list[bytes] = []
            async for key in self._client.scan_iter(match=prefix + b"*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    dropped += await self._client.unlink(*batch)
                    batch.clear()
            if batch:
                dropped += await self._client.unlink(*batch)
        except (OSError, TimeoutError, _redis_errors()) as exc:
            self._failed(exc)
        return dropped

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def _redis_errors() -> type[BaseException]:
    import redis.exceptions

    return redis.exceptions.RedisError


class CacheUnavailableError(Exception):
    """The cache backend cannot be reached; the request continues uncached."""


def open_cache(backend: str, *, max_bytes: int, ttl_s: int) -> Cache:
    """``memory`` or a ``redis://`` URL."""
    if backend == "memory":
        return MemoryCache(max_bytes)
    if backend.startswith(("redis://", "rediss://", "unix://")):
        return RedisCache(backend, ttl_s=ttl_s)
    raise ConfigError(
        f"unknown cache backend {backend!r}", hint="use 'memory' or redis://host:port/0"
    )


class OutputCache:
    """The cache of one served model version, with in-flight sharing and metrics."""

    def __init__(self, backend: Cache, namespace: str, metrics: ModelMetrics) -> None:
        self.backend = backend
        self.namespace = namespace
        self.metrics = metrics
        self._inflight: dict[bytes, asyncio.Future[ArrayDict]] = {}

    async def drop(self) -> int:
        """Forget every cached output of this model version."""
        return await self.backend.drop(key_prefix(self.namespace))

    async def fetch(
        self,
        inputs: Arrays,
        outputs: Sequence[str] | None,
        compute: Callable[[], Awaitable[ArrayDict]],
    ) -> ArrayDict:
        """Cached outputs for ``inputs``, computing (once for identical requests) on a miss."""
        key = cache_key(self.namespace, inputs, outputs)
        try:
            hit = await self.backend.get(key)
        except CacheUnavailableError:
            self.metrics.cache_result("error")
            return await compute()
        if hit is not None:
            self.metrics.cache_result("hit")
            return hit
        pending = self._inflight.get(key)
        if pending is not None:
            self.metrics.cache_result("shared")
            return await asyncio.shield(pending)
        self.metrics.cache_result("miss")
        future: asyncio.Future[ArrayDict] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await compute()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here; waiters still receive it
            raise
        finally:
            self._inflight.pop(key, None)
        future.set_result(value)
        await self.backend.set(key, value)
        return value
