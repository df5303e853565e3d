"""The PostgreSQL predictions store on a real server: shared by replicas, bounded, down and back."""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from modelfleet.db import create_engines, current_revision, head_revision, upgrade_schema
from modelfleet.errors import InvalidInputError, StateUnavailableError, UnknownRequestIdError
from modelfleet.serving.live.feedback import PredictionRow
from modelfleet.serving.live.pg_store import PostgresStore
from modelfleet.serving.live.stores import open_store
from modelfleet.serving.settings import MonitoringConfig, StateConfig
from tests.servers import free_port, postgres_bin, postgres_server

pytestmark = pytest.mark.postgres

HOUR = 3600.0


@pytest.fixture
def stores() -> Iterator[list[PostgresStore]]:
    """Stores a test opens, closed at its end (before its database is dropped)."""
    opened: list[PostgresStore] = []
    yield opened
    for store in opened:
        store.close()


def _open(stores: list[PostgresStore], url: str, **bounds: float) -> PostgresStore:
    options: dict[str, float] = {"retention_s": HOUR, "max_predictions": 1_000_000} | bounds
    store = PostgresStore(url, **options)  # type: ignore[arg-type]
    stores.append(store)
    return store


def _rows(
    ids: list[str], *, model: str = "iris", version: str = "1", ts: float | None = None
) -> list[PredictionRow]:
    """One prediction per id, class ``i % 3``, a millisecond apart (the first is the oldest)."""
    start = time.time() if ts is None else ts
    return [(model, rid, version, start + i / 1000, f"[{i % 3}]", 1) for i, rid in enumerate(ids)]


def _size(row: PredictionRow) -> int:
    """The logical size the store counts for a prediction (text bytes plus 64)."""
    model, rid, version, _, classes, _ = row
    return len(model) + len(rid) + len(version) + len(classes.encode()) + 64


def test_two_replicas_share_predictions_feedback_and_accuracy(
    postgres_url: str, stores: list[PostgresStore]
) -> None:
    one, two = _open(stores, postgres_url), _open(stores, postgres_url)
    assert one.add_predictions(_rows([f"r{i}" for i in range(10)])) == {}
    # Replica two recorded r9 again for version 2: the newest record of an id wins.
    assert two.add_predictions(_rows(["r9"], version="2", ts=time.time() + 1)) == {}
    assert one.counts() == two.counts() == {"predictions": 10, "feedback": 0}
    labels = [i % 3 if i < 6 else (i + 1) % 3 for i in range(9)] + [0]  # r0..r5 and r9 right
    result = two.add_feedback("iris", [f"r{i}" for i in range(10)], labels, "int")
    assert (result.accepted, result.rows, result.correct) == (10, 10, 7)
    assert result.per_version == {"1": (9, 6), "2": (1, 1)}  # r9 of version 2 predicted 0
    assert one.accuracy("iris", "1", 100) == two.accuracy("iris", "1", 100)
    accuracy = one.accuracy("iris", "1", 100)
    assert (accuracy.value, accuracy.requests, accuracy.rows) == (6 / 9, 9, 9)
    assert one.accuracy("iris", "1", 3).requests == 3  # the window: latest labelled requests
    assert one.accuracy("iris", "3", 100).value is None
    assert one.usage() == two.usage() > 0


def test_clipped_requests_are_judged_on_their_recorded_rows(
    postgres_url: str, stores: list[PostgresStore]
) -> None:
    store = _open(stores, postgres_url)
    store.add_predictions([("iris", "big", "1", time.time(), "[0, 1]", 5)])  # 5 rows, 2 kept
    result = store.add_feedback("iris", ["big"], [[0, 1, 2, 2, 2]], "int")
    assert (result.rows, result.correct) == (2, 2)
    with pytest.raises(InvalidInputError, match="predicted 5 row"):
        store.add_feedback("iris", ["big"], [[0, 1]], "int")


def test_relabelling_replaces_the_earlier_label(
    postgres_url: str, stores: list[PostgresStore]
) -> None:
    store = _open(stores, postgres_url)
    store.add_predictions(_rows(["a", "b"]))  # a predicted 0, b predicted 1
    store.add_feedback("iris", ["a"], [2], "int")
    store.add_feedback("iris", ["b"], [1], "int")
    assert store.accuracy("iris", "1", 1).value == 1.0  # b is the latest labelled
    used = store.usage()
    store.add_feedback("iris", ["a"], [0], "int")  # a again: replaced, and now the latest
    assert store.counts() == {"predictions": 2, "feedback": 2}
    assert store.usage() == used
    latest = store.accuracy("iris", "1", 1)
    assert (latest.value, latest.requests) == (1.0, 1)
    assert store.accuracy("iris", "1", 10).value == 1.0  # a's wrong label is gone


