"""Predictions store backends side by side: SQLite, PostgreSQL and Redis, in one run.

Starts a private PostgreSQL and a private redis-server on free loopback ports (the test
helpers of ``tests/servers.py``) and opens every backend through ``open_store``, as
``modelfleet serve`` does, with a fresh, empty store per scenario. Per backend it times,
after an untimed warm-up call, ``--repeat`` times (at least 5):

* ``add_predictions`` of 10,000 one-row predictions (what a replica flushes after a busy
  second);
* the same with 32 classes per prediction (10,000 requests of 32 rows);
* ``add_feedback`` of 100 ids;
* ``accuracy(model, version, 500)`` with 3,100 requests labelled (what every replica reads
  every refresh);
* a batch of 10,000 one-row predictions into a full store of 4 MiB (every write evicts).

Every round times the backends in turn (a different one first each round), so a load spike
on a shared machine hits all three alike; the cheap calls (feedback, accuracy) are timed more
often than the batches. ``usage()`` of the full stores is recorded too: pages in use plus the
WAL on disk for SQLite, logical bytes for PostgreSQL and Redis.

Prints median and p90 ms per backend and operation with the median's ratio to SQLite,
writes the run (with the machine, package and server versions) as JSON to
benchmarks/results/ and stops both servers. A watchdog ends the run after ``--budget``
seconds (the servers are stopped all the same).

    python benchmarks/state_store.py [--repeat 7] [--budget 150] [--out DIR]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from benchmarks.soak import percentile
from tests.servers import postgres_server, redis_server

from modelfleet.serving.live.feedback import PredictionRow, PredictionStore
from modelfleet.serving.live.stores import open_store
from modelfleet.serving.settings import MonitoringConfig, StateConfig

BACKENDS = ("sqlite", "postgresql", "redis")
BATCH = 10_000
FEEDBACK_IDS = 100
WINDOW = 500
FULL_BYTES = 4 << 20
CLASSES = 10  # a ten-class classifier: predicted classes are 0..9
MODEL, VERSION = "bench", "1"
MIN_REPEAT = 5
CHEAP_REPEAT = (30, 50)  # feedback calls and accuracy reads timed at least
PREFILL_BATCHES = 20  # batches a full-store scenario writes at most before it is full
OPERATIONS = {
    "batch_1": "add_predictions 10k x 1 class",
    "batch_32": "add_predictions 10k x 32 classes",
    "feedback": "add_feedback 100 ids",
    "accuracy": "accuracy window 500",
    "full": "add_predictions 10k, full 4 MiB",
}


class OverrunError(Exception):
    """The run took longer than its budget (not an OSError: no store turns it into another)."""


class Rows:
    """Predictions with fresh ids (shaped like the server's) and ever later times."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.tag = f"{self.rng.getrandbits(32):08x}"
        self.last = 0.0

    def batch(self, count: int, per_row: int) -> list[PredictionRow]:
        # Later than anything written before: the oldest records are the ones evicted.
        start = max(time.time(), self.last + 1e-6)
        rows: list[PredictionRow] = []
        for i in range(count):
            token = base64.urlsafe_b64encode(self.rng.randbytes(16)).rstrip(b"=").decode()
            classes = [self.rng.randrange(CLASSES) for _ in range(per_row)]
            ts = start + i * 1e-6
            rows.append(
                (MODEL, f"{self.tag}-{token}", VERSION, ts, orjson.dumps(classes).decode(), per_row)
            )
        self.last = start + count * 1e-6
        return rows


class Places:
    """A fresh, empty store per backend and scenario, opened the way ``modelfleet serve`` does."""

    def __init__(self, work: Path, postgres_admin: str, redis_url: str) -> None:
        self.work = work
        self.admin = create_engine(
            postgres_admin.replace("postgresql://", "postgresql+psycopg://", 1),
            isolation_level="AUTOCOMMIT",
        )
        self.postgres_base = postgres_admin.rsplit("/", 1)[0]
        self.redis_base = redis_url.rsplit("/", 1)[0]
        self.redis_db = 0  # one logical database per scenario (redis-server has 16)
        self.opened: list[PredictionStore] = []

    def open(self, backend: str, scenario: str, max_bytes: int) -> PredictionStore:
        folder = self.work / backend / scenario
        folder.mkdir(parents=True)
        url = None
        if backend == "postgresql":
            name = f"bench_{scenario}"
            with self.admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            url = f"{self.postgres_base}/{name}"
        elif backend == "redis":
            url = f"{self.redis_base}/{self.redis_db}"
            self.redis_db += 1
        monitoring = MonitoringConfig(state_dir=str(folder), max_store_bytes=max_bytes)
        store = open_store(StateConfig(url=url), monitoring, folder)
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            store.close()
        self.admin.dispose()

    def postgres_info(self) -> dict[str, str]:
        with self.admin.connect() as conn:
            return {
                setting: str(conn.execute(text(f"SHOW {setting}")).scalar_one())
                for setting in ("server_version", "fsync", "synchronous_commit", "shared_buffers")
            }


def timed(call: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call(*args)
    return (time.perf_counter() - started) * 1e3, result


def summary(times: list[float], **extra: Any) -> dict[str, Any]:
    return {
        "repeat": len(times),
        "median_ms": round(statistics.median(times), 3),
        "p90_ms": percentile(sorted(times), 0.90),
        "times_ms": [round(t, 3) for t in times],
        **extra,
    }


def turns(repeat: int) -> Iterator[tuple[str, ...]]:
    """The backends in turn, a different one first each round: load spikes hit them alike."""
    for k in range(repeat):
        yield BACKENDS[k % 3 :] + BACKENDS[: k % 3]


def batches(places: Places, per_row: int, repeat: int) -> dict[str, dict[str, Any]]:
    """(a) and (b): a batch of 10,000 predictions into a store with room (default budget)."""
    stores = {
        backend: places.open(backend, f"batch_{per_row}", MonitoringConfig().max_store_bytes)
        for backend in BACKENDS
    }
    rows = {backend: Rows(seed=per_row) for backend in BACKENDS}  # the same ids everywhere
    for backend, store in stores.items():
        store.add_predictions(rows[backend].batch(100, per_row))  # schema, scripts, connections
    times: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
    evicted = dict.fromkeys(BACKENDS, 0)
    for order in turns(repeat):
        for backend in order:
            batch = rows[backend].batch(BATCH, per_row)
            ms, gone = timed(stores[backend].add_predictions, batch)
            times[backend].append(ms)
            evicted[backend] += sum(gone.values())
    return {
        backend: summary(
            times[backend],
            evicted_rows=evicted[backend],
            usage_bytes=store.usage(),
            **store.counts(),
        )
        for backend, store in stores.items()
    }


def feedback_and_accuracy(places: Places, repeat: int) -> dict[str, dict[str, Any]]:
    """(c) and (d): labels for 100 ids a call, then the accuracy over the last 500."""
    stores = {
        backend: places.open(backend, "feedback", MonitoringConfig().max_store_bytes)
        for backend in BACKENDS
    }
    rows = Rows(seed=3).batch(BATCH, 1)
    ids = [row[1] for row in rows]
    # Three labels in four are right: the accuracy read is the same on every backend.
    predicted = [orjson.loads(row[4])[0] for row in rows]
    labels = [c if i % 4 else (c + 1) % CLASSES for i, c in enumerate(predicted)]
    for store in stores.values():
        store.add_predictions(rows)
    calls = max(repeat, CHEAP_REPEAT[0])
    feedback_ms: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
    for k, order in enumerate(turns(calls + 1)):  # the first round is the warm-up
        part = slice(k * FEEDBACK_IDS, (k + 1) * FEEDBACK_IDS)
        for backend in order:
            ms, result = timed(stores[backend].add_feedback, MODEL, ids[part], labels[part], "int")
            if result.accepted != FEEDBACK_IDS:
                raise RuntimeError(f"{backend}: feedback accepted {result.accepted} of 100")
            if k:
                feedback_ms[backend].append(ms)
    accuracy_ms: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
    reads = {backend: store.accuracy(MODEL, VERSION, WINDOW) for backend, store in stores.items()}
    for order in turns(max(repeat, CHEAP_REPEAT[1])):
        for backend in order:
            ms, reads[backend] = timed(stores[backend].accuracy, MODEL, VERSION, WINDOW)
            accuracy_ms[backend].append(ms)
    return {
        backend: {
            "feedback": summary(feedback_ms[backend], labelled=(calls + 1) * FEEDBACK_IDS),
            "accuracy": summary(
                accuracy_ms[backend],
                read={"value": read.value, "requests": read.requests, "rows": read.rows},
            ),
        }
        for backend, read in reads.items()
    }


def full_store(places: Places, repeat: int) -> dict[str, dict[str, Any]]:
    """(e): a batch of 10,000 into a store at its 4 MiB budget: every write evicts."""
    stores = {backend: places.open(backend, "full", FULL_BYTES) for backend in BACKENDS}
    rows = {backend: Rows(seed=5) for backend in BACKENDS}
    prefill = dict.fromkeys(BACKENDS, 1)
    for backend, store in stores.items():
        while (
            not store.add_predictions(rows[backend].batch(BATCH, 1))
            and prefill[backend] < PREFILL_BATCHES
        ):
            prefill[backend] += 1
        store.add_predictions(rows[backend].batch(BATCH, 1))  # full now: the warm-up evicts too
    times: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
    evicted: dict[str, list[int]] = {backend: [] for backend in BACKENDS}
    for order in turns(repeat):
        for backend in order:
            batch = rows[backend].batch(BATCH, 1)
            ms, gone = timed(stores[backend].add_predictions, batch)
            times[backend].append(ms)
            evicted[backend].append(sum(gone.values()))
    results = {}
    for backend, store in stores.items():
        usage = store.usage()
        results[backend] = summary(
            times[backend],
            prefill_batches=prefill[backend],
            evicted_rows_per_write=evicted[backend],
            max_bytes=FULL_BYTES,
            usage_bytes=usage,
            usage_to_budget=round(usage / FULL_BYTES, 4),
            **store.counts(),
        )
    return results


def run_all(places: Places, repeat: int) -> dict[str, dict[str, Any]]:
    """Every scenario, the three backends side by side: results[backend][operation]."""
    results: dict[str, dict[str, Any]] = {backend: {} for backend in BACKENDS}
    scenarios: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("batch_1", lambda: batches(places, 1, repeat)),
        ("batch_32", lambda: batches(places, 32, repeat)),
        ("", lambda: feedback_and_accuracy(places, repeat)),
        ("full", lambda: full_store(places, repeat)),
    ]
    for key, scenario in scenarios:
        started = time.monotonic()
        for backend, result in scenario().items():
            results[backend].update({key: result} if key else result)
        done = key or "feedback, accuracy"
        print(f"{done}: done in {time.monotonic() - started:.1f} s", flush=True)
    return results


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        None,
    )
    packages = {}
    for name in ("modelfleet", "redis", "psycopg", "sqlalchemy", "orjson"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "packages": packages,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def redis_info(url: str) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        info = client.info("server")
    finally:
        client.close()
    return {"server_version": info["redis_version"], "persistence": "off (test server)"}


def checks(results: dict[str, dict[str, Any]]) -> dict[str, bool]:
    reads = {json.dumps(r["accuracy"]["read"], sort_keys=True) for r in results.values()}
    return {
        "accuracy_same_on_every_backend": len(reads) == 1,
        "accuracy_window_full": all(
            r["accuracy"]["read"]["requests"] == WINDOW for r in results.values()
        ),
        "no_eviction_with_room": all(
            r[key]["evicted_rows"] == 0 for r in results.values() for key in ("batch_1", "batch_32")
        ),
        "every_full_write_evicted": all(
            all(n > 0 for n in r["full"]["evicted_rows_per_write"]) for r in results.values()
        ),
    }


def table(results: dict[str, dict[str, Any]]) -> None:
    print()
    print(f"{'backend':11} {'operation':34} {'median ms':>10} {'p90 ms':>9} {'x SQLite':>9}")
    for key, label in OPERATIONS.items():
        base = results["sqlite"][key]["median_ms"]
        for backend in BACKENDS:
            row = results[backend][key]
            ratio = row["median_ms"] / base if base else float("nan")
            print(
                f"{backend:11} {label:34} {row['median_ms']:10.2f} {row['p90_ms']:9.2f} "
                f"{ratio:9.2f}"
            )
    held = ", ".join(
        f"{backend} {results[backend]['full']['usage_bytes'] / 2**20:.2f} MiB "
        f"({results[backend]['full']['usage_to_budget']:.2f}x)"
        for backend in BACKENDS
    )
    print(f"full store holds, by its own usage(), of {FULL_BYTES >> 20} MiB: {held}")
    print()


def run(repeat: int, out: Path) -> tuple[dict[str, Any], Path]:
    started = time.monotonic()
    summary_doc: dict[str, Any] = {"machine": machine(), "repeat": repeat}
    with ExitStack() as stack:
        work = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="modelfleet-bench-state-"))
        )
        postgres_admin = stack.enter_context(postgres_server())
        redis_url, _ = stack.enter_context(redis_server())
        print(f"postgresql {postgres_admin}, redis {redis_url}, sqlite in {work}", flush=True)
        places = Places(work, postgres_admin, redis_url)
        stack.callback(places.close)  # stores closed before their servers stop
        summary_doc["servers"] = {
            "postgresql": {**places.postgres_info(), "started_by": "tests/servers.py"},
            "redis": redis_info(redis_url),
            "sqlite": {"version": sqlite3.sqlite_version, "folder": str(work)},
        }
        results = run_all(places, repeat)
    summary_doc["results"] = results
    summary_doc["checks"] = checks(results)
    summary_doc["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    summary_doc["seconds"] = round(time.monotonic() - started, 1)
    table(results)
    out.mkdir(parents=True, exist_ok=True)
    path = out / time.strftime("state_store-%Y%m%d-%H%M%S.json", time.gmtime())
    path.write_text(json.dumps(summary_doc, indent=2) + "\n")
    return summary_doc, path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed batches per scenario")
    parser.add_argument("--budget", type=int, default=150, help="seconds the run may take")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    if args.repeat < MIN_REPEAT:
        parser.error(f"--repeat must be at least {MIN_REPEAT}")

    def overrun(signum: int, frame: object) -> None:
        raise OverrunError(f"the run took longer than its budget of {args.budget} s")

    # Both unwind the servers' context managers: no PostgreSQL or Redis is left behind.
    signal.signal(signal.SIGALRM, overrun)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    signal.alarm(args.budget)
    try:
        summary_doc, path = run(args.repeat, args.out)
    except OverrunError as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
    failed = [name for name, ok in summary_doc["checks"].items() if not ok]
    print(f"checks: {'all passed' if not failed else 'FAILED ' + ', '.join(failed)}")
    print(f"run took {summary_doc['seconds']} s; written to {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
