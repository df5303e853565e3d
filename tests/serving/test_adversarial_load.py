"""Hostile clients against a real ``modelfleet serve``: slow and huge clients, signals.

A good client keeps getting answers while slow and huge ones are cut off; SIGTERM, reloads
and SIGHUP under load lose no accepted request. Loops are bounded in time and count.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

import httpx
import pytest

from tests.serving.adversary import (
    ROW,
    Answer,
    receive,
    scaled_sum,
    serving,
    v2,
)


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """One server for the corpus and the slow clients, with short read deadlines."""
    with serving(
        tmp_path_factory.mktemp("adversarial"), "{header_timeout_s: 2, body_timeout_s: 2}"
    ) as proc:
        yield proc.port  # type: ignore[attr-defined]


def _closes(answer: Answer) -> bool:
    return answer[1].get("connection") == "close"


def _attack(port: int, start: bytes, chunk: bytes, every_s: float, total: int) -> int:
    """Send ``start``, then ``chunk`` every ``every_s`` s up to ``total`` bytes or until the
    server answers; the status of its answer (0: closed without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sent, deadline = 0, time.monotonic() + 20
        with suppress(OSError):
            sock.sendall(start)
            while sent < total and time.monotonic() < deadline:
                if select.select([sock], [], [], every_s)[0]:
                    break  # the server answered (or closed): stop sending
                sock.sendall(chunk)
                sent += len(chunk)
        got = receive(sock, 1)
    if got and "error" not in json.loads(got[0][2]):
        return -got[0][0]  # an error status without a JSON error body
    return got[0][0] if got else 0


def big_request(rows: int) -> bytes:
    return v2({"inputs": [{**ROW, "shape": [rows, 3], "data": [1, 2, 3] * rows}]})


def test_slow_and_huge_clients_do_not_stop_a_good_client(port: int) -> None:
    mb = 1 << 20
    head = b"POST /v2/models/adder/infer HTTP/1.1\r\nHost: t\r\n"
    attacks: dict[str, tuple[bytes, bytes, float, int]] = {
        "slow head": (b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n", b"x", 0.5, 100),
        "slow body": (head + b"Content-Length: 500\r\n\r\n", b"x", 0.5, 100),
        "huge body": (head + b"Content-Length: %d\r\n\r\n" % (1 << 30), b"a" * mb, 0, 64 * mb),
        "huge chunked": (
            head + b"Transfer-Encoding: chunked\r\n\r\n",
            b"100000\r\n" + b"a" * mb + b"\r\n",
            0,
            64 * mb,
        ),
        "huge head": (b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\nX-Big: ", b"a" * mb, 0, 16 * mb),
    }
    plan = [name for name in attacks for _ in range(20 if name.startswith("slow") else 2)]
    statuses: dict[str, Counter[int]] = {name: Counter() for name in attacks}
    big: Counter[int] = Counter()
    latencies: list[float] = []
    done = threading.Event()

    def large_client() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            while not done.is_set():
                sock.sendall(big_request(50_000))
                [(status, _, body)] = receive(sock, 1)
                big[status if set(json.loads(body)["outputs"][0]["data"]) == {6.0} else -1] += 1

    with ThreadPoolExecutor(len(plan) + 2) as pool:
        larges = [pool.submit(large_client) for _ in range(2)]
        attackers = [(name, pool.submit(_attack, port, *attacks[name])) for name in plan]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            minimum = time.monotonic() + 2
            while time.monotonic() < minimum or not all(f.done() for _, f in attackers):
                started = time.monotonic()
                reply = client.post("/v2/models/adder/infer", json={"inputs": [ROW]})
                latencies.append(time.monotonic() - started)
                assert (reply.status_code, reply.json()["outputs"][0]["data"]) == (200, [6.0])
        done.set()
        for name, future in attackers:
            statuses[name][future.result()] += 1
        for large in larges:
            large.result()
    expected = {
        "slow head": 408,
        "slow body": 408,
        "huge body": 413,
        "huge chunked": 413,
        "huge head": 431,
    }
    assert {name: dict(c) for name, c in statuses.items()} == {
        name: {expected[name]: plan.count(name)} for name in attacks
    }
    assert big[200] > 0 and set(big) == {200}, big
    # An unbounded stall shows as seconds; healthy answers take a few ms even here.
    assert len(latencies) > 20 and max(latencies) < 5.0, (len(latencies), max(latencies))


def _keep_alive(
    port: int, body: bytes, depth: int, tally: Counter[str], stop: threading.Event
) -> None:
    """Send ``depth`` pipelined requests at a time until the server refuses the connection."""
    end = time.monotonic() + 30
    while not stop.is_set() and time.monotonic() < end:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        except OSError:
            return  # refused: nothing was sent
        with sock:
            while not stop.is_set() and time.monotonic() < end:
                try:
                    sock.sendall(body * depth)
                except OSError:
                    break  # the server closed the connection before reading this: not accepted
                got = receive(sock, depth)
                tally.update(str(status) for status, _, _ in got)
                # Requests pipelined behind a 'Connection: close' answer may go unprocessed
                # (RFC 9112, 9.3.2): the client retries them. Anything else is a loss.
                if len(got) < depth and not (got and _closes(got[-1])):
                    tally["no answer"] += depth - len(got)
                if len(got) < depth or any(_closes(a) or a[0] != 200 for a in got):
                    break


def test_sigterm_answers_every_request_in_flight(tmp_path: Path) -> None:
    tally: Counter[str] = Counter()
    stop = threading.Event()
    small = v2({"inputs": [ROW]})
    loads = [(small, 1)] * 3 + [(small, 3)] * 2 + [(big_request(50_000), 1)] * 2
    with serving(tmp_path) as proc:
        threads = [
            threading.Thread(target=_keep_alive, args=(proc.port, body, depth, tally, stop))  # type: ignore[attr-defined]
            for body, depth in loads
        ]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert tally["200"] > 0 and tally["no answer"] == 0, tally
    assert set(tally) <= {"200", "503"}, tally


def test_hot_reload_under_load_answers_from_one_version_or_the_other(tmp_path: Path) -> None:
    import onnx

    seen: Counter[tuple[int, float]] = Counter()
    stop = threading.Event()

    def load(url: str) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while not stop.is_set():
                reply = client.post("/v2/models/adder/infer", json={"inputs": [ROW]})
                value = reply.json()["outputs"][0]["data"][0] if reply.status_code == 200 else 0
                seen[(reply.status_code, value)] += 1

    with serving(tmp_path) as proc:
        url = f"http://127.0.0.1:{proc.port}"  # type: ignore[attr-defined]
        threads = [threading.Thread(target=load, args=(url,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            for factor in (2.0, 1.0, 2.0):
                onnx.save(scaled_sum(factor), tmp_path / "next.onnx")
                os.replace(tmp_path / "next.onnx", tmp_path / "adder.onnx")
                assert httpx.post(f"{url}/admin/reload", timeout=60).status_code == 200
                reply = httpx.post(f"{url}/v2/models/adder/infer", json={"inputs": [ROW]})
                assert reply.json()["outputs"][0]["data"] == [6.0 * factor]
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
    assert set(seen) == {(200, 6.0), (200, 12.0)}, seen


def _workers(pid: int) -> set[int]:
    """Live worker processes the supervisor ``pid`` spawned."""
    found = set()
    for entry in Path("/proc").iterdir():
        with suppress(OSError):
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if (
                int(stat[1]) == pid
                and stat[0] != "Z"
                and b"spawn_main" in (entry / "cmdline").read_bytes()
            ):
                found.add(int(entry.name))
    return found


def test_sighup_replaces_workers_under_load_and_drops_nothing(tmp_path: Path) -> None:
    tally: Counter[str] = Counter()
    stop = threading.Event()
    small = v2({"inputs": [ROW]})
    with serving(tmp_path, "{}", "--workers", "2") as proc:
        deadline = time.monotonic() + 60
        while len(before := _workers(proc.pid)) != 2:
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.1)
        args = (proc.port, small, 1, tally, stop)  # type: ignore[attr-defined]
        threads = [threading.Thread(target=_keep_alive, args=args) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        proc.send_signal(signal.SIGHUP)
        while len(now := _workers(proc.pid)) != 2 or now & before:
            assert time.monotonic() < deadline + 60, "workers were not replaced"
            time.sleep(0.1)
        time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert tally["200"] > 0 and tally["no answer"] == 0, tally
    assert set(tally) <= {"200", "503"}, tally