def test_unknown_ids_and_bad_labels_write_nothing(
    postgres_url: str, stores: list[PostgresStore]
) -> None:
    store = _open(stores, postgres_url)
    store.add_predictions(_rows(["a", "b"]))
    used = store.usage()
    with pytest.raises(UnknownRequestIdError, match="'nope'"):
        store.add_feedback("iris", ["a", "nope"], [0, 0], "int")
    with pytest.raises(UnknownRequestIdError):
        store.add_feedback("other-model", ["a"], [0], "int")
    with pytest.raises(InvalidInputError, match="integer"):
        store.add_feedback("iris", ["a", "b"], [0, "one"], "int")
    with pytest.raises(InvalidInputError, match="text"):
        store.add_feedback("iris", ["a"], [0], "text")
    with pytest.raises(InvalidInputError, match="2 label"):
        store.add_feedback("iris", ["a"], [[0, 0]], "int")
    assert store.counts() == {"predictions": 2, "feedback": 0}
    assert store.usage() == used
    assert store.accuracy("iris", "1", 10).requests == 0


def test_bytes_stay_within_budget_and_the_oldest_go_first(
    postgres_url: str, stores: list[PostgresStore]
) -> None:
    budget = 100_000
    store = _open(stores, postgres_url, max_bytes=budget)
    start, written, evicted = time.time(), 0, 0
    for batch in range(20):  # ~1.2 MB of predictions in all, twelve times the budget
        ids = [f"b{batch}-{i:04d}" for i in range(500)]
        rows = _rows(ids, ts=start + batch)
        dropped = store.add_predictions(rows)
        written += len(rows)
        evicted += dropped.get("iris", 0)
        assert set(dropped) <= {"iris"}
        assert store.usage() <= budget
    held = store.counts()["predictions"]
    assert 0 < held < written
    assert evicted == written - held  # one row per prediction here
    assert store.usage() > budget - 200  # evicted just enough (a row is ~90 bytes)
    with pytest.raises(UnknownRequestIdError):
        store.add_feedback("iris", ["b0-0000"], [0], "int")
    newest = [f"b19-{i:04d}" for i in range(490, 500)]
    result = store.add_feedback("iris", newest, [i % 3 for i in range(490, 500)], "int")
    assert (result.accepted, result.correct) == (10, 10)
    assert store.usage() <= budget
    # The counter is exact: with everything pruned, nothing is left counted.
    left = store.counts()
    assert store.prune(now=start + 100 * HOUR) == left["predictions"] + left["feedback"]
    assert store.counts() == {"predictions": 0, "feedback": 0}
    assert store.usage() == 0


def test_feedback_older_than_predictions_is_evicted_first(
    postgres_url: str, stores: list[PostgresStore]
) -> None:
    store = _open(stores, postgres_url, max_bytes=20_000)
    later = time.time() + 1000  # these predictions are younger than the feedback given now
    store.add_predictions(_rows([f"p{i}" for i in range(100)], ts=later))
    store.add_feedback("iris", ["p0", "p1"], [0, 1], "int")
    assert store.counts() == {"predictions": 100, "feedback": 2}
    room = 20_000 - store.usage()
    extra = _rows([f"q{i}" for i in range(200)], ts=later + 10)
    needed = sum(_size(row) for row in extra) - room
    dropped = store.add_predictions(extra)
    counts = store.counts()
    assert counts["feedback"] == 0  # the feedback was the oldest record
    assert dropped["iris"] == 2 + (300 - counts["predictions"])  # its rows count as dropped
    assert needed > 0 and store.usage() <= 20_000
    store.add_feedback("iris", ["q199"], [199 % 3], "int")  # the newest are still there


def test_a_tiny_budget_evicts_in_bounded_steps(
    postgres_url: str, stores: list[PostgresStore]
) -> None:
    """One write far beyond the budget still lands within it (eviction loops in batches)."""
    store = _open(stores, postgres_url, max_bytes=2_000)
    rows = _rows([f"t{i:05d}" for i in range(5000)])
    dropped = store.add_predictions(rows)
    held = store.counts()["predictions"]
    assert dropped == {"iris": 5000 - held}
    assert 0 < held < 40 and store.usage() <= 2_000
    store.add_feedback("iris", ["t04999"], [4999 % 3], "int")


