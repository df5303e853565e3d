"""The predictions store in Redis, shared by every replica of a model server.

Any replica may record a prediction and any other may take its feedback: each change runs
as one Lua script (:mod:`redis_scripts`), so concurrent replicas keep the indexes and the
byte counter exact. Behaviour is that of the SQLite :class:`FeedbackStore` (insert or
replace by model and request id, eviction of the oldest records, all-or-nothing feedback,
accuracy over the last labelled requests, pruning by retention and row cap).

The budget ``max_bytes`` bounds logical bytes: per record its value, its key and a fixed
allowance for its index entries, counted in ``P:bytes`` by the same script that writes or
deletes the record; a write over budget evicts the oldest records in that script.
Redis's own memory use is larger (allocator, hash tables, skip lists), so set the Redis
server's ``maxmemory`` as the operator's outer bound; a write it refuses raises
:class:`StateUnavailableError` like an outage does.

Opening never connects, so a server starts while Redis is down; every call that cannot
reach or use Redis raises :class:`StateUnavailableError`, and the next call after Redis is
back works (redis-py reconnects by itself). All methods block: the server calls them on
one dedicated thread.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson

from modelfleet.errors import (
    ConfigError,
    MissingDependencyError,
    StateUnavailableError,
)
from modelfleet.serving.live import redis_scripts
from modelfleet.serving.live.feedback import Accuracy, FeedbackResult, Known, PredictionRow, judge
from modelfleet.serving.live.stores import _shown

_CHUNK_ROWS = 500  # predictions per script call: one round trip, a short script
_CHUNK_BYTES = 1 << 20  # or fewer rows when they are large
_EVICT_LIMIT = 5000  # records one script evicts at most; the rest in further calls
_PRUNE_BATCH = 2000  # records one prune call deletes: Redis answers others in between
# A prediction key expires this long after its retention: prune normally drops it first
# (and its index entries with it); the expiry only matters when no replica prunes.
_EXPIRE_SLACK_S = 3600
_Arg = str | int | float  # what a script argument may be


class RedisStore:
    """Predictions and feedback in one Redis server (the :class:`PredictionStore` of a fleet)."""

    def __init__(
        self,
        url: str,
        *,
        retention_s: float,
        max_predictions: int,
        max_bytes: int = 32 << 20,
        feedback_retention_s: float | None = None,
        timeout_s: float = 2.0,
        prefix: str = "modelfleet:state",
    ) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:
            raise MissingDependencyError(
                "redis", "redis", purpose="keep predictions and feedback in Redis"
            ) from exc
        self.url = url
        self.retention_s = retention_s
        self.feedback_retention_s = feedback_retention_s or retention_s
        self.max_predictions = max_predictions
        self.max_bytes = max_bytes
        self.prefix = prefix
        self._shown = _shown(url)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        try:
            # redis-py's default retries ten times with backoff (seconds of waiting while
            # Redis is down). One immediate retry on a broken connection covers a socket
            # that dies mid-call; none on a timeout: a hung server fails a call in about
            # timeout_s, not in multiples of it.
            self._client = redis.Redis.from_url(
                url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
                decode_responses=True,
            )
        except ValueError as exc:
            raise ConfigError(
                f"invalid Redis URL {self._shown}: {exc}",
                hint="use redis://HOST:PORT/DB, rediss://… or unix:///PATH?db=N",
            ) from exc
        # Scripts are sent by digest and loaded on a miss (after a restart too): no I/O here.
        self._add_predictions = self._client.register_script(redis_scripts.ADD_PREDICTIONS)
        self._add_feedback = self._client.register_script(redis_scripts.ADD_FEEDBACK)
        self._evict = self._client.register_script(redis_scripts.EVICT)
        self._prune = self._client.register_script(redis_scripts.PRUNE)
        self._accuracy = self._client.register_script(redis_scripts.ACCURACY)

    @contextmanager
    def _reaching(self, action: str) -> Iterator[None]:
        """Turn any failure to reach or use Redis into one clear :class:`StateUnavailableError`."""
        try:
            yield
        except self._errors as exc:
            # redis-py drops the error code of a server's refusal (OOM, READONLY, LOADING):
            # its class names it instead.
            text = " ".join(str(exc).split()).rstrip(".")
            reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
            raise StateUnavailableError(
                f"redis state backend {self._shown} failed to {action}: {reason}"
            ) from exc

    def close(self) -> None:
        """Close the connections."""
        with self._reaching("close"):
            self._client.close()

    def usage(self) -> int:
        """Logical bytes held (values, keys and index allowances; Redis itself uses more)."""
        with self._reaching("read its usage"):
            return int(self._client.get(f"{self.prefix}:bytes") or 0)

    def counts(self) -> dict[str, int]:
        """Records held, for status pages and tests."""
        with self._reaching("count records"):
            pipe = self._client.pipeline(transaction=False)
            pipe.zcard(f"{self.prefix}:pz")
            pipe.zcard(f"{self.prefix}:fz")
            predictions, feedback = pipe.execute()
        return {"predictions": int(predictions), "feedback": int(feedback)}

    def add_predictions(self, rows: Sequence[PredictionRow]) -> dict[str, int]:
        """Record predictions (a reused id keeps the newest); returns rows evicted per model.

        One script call per chunk of rows; each call evicts the oldest records until the
        store fits ``max_bytes`` again.
        """
        evicted: dict[str, int] = {}
        chunk: list[str] = []
        size = 0
        with self._reaching("record predictions"):
            for model, rid, version, ts, classes, count in rows:
                chunk += [model, rid, version, _stamp(ts), classes, str(int(count))]
                size += len(classes) + len(rid) + 64
                if len(chunk) >= _CHUNK_ROWS * 6 or size >= _CHUNK_BYTES:
                    self._write_predictions(chunk, evicted)
                    chunk, size = [], 0
            if chunk:
                self._write_predictions(chunk, evicted)
        return evicted

    def _write_predictions(self, chunk: list[str], evicted: dict[str, int]) -> None:
        head: list[_Arg] = [
            self.prefix,
            self.max_bytes,
            _EVICT_LIMIT,
            time.time(),
            self.retention_s,
        ]
        self._fitted(self._add_predictions(args=[*head, _EXPIRE_SLACK_S, *chunk]), evicted)

    def _fitted(self, reply: list[Any], evicted: dict[str, int]) -> None:
        """Count a script's evictions; evict on (in bounded calls) while over budget."""
        while True:
            more, *pairs = reply
            for model, count in zip(pairs[::2], pairs[1::2], strict=True):
                evicted[model] = evicted.get(model, 0) + int(count)
            if not int(more):
                return
            reply = self._evict(args=[self.prefix, self.max_bytes, _EVICT_LIMIT])

    def _lookup(self, model: str, ids: Sequence[str]) -> Known:
        found: Known = {}
        head = f"{self.prefix}:p:{len(model.encode())}:{model}:"  # a byte length, as in Lua
        for start in range(0, len(ids), _CHUNK_ROWS):
            chunk = ids[start : start + _CHUNK_ROWS]
            pipe = self._client.pipeline(transaction=False)
            for rid in chunk:
                pipe.hmget(head + rid, ["v", "c", "r"])
            for rid, (version, classes, rows) in zip(chunk, pipe.execute(), strict=True):
                if version is not None and classes is not None:
                    predicted = orjson.loads(classes)
                    found[rid] = (version, predicted, int(rows) if rows else len(predicted))
        return found

    def add_feedback(
        self, model: str, ids: Sequence[str], labels: Sequence[Any], kind: str
    ) -> FeedbackResult:
        """Join true labels to recorded predictions; all or nothing.

        A request whose classes were cut to the first rows is judged on those rows. Raises
        :class:`UnknownRequestIdError` (404) for ids never predicted (or pruned) and
        :class:`InvalidInputError` (400) for labels of the wrong type or count; nothing is
        written then. One script call writes every label, so a failure writes none.
        """
        with self._reaching("look up predictions"):
            known = self._lookup(model, list(dict.fromkeys(ids)))
        judged, result = judge(model, ids, labels, kind, known)
        args: list[_Arg] = [value for entry in judged for value in entry]
        head: list[_Arg] = [self.prefix, self.max_bytes, _EVICT_LIMIT, model, _stamp(time.time())]
        with self._reaching("record feedback"):
            self._fitted(self._add_feedback(args=[*head, *args]), {})
        return result

    def accuracy(self, model: str, version: str, window: int) -> Accuracy:
        """Accuracy over the last ``window`` labelled requests of a version (rows weighted)."""
        with self._reaching("read live accuracy"):
            requests, rows, correct = self._accuracy(args=[self.prefix, model, version, window])
        rows = int(rows)
        return Accuracy(int(correct) / rows if rows else None, int(requests), rows)

    def prune(self, now: float | None = None) -> int:
        """Drop predictions and feedback past retention, and predictions beyond the row cap."""
        now = now or time.time()
        gone = 0
        with self._reaching("prune"):
            for which, cutoff, cap in (
                ("p", now - self.retention_s, self.max_predictions),
                ("f", now - self.feedback_retention_s, -1),
            ):
                while True:
                    count = int(
                        self._prune(args=[self.prefix, which, _stamp(cutoff), cap, _PRUNE_BATCH])
                    )
                    gone += count
                    if count < _PRUNE_BATCH:
                        break
        return gone


def _stamp(ts: float) -> str:
    """A time to the microsecond, as a script argument.

    Always as long, so a record written again keeps its size in the byte counter.
    """
    return f"{ts:.6f}"
