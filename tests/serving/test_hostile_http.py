"""Hostile HTTP clients: huge and slow heads and bodies, bad requests, and SIGTERM under load.

Each test runs the real server (``python -m modelfleet.serving``) as a subprocess on a free
loopback port and talks to it over raw sockets, since the point is what the HTTP layer does
with bytes no well-behaved client sends. Every loop is bounded in time and count.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from io import BufferedReader
from pathlib import Path

import httpx
import pytest

from tests.models import sum_graph
from tests.servers import free_port, wait_for_port

BODY = b'{"inputs":[{"name":"X","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}'
INFER = (
    b"POST /v2/models/adder/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)


@contextmanager
def serving(folder: Path, server: str = "{}") -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Serve a generated adder model with ``server`` settings; kill it if still running."""
    import onnx

    model = folder / "adder.onnx"
    if not model.exists():
        onnx.save(sum_graph(), model)
    config = folder / "serve.yaml"
    config.write_text(f"server: {server}\nmodels: [{{ref: {model}, name: adder}}]\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELFLEET_")}
    argv = [sys.executable, "-m", "modelfleet.serving", "--config", str(config)]
    with (folder / f"serve-{port}.log").open("wb") as log:
        proc = subprocess.Popen(
            [*argv, "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, timeout=60)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """One server for the refusal tests, with short read deadlines so they finish quickly."""
    folder = tmp_path_factory.mktemp("hostile")
    with serving(folder, "{header_timeout_s: 2, body_timeout_s: 2}") as (_, port):
        yield port


def exchange(port: int, data: bytes, timeout: float = 30) -> bytes:
    """Send ``data`` on a new connection; everything the server answers before closing."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with suppress(OSError):  # refused mid-send: the answer was written before the close
            sock.sendall(data)
        return _read_all(sock)


def _read_all(sock: socket.socket) -> bytes:
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except OSError:
        pass
    return answer


def responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The HTTP/1.1 responses in ``raw`` (all with Content-Length, as the server sends)."""
    found = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers["content-length"])
        found.append((int(lines[0].split()[1]), headers, rest[:length]))
        raw = rest[length:]
    return found


def refused(raw: bytes, status: int) -> str:
    """The error message of the single JSON answer ``raw``, checked to have ``status``."""
    [(got, headers, body)] = responses(raw)
    assert (got, headers["content-type"], headers["connection"]) == (
        status,
        "application/json",
        "close",
    )
    return str(json.loads(body)["error"])


# -- issue 10 #1: unbounded heads, slow clients -------------------------------------------------


def test_a_100_mb_header_gets_431_at_once_and_stalls_nobody(server: int) -> None:
    latencies: list[float] = []
    sent = 0
    answer = b""

    def attack() -> None:
        nonlocal sent, answer
        chunk = b"a" * (1 << 20)
        with socket.create_connection(("127.0.0.1", server), timeout=60) as sock:
            try:
                sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\nX-Big: ")
                while sent < 100 << 20:
                    sock.sendall(chunk)
                    sent += len(chunk)
            except OSError:
                pass
            answer = _read_all(sock)

    with httpx.Client(base_url=f"http://127.0.0.1:{server}", timeout=60) as client:
        attacker = threading.Thread(target=attack)
        attacker.start()
        deadline = time.monotonic() + 2  # keep measuring after the attacker is cut off
        while attacker.is_alive() or time.monotonic() < deadline:
            started = time.monotonic()
            assert client.post("/v2/models/adder/infer", content=BODY).status_code == 200
            latencies.append(time.monotonic() - started)
        attacker.join()
    assert "over 32768 bytes" in refused(answer, 431)
    assert sent < 32 << 20  # the server stopped reading long before 100 MB
    # Before the limit the other client waited up to 4.4 s per request on this machine.
    assert max(latencies) < 2.0


def test_slow_heads_and_bodies_get_408_and_are_disconnected(server: int) -> None:
    head = b"GET /v2 HTTP/1.1\r\nHost: t\r\n"
    body = b"POST /v2/models/adder/infer HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\n"
    starts = [head] * 40 + [body] * 40 + [b""] * 20  # the last ones connect and stay silent
    answers = _drip(server, starts, drip=b"x", every_s=0.5, limit_s=20)
    assert len(answers) == len(starts)  # every connection was closed by the server
    assert all("head not received within 2 s" in refused(a, 408) for a in answers[:40])
    assert all("body slower than 1024 bytes/s" in refused(a, 408) for a in answers[40:80])
    assert answers[80:] == [b""] * 20
    assert responses(exchange(server, INFER))[0][0] == 200


def _drip(
    port: int, starts: list[bytes], *, drip: bytes, every_s: float, limit_s: float
) -> list[bytes]:
    """Open one connection per start, then send a byte to each every ``every_s`` seconds
    until the server closes it; what each received, for those closed within ``limit_s``."""
    selector = selectors.DefaultSelector()
    received: dict[int, bytes] = {}
    for index, start in enumerate(starts):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(start)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, index)
    deadline = time.monotonic() + limit_s
    next_drip = time.monotonic() + every_s
    closed: dict[int, bytes] = {}
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.1):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            received[key.data] = received.get(key.data, b"") + chunk
            if not chunk:
                closed[key.data] = received[key.data]
                selector.unregister(sock)
                sock.close()
        if time.monotonic() >= next_drip:
            next_drip += every_s
            for key in list(selector.get_map().values()):
                if starts[key.data]:  # silent connections stay silent
                    with suppress(OSError):
                        key.fileobj.send(drip)  # type: ignore[union-attr]
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    selector.close()
    return [closed[i] for i in sorted(closed)]


# -- issue 10 #13: what llhttp refuses is answered in JSON -----------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status", "message"),
    [
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "over 8192 bytes"),
        (b"GET /" + b"a" * 9_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "over 8192 bytes"),
        (b"BREW /v2 HTTP/1.1\r\nHost: t\r\n\r\n", 400, "Invalid method"),
        (
            b"POST /v2 HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "Transfer-Encoding can't be present with Content-Length",
        ),
        (
            b"POST /v2 HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
            400,
            "Duplicate Content-Length",
        ),
        (b"GET /v2 HTTP/1.1\r\nHost: t\r\nBad Name: 1\r\n\r\n", 400, "Invalid header token"),
    ],
    ids=["url-70k", "url-9k", "method", "cl-and-te", "two-cl", "header-name"],
)
def test_requests_the_http_layer_refuses_get_json_errors(
    server: int, request_bytes: bytes, status: int, message: str
) -> None:
    assert message in refused(exchange(server, request_bytes), status)


def test_a_bad_request_is_answered_after_the_good_ones_before_it(server: int) -> None:
    good = b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n"
    answers = responses(exchange(server, good + INFER + b"NOT HTTP\r\n\r\n"))
    assert [status for status, _, _ in answers] == [200, 200, 400]
    assert "malformed HTTP request" in json.loads(answers[2][2])["error"]


# -- issue 10 #19: SIGTERM answers every request the server read ------------------------------


def test_sigterm_answers_every_request_of_kept_alive_clients(tmp_path: Path) -> None:
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def client(port: int, stop: threading.Event) -> None:
        end = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < end:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            except OSError:
                return  # refused: the server is gone, nothing was sent
            with sock, sock.makefile("rb") as stream:
                outcome = "200"
                while outcome == "200" and time.monotonic() < end:
                    sock.sendall(INFER)
                    outcome = _one_answer(stream)
                    with lock:
                        counts[outcome] += 1

    with serving(tmp_path) as (proc, port):
        stop = threading.Event()
        clients = [threading.Thread(target=client, args=(port, stop)) for _ in range(8)]
        for thread in clients:
            thread.start()
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        stop.set()
        for thread in clients:
            thread.join(timeout=30)
    assert counts["200"] > 0
    # Before: one request per client was sent and never answered (the connection was reset).
    assert counts["no answer"] == 0, counts


def _one_answer(stream: BufferedReader) -> str:
    """'200' (keep going), 'close' (answered, connection ends) or 'no answer'."""
    try:
        status_line = stream.readline()
        if not status_line:
            return "no answer"
        headers = {}
        while (line := stream.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.lower()] = value.strip().lower()
        stream.read(int(headers.get("content-length", "0")))
    except OSError:
        return "no answer"
    if headers.get("connection") == "close" or status_line.split()[1] != b"200":
        return "close"
    return "200"


def test_while_draining_every_answer_closes_its_connection(tmp_path: Path) -> None:
    live = b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n"
    with serving(tmp_path, "{lame_duck_s: 3}") as (proc, port):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as kept:
            kept.sendall(live)
            assert kept.recv(65536).startswith(b"HTTP/1.1 200")
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 2
            while httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code != 503:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            # Three pipelined requests in one write: all answered, the last one closing.
            kept.sendall(live * 3)
            answers = responses(_read_all(kept))
        assert proc.wait(timeout=30) == 0
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert [h.get("connection") for _, h, _ in answers] == [None, None, "close"]