def test_prune_drops_predictions_and_feedback_past_their_retention(
    postgres_url: str, stores: list[PostgresStore]
) -> None:
    store = _open(stores, postgres_url, retention_s=100, feedback_retention_s=1000)
    now = time.time()
    store.add_predictions(_rows(["a", "b", "c"], ts=now))
    store.add_feedback("iris", ["a", "b"], [0, 0], "int")
    assert store.prune(now=now + 10) == 0
    assert store.prune(now=now + 500) == 3  # the predictions, not yet the feedback
    assert store.counts() == {"predictions": 0, "feedback": 2}
    assert store.accuracy("iris", "1", 10).requests == 2  # accuracy outlives its predictions
    with pytest.raises(UnknownRequestIdError):
        store.add_feedback("iris", ["c"], [2], "int")
    assert store.prune(now=now + 2000) == 2
    assert store.counts() == {"predictions": 0, "feedback": 0}
    assert store.usage() == 0


def test_prune_keeps_the_newest_rows_under_the_row_cap(
    postgres_url: str, stores: list[PostgresStore]
) -> None:
    store = _open(stores, postgres_url, max_predictions=50)
    rows = _rows([f"r{i:03d}" for i in range(120)])
    store.add_predictions(rows)
    assert store.prune() == 70
    assert store.counts()["predictions"] == 50
    assert store.usage() == sum(_size(row) for row in rows[70:])
    with pytest.raises(UnknownRequestIdError):
        store.add_feedback("iris", ["r069"], [69 % 3], "int")
    store.add_feedback("iris", ["r070", "r119"], [70 % 3, 119 % 3], "int")


def test_concurrent_replicas_keep_the_byte_counter_exact(
    postgres_url: str, stores: list[PostgresStore]
) -> None:
    """Four replicas write overlapping ids at once: the counter is the sum of what is held."""
    replicas = [_open(stores, postgres_url) for _ in range(4)]
    replicas[0].usage()  # one migration first; concurrent migration has its own test
    final: dict[str, PredictionRow] = {}
    lock = threading.Lock()

    def write(index: int) -> None:
        for batch in range(10):
            ids = [f"shared-{i}" for i in range(batch * 20, batch * 20 + 40)]
            rows = [
                ("iris", rid, str(index), time.time(), "[" + "1," * index + "0]", 1) for rid in ids
            ]
            replicas[index].add_predictions(rows)
            with lock:
                final.update({row[1]: row for row in rows})

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert replicas[1].counts()["predictions"] == 220
    # Whichever replica won an id, its row was counted and the one it replaced taken off.
    used = replicas[2].usage()
    assert min(map(_size, final.values())) * 220 <= used <= max(map(_size, final.values())) * 220
    replicas[3].prune(now=time.time() + 10 * HOUR)
    assert replicas[0].usage() == 0


def test_ten_thousand_predictions_in_one_batch(
    postgres_url: str, stores: list[PostgresStore]
) -> None:
    """One flush of a busy replica lands whole (its speed is measured in benchmarks/)."""
    store = _open(stores, postgres_url)
    rows = _rows([f"fast-{i:05d}" for i in range(10_000)])
    assert store.add_predictions(rows) == {}
    assert store.counts()["predictions"] == 10_000


