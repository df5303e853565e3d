"""The Redis predictions store against a real redis-server: shared by replicas, bounded, down."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from modelfleet.errors import InvalidInputError, StateUnavailableError, UnknownRequestIdError
from modelfleet.serving.live.feedback import PredictionRow
from modelfleet.serving.live.redis_store import RedisStore
from modelfleet.serving.live.stores import open_store
from modelfleet.serving.settings import MonitoringConfig, StateConfig
from tests.servers import free_port, redis_server, wait_until

HOUR = 3600.0


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as (url, _):
        yield url


@pytest.fixture
def prefix() -> str:
    """A namespace of its own for each test on the shared server."""
    return f"t-{uuid.uuid4().hex[:10]}"


def _store(url: str, prefix: str, **bounds: float) -> RedisStore:
    options: dict[str, float] = {"retention_s": HOUR, "max_predictions": 1_000_000} | bounds
    return RedisStore(url, prefix=prefix, **options)  # type: ignore[arg-type]


def _rows(
    ids: list[str], *, model: str = "iris", version: str = "1", ts: float | None = None
) -> list[PredictionRow]:
    """One prediction per id, class ``i % 3``, a millisecond apart (the first is the oldest)."""
    start = time.time() if ts is None else ts
    return [(model, rid, version, start + i / 1000, f"[{i % 3}]", 1) for i, rid in enumerate(ids)]


def test_two_replicas_share_predictions_feedback_and_accuracy(redis_url: str, prefix: str) -> None:
    one, two = _store(redis_url, prefix), _store(redis_url, prefix)
    assert one.add_predictions(_rows([f"r{i}" for i in range(10)])) == {}
    # Replica two recorded r9 again for version 2: the newest record of an id wins.
    assert two.add_predictions(_rows(["r9"], version="2", ts=time.time() + 1)) == {}
    assert one.counts() == two.counts() == {"predictions": 10, "feedback": 0}
    labels = [0, 1, 2, 0, 1, 2, 1, 2, 0, 0]  # r6..r8 wrong; r9 right for version 2
    result = two.add_feedback("iris", [f"r{i}" for i in range(10)], labels, "int")
    assert (result.accepted, result.rows, result.correct) == (10, 10, 7)
    assert result.per_version == {"1": (9, 6), "2": (1, 1)}
    for store in (one, two):
        accuracy = store.accuracy("iris", "1", 100)
        assert (accuracy.value, accuracy.requests, accuracy.rows) == (6 / 9, 9, 9)
        assert store.accuracy("iris", "1", 3).value == 0.0  # the last three labels were wrong
        assert store.accuracy("iris", "2", 100).value == 1.0
        assert store.accuracy("iris", "3", 100).value is None
    assert one.usage() == two.usage() > 0
    one.close()
    two.close()


def test_keys_are_safe_for_any_model_name_and_request_id(redis_url: str, prefix: str) -> None:
    store = _store(redis_url, prefix)
    # Joined naively with ':' these pairs would share a key.
    pairs = [("a", "b:c"), ("a:b", "c"), ("a", "1:a:b"), ("1", "a:b"), ("a", "*"), ("a", "x y{z}")]
    pairs.append(("modèle", "id"))  # a length in bytes, not characters
    ts = time.time()
    store.add_predictions([(m, rid, "1", ts, f"[{i}]", 1) for i, (m, rid) in enumerate(pairs)])
    assert store.counts()["predictions"] == len(pairs)
    for i, (model, rid) in enumerate(pairs):
        assert store.add_feedback(model, [rid], [i], "int").correct == 1
    assert store.accuracy("a", "1", 10).requests == 4
    assert store.accuracy("a:b", "1", 10).requests == 1


def test_clipped_requests_are_judged_on_their_recorded_rows(redis_url: str, prefix: str) -> None:
    store = _store(redis_url, prefix)
    store.add_predictions([("iris", "big", "1", time.time(), '["x","y"]', 5)])
    with pytest.raises(InvalidInputError, match="has 2 label"):
        store.add_feedback("iris", ["big"], [["x", "y"]], "text")
    result = store.add_feedback("iris", ["big"], [["x", "z", "q", "q", "q"]], "text")
    assert (result.rows, result.correct) == (2, 1)


def test_relabelling_replaces_the_earlier_label(redis_url: str, prefix: str) -> None:
    store = _store(redis_url, prefix)
    store.add_predictions(_rows(["a", "b"]))  # both predict class 0 / 1
    store.add_feedback("iris", ["a", "b"], [2, 2], "int")
    used = store.usage()
    store.add_feedback("iris", ["a"], [0], "int")
    accuracy = store.accuracy("iris", "1", 10)
    assert (accuracy.value, accuracy.requests) == (0.5, 2)
    assert store.counts()["feedback"] == 2
    assert store.usage() == used  # the earlier label's bytes were given back
    # The relabelled request is now the newest: a window of one sees it alone.
    assert store.accuracy("iris", "1", 1).value == 1.0
    # A label follows the version that predicted the id last.
    store.add_predictions(_rows(["a"], version="2", ts=time.time() + 1))
    store.add_feedback("iris", ["a"], [0], "int")
    assert store.accuracy("iris", "1", 10).requests == 1
    assert store.accuracy("iris", "2", 10).requests == 1


def test_unknown_ids_and_bad_labels_write_nothing(redis_url: str, prefix: str) -> None:
    store = _store(redis_url, prefix)
    store.add_predictions(_rows(["a", "b"]))
    used = store.usage()
    with pytest.raises(UnknownRequestIdError, match=r"'nope'.*X-Request-Id"):
        store.add_feedback("iris", ["a", "nope", "b"], [0, 0, 1], "int")
    with pytest.raises(UnknownRequestIdError):
        store.add_feedback("other-model", ["a"], [0], "int")  # ids belong to their model
    with pytest.raises(InvalidInputError, match=r"labels\[1\] \(request 'b'\) has 2 label"):
        store.add_feedback("iris", ["a", "b"], [0, [1, 1]], "int")
    with pytest.raises(InvalidInputError, match="integer labels"):
        store.add_feedback("iris", ["a", "b"], [0, "1"], "int")
    with pytest.raises(InvalidInputError, match="integer labels"):
        store.add_feedback("iris", ["a", "b"], [0, True], "int")
    assert store.counts() == {"predictions": 2, "feedback": 0}
    assert store.usage() == used
    assert store.accuracy("iris", "1", 10).requests == 0


def test_bytes_stay_within_budget_and_the_oldest_go_first(redis_url: str, prefix: str) -> None:
    budget = 64 << 10
    store = _store(redis_url, prefix, max_bytes=budget)
    classes = "[" + ",".join(["1"] * 100) + "]"  # ~200 bytes a request, 100 rows
    start = time.time() - HOUR
    evicted = 0
    for batch in range(10):  # ~2 MB in all: thirty times the budget
        rows: list[PredictionRow] = [
            ("iris", f"r{batch}-{i}", "1", start + batch + i / 10_000, classes, 100)
            for i in range(1000)
        ]
        dropped = store.add_predictions(rows)
        assert set(dropped) <= {"iris"}
        evicted += dropped.get("iris", 0)
        assert 0 < store.usage() <= budget
    kept = store.counts()["predictions"]
    assert 0 < kept < 1000
    assert evicted == (10_000 - kept) * 100  # predicted rows, not records
    with pytest.raises(UnknownRequestIdError):
        store.add_feedback("iris", ["r0-0"], [[1] * 100], "int")
    assert store.add_feedback("iris", ["r9-999"], [[1] * 100], "int").correct == 100
    assert store.usage() <= budget


def test_feedback_older_than_predictions_is_evicted_first(redis_url: str, prefix: str) -> None:
    budget = 32 << 10
    store = _store(redis_url, prefix, max_bytes=budget)
    store.add_predictions(_rows([f"old{i}" for i in range(20)], model="wine", ts=time.time() - 10))
    store.add_feedback("wine", [f"old{i}" for i in range(20)], [0] * 20, "int")
    # Newer predictions than the labels push everything older out, labels included.
    dropped = store.add_predictions(_rows([f"new{i}" for i in range(2000)], ts=time.time() + 10))
    assert dropped["wine"] == 20 + 20  # twenty predictions and twenty labelled rows
    assert store.counts()["feedback"] == 0
    assert store.usage() <= budget
    assert store.accuracy("wine", "1", 100).requests == 0


def test_a_replica_with_a_smaller_budget_evicts_in_bounded_steps(
    redis_url: str, prefix: str
) -> None:
    big = _store(redis_url, prefix, max_bytes=8 << 20)
    big.add_predictions(_rows([f"r{i}" for i in range(12_000)], ts=time.time() - 60))
    assert big.counts()["predictions"] == 12_000
    small = _store(redis_url, prefix, max_bytes=16 << 10)
    dropped = small.add_predictions(_rows(["last"]))
    kept = small.counts()["predictions"]
    assert dropped == {"iris": 12_001 - kept}  # more than one script's eviction limit
    assert small.usage() <= 16 << 10
    assert small.add_feedback("iris", ["last"], [0], "int").correct == 1


def test_prune_drops_predictions_and_feedback_past_their_retention(
    redis_url: str, prefix: str
) -> None:
    store = _store(redis_url, prefix, retention_s=HOUR, feedback_retention_s=24 * HOUR)
    now = time.time()
    store.add_predictions(_rows(["a", "b", "c"], ts=now))
    store.add_feedback("iris", ["a", "b"], [0, 1], "int")
    assert store.prune(now=now + 60) == 0
    assert store.prune(now=now + 2 * HOUR) == 3
    assert store.counts() == {"predictions": 0, "feedback": 2}
    with pytest.raises(UnknownRequestIdError):
        store.add_feedback("iris", ["c"], [2], "int")
    assert store.accuracy("iris", "1", 10).value == 1.0  # labels outlive their predictions
    assert store.prune(now=now + 25 * HOUR) == 2
    assert store.counts() == {"predictions": 0, "feedback": 0}
    assert store.accuracy("iris", "1", 10).requests == 0
    assert store.usage() == 0


def test_prune_keeps_the_newest_rows_under_the_row_cap(redis_url: str, prefix: str) -> None:
    store = _store(redis_url, prefix, max_predictions=10)
    ids = [f"r{i}" for i in range(2500)]  # more than one prune batch over the cap
    store.add_predictions(_rows(ids, ts=time.time() - 10))
    assert store.prune() == 2490
    assert store.counts()["predictions"] == 10
    with pytest.raises(UnknownRequestIdError):
        store.add_feedback("iris", ["r2489"], [0], "int")
    assert store.add_feedback("iris", ids[-10:], [i % 3 for i in range(2490, 2500)], "int").correct
    assert store.prune() == 0


def test_prediction_keys_expire_as_a_safety_net(redis_url: str, prefix: str) -> None:
    store = _store(redis_url, prefix, retention_s=600)
    store.add_predictions(_rows(["a"]))
    plain = redis.Redis.from_url(redis_url)
    keys = list(plain.scan_iter(match=f"{prefix}:*"))
    ttls = [plain.ttl(key) for key in keys]
    assert any(600 < ttl <= 600 + 2 * HOUR for ttl in ttls)  # the prediction itself
    assert all(ttl == -1 or ttl > 600 for ttl in ttls)  # indexes and counters stay
    plain.close()


def test_stores_with_different_prefixes_do_not_see_each_other(redis_url: str) -> None:
    one, two = _store(redis_url, "fleet-one"), _store(redis_url, "fleet-two")
    one.add_predictions(_rows(["a"], ts=time.time() - 2 * HOUR))
    assert two.counts() == {"predictions": 0, "feedback": 0}
    assert two.usage() == 0
    with pytest.raises(UnknownRequestIdError):
        two.add_feedback("iris", ["a"], [0], "int")
    assert two.prune() == 0
    assert one.counts()["predictions"] == 1
    assert one.prune() == 1


def test_concurrent_replicas_keep_the_byte_counter_exact(redis_url: str, prefix: str) -> None:
    budget = 64 << 10  # below what the replicas write: they evict each other's records
    errors: list[BaseException] = []

    def replica(n: int) -> None:
        store = _store(redis_url, prefix, max_bytes=budget)
        try:
            for round_ in range(20):
                ids = [f"r{(n * 7 + round_ * 13 + i) % 400}" for i in range(60)]  # overlapping
                store.add_predictions(_rows(ids))
                store.add_feedback("iris", ids[:5], [0] * 5, "int")
        except Exception as exc:  # reported below: a thread's exception would be lost
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=replica, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    store = _store(redis_url, prefix, max_bytes=budget)
    assert 0 < store.usage() <= budget
    assert store.prune(now=time.time() + 1000 * HOUR) > 0
    assert store.counts() == {"predictions": 0, "feedback": 0}
    assert store.usage() == 0  # every byte counted in was counted out


def test_an_unreachable_url_opens_and_fails_each_call_clearly() -> None:
    port = free_port()
    url = f"redis://fleet:s3cret@127.0.0.1:{port}/0"
    store = RedisStore(url, retention_s=HOUR, max_predictions=10, timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(StateUnavailableError) as info:
        store.usage()
    assert time.monotonic() - started < 5.0
    message = str(info.value)
    shown = f"'redis://fleet:***@127.0.0.1:{port}/0'"
    assert message.startswith(
        f"redis state backend {shown} failed to read its usage: ConnectionError: Error 111"
    )
    assert "s3cret" not in message
    assert "\n" not in message
    assert isinstance(info.value.__cause__, redis.ConnectionError)
    for call in (
        lambda: store.add_predictions(_rows(["a"])),
        lambda: store.add_feedback("iris", ["a"], [0], "int"),
        lambda: store.accuracy("iris", "1", 10),
        store.prune,
        store.counts,
    ):
        with pytest.raises(StateUnavailableError):
            call()
    store.close()


def test_open_store_picks_redis_for_a_redis_url(redis_url: str, tmp_path: Path) -> None:
    store = open_store(StateConfig(url=redis_url), MonitoringConfig(), tmp_path)
    assert isinstance(store, RedisStore)
    store.add_predictions(_rows(["a"]))
    assert store.counts()["predictions"] == 1
    assert store.prune(now=time.time() + 400 * 24 * HOUR) == 1
    store.close()


def test_the_same_store_works_again_after_redis_hangs_dies_and_restarts() -> None:
    with redis_server() as (url, process):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        store = RedisStore(url, retention_s=HOUR, max_predictions=100, timeout_s=0.5)
        store.add_predictions(_rows(["a"]))
        os.kill(process.pid, signal.SIGSTOP)  # hung: connections open, no answers
        try:
            started = time.monotonic()
            with pytest.raises(StateUnavailableError, match="TimeoutError: Timeout"):
                store.add_feedback("iris", ["a"], [0], "int")
            assert time.monotonic() - started < 5.0
        finally:
            os.kill(process.pid, signal.SIGCONT)
        assert store.add_feedback("iris", ["a"], [0], "int").correct == 1
        process.kill()
        process.wait(timeout=10)
        started = time.monotonic()
        with pytest.raises(StateUnavailableError, match=f"127.0.0.1:{port}"):
            store.accuracy("iris", "1", 10)
        assert time.monotonic() - started < 5.0
    with redis_server(port=port):  # back, empty (the test server keeps nothing on disk)
        assert store.counts() == {"predictions": 0, "feedback": 0}
        store.add_predictions(_rows(["b"]))
        assert store.add_feedback("iris", ["b"], [0], "int").correct == 1
        assert store.accuracy("iris", "1", 10).value == 1.0
    # Restarted while idle: the pooled connection is dead, and the next call works anyway.
    with redis_server(port=port):
        assert store.counts() == {"predictions": 0, "feedback": 0}
    store.close()


def test_a_full_or_read_only_redis_refuses_writes_whole() -> None:
    with redis_server() as (url, _), redis_server() as (replica_url, _):
        store = RedisStore(url, retention_s=HOUR, max_predictions=100)
        store.add_predictions(_rows(["a", "b"], ts=time.time() - 2 * HOUR))
        store.add_feedback("iris", ["a"], [0], "int")
        plain = redis.Redis.from_url(url)
        plain.config_set("maxmemory", 1)  # the operator's outer bound, reached
        used = store.usage()
        with pytest.raises(StateUnavailableError, match="OutOfMemoryError: command not allowed"):
            store.add_predictions(_rows(["c"]))
        with pytest.raises(StateUnavailableError, match="OutOfMemoryError"):
            store.add_feedback("iris", ["b"], [1], "int")
        assert store.counts() == {"predictions": 2, "feedback": 1}
        assert store.usage() == used
        assert store.prune() == 2  # pruning only deletes: it runs to free memory
        plain.config_set("maxmemory", 0)
        store.add_predictions(_rows(["c"]))
        plain.config_set("repl-diskless-sync-delay", 0)  # the replica syncs at once
        plain.close()
        # A replica answers reads but refuses writes (a failover left the URL on it).
        host, port = url.split("//")[1].split("/")[0].split(":")
        follower = redis.Redis.from_url(replica_url)
        follower.replicaof(host, port)
        wait_until(lambda: follower.info("replication")["master_link_status"] == "up")
        follower.close()
        on_replica = RedisStore(replica_url, retention_s=HOUR, max_predictions=100)
        assert on_replica.accuracy("iris", "1", 10).requests == 1
        assert on_replica.counts() == {"predictions": 1, "feedback": 1}
        with pytest.raises(StateUnavailableError, match="ReadOnlyError"):
            on_replica.add_predictions(_rows(["d"]))
        with pytest.raises(StateUnavailableError, match="ReadOnlyError"):
            on_replica.prune(now=time.time() + 1000 * HOUR)
        assert on_replica.counts() == {"predictions": 1, "feedback": 1}