def test_replicas_migrating_at_once_both_succeed(postgres_url: str) -> None:
    barrier, results = threading.Barrier(3), []

    def first_call() -> None:
        store = PostgresStore(postgres_url, retention_s=HOUR, max_predictions=10)
        try:
            barrier.wait()
            results.append(store.add_predictions(_rows([f"m{threading.get_ident()}"])))
        finally:
            store.close()

    threads = [threading.Thread(target=first_call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [{}, {}, {}]
    check = PostgresStore(postgres_url, retention_s=HOUR, max_predictions=10)
    try:
        assert check.counts() == {"predictions": 3, "feedback": 0}
    finally:
        check.close()


def test_the_state_tables_share_a_database_with_the_registry(
    postgres_url: str, stores: list[PostgresStore]
) -> None:
    read, write = create_engines(postgres_url)
    try:
        upgrade_schema(write, postgres_url)
        store = _open(stores, postgres_url)
        store.add_predictions(_rows(["x"]))
        upgrade_schema(write, postgres_url)  # each history keeps to its own version table
        assert current_revision(read) == head_revision()
        assert store.counts() == {"predictions": 1, "feedback": 0}
    finally:
        read.dispose()


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg"])
def test_every_postgresql_url_form_works(
    postgres_url: str, stores: list[PostgresStore], scheme: str
) -> None:
    url = scheme + "://" + postgres_url.split("://", 1)[1]
    store = _open(stores, url)
    store.add_predictions(_rows(["u"]))
    assert store.counts()["predictions"] == 1


def test_open_store_picks_postgresql_for_a_postgresql_url(
    postgres_url: str, tmp_path: Path
) -> None:
    monitoring = MonitoringConfig(state_dir=str(tmp_path), max_store_bytes=1 << 20)
    store = open_store(StateConfig(url=postgres_url, timeout_s=1.5), monitoring, tmp_path)
    try:
        assert isinstance(store, PostgresStore)
        assert (store.max_bytes, store.timeout_s) == (1 << 20, 1.5)
        assert store.counts() == {"predictions": 0, "feedback": 0}
    finally:
        store.close()


def test_an_unreachable_url_opens_and_fails_each_call_clearly() -> None:
    url = f"postgresql://fleet:s3cret@127.0.0.1:{free_port()}/state"
    store = PostgresStore(url, retention_s=HOUR, max_predictions=10, timeout_s=1.0)
    try:
        for call in (store.usage, store.counts, lambda: store.add_predictions(_rows(["a"]))):
            started = time.monotonic()
            with pytest.raises(StateUnavailableError) as caught:
                call()
            assert time.monotonic() - started < 8.0
            message = str(caught.value)
            assert "postgresql" in message and "fleet:***@127.0.0.1" in message
            assert "s3cret" not in message and "\n" not in message
            assert caught.value.__cause__ is not None  # raised from the driver's error
    finally:
        store.close()


def test_a_stuck_replica_makes_calls_fail_after_the_timeout(
    postgres_url: str, stores: list[PostgresStore]
) -> None:
    """A transaction holding the byte counter (a replica hung mid-write) costs ~timeout_s."""
    store = _open(stores, postgres_url, timeout_s=0.5)
    store.add_predictions(_rows(["a"]))
    other = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with other.begin() as conn:
            conn.execute(text("SELECT bytes FROM serving_state_usage FOR UPDATE"))
            started = time.monotonic()
            with pytest.raises(StateUnavailableError, match="statement timeout"):
                store.add_predictions(_rows(["b"]))
            assert 0.4 < time.monotonic() - started < 8.0
            assert store.counts()["predictions"] == 1  # reads do not wait for the lock
        store.add_predictions(_rows(["b"]))  # the lock is gone: writes go through again
        assert store.counts()["predictions"] == 2
    finally:
        other.dispose()


class _Restartable:
    """Stops a private PostgreSQL server and starts it again: same port, same data."""

    def __init__(self, url: str) -> None:
        engine = create_engine(
            url.replace("postgresql://", "postgresql+psycopg://"), poolclass=NullPool
        )
        with engine.connect() as conn:
            self.data = Path(conn.execute(text("SHOW data_directory")).scalar_one())
        engine.dispose()
        # The server's own record of how it was started, less the data folder pg_ctl passes.
        argv = shlex.split((self.data / "postmaster.opts").read_text())[1:]
        at = argv.index("-D")
        self.options = shlex.join(argv[:at] + argv[at + 2 :])
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.pg_ctl = str(postgres_bin() / "pg_ctl")

    def stop(self) -> None:
        self._run("-m", "fast", "-w", "stop")

    def start(self) -> None:
        log = str(self.data.parent / "restarted.log")
        self._run("-l", log, "-o", self.options, "-w", "-t", "60", "start")

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self.prefix, self.pg_ctl, "-D", str(self.data), *args],
            check=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )


def test_the_same_store_works_again_after_the_server_stops_and_restarts() -> None:
    with postgres_server() as admin:
        server = _Restartable(admin)
        # trust authentication ignores the password, which lets the test check it stays hidden
        url = admin.replace("modelfleet@", "modelfleet:pa55word@")
        store = PostgresStore(url, retention_s=HOUR, max_predictions=1000, timeout_s=1.0)
        try:
            store.add_predictions(_rows(["before", "other"]))
            server.stop()
            for call in (
                store.usage,
                lambda: store.add_predictions(_rows(["lost"])),
                lambda: store.add_feedback("iris", ["before"], [0], "int"),
                lambda: store.accuracy("iris", "1", 10),
                store.prune,
            ):
                started = time.monotonic()
                with pytest.raises(StateUnavailableError, match="postgresql") as caught:
                    call()
                assert time.monotonic() - started < 8.0
                assert "pa55word" not in str(caught.value)
            server.start()
            # Same store object: the dead pooled connections are replaced on their own.
            assert store.add_feedback("iris", ["before"], [0], "int").correct == 1
            assert store.counts() == {"predictions": 2, "feedback": 1}
            # A restart between two calls is not even noticed.
            server.stop()
            server.start()
            assert store.accuracy("iris", "1", 10).value == 1.0
        finally:
            store.close()
