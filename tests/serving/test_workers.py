"""``modelfleet serve --workers N``: one port, whole metrics, replaced workers, no orphans."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

import modelfleet as mf
from modelfleet.config import Settings
from modelfleet.registry import Registry
from tests.models import heavy_graph, logistic_pipeline, sum_graph
from tests.servers import free_port, wait_for_port, wait_until


def _wait(condition: Callable[[], bool], timeout: float = 30) -> None:
    wait_until(condition, timeout)


def _children(pid: int) -> set[int]:
    """Live child processes of ``pid`` that multiprocessing spawned (its workers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # exited while we looked
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z" and b"spawn_main" in cmdline:
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Running, not a zombie nobody reaped yet (orphans go to PID 1, which may not reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _port_is_free(port: int) -> bool:
    """Nobody listens: a new server could bind it the way uvicorn does (SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


@dataclass
class Fleet:
    """A running ``modelfleet serve --workers N``: the supervisor, its port and workers."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    seen: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> set[int]:
        """The supervisor's live workers now."""
        pids = _children(self.proc.pid)
        self.seen |= pids
        return pids

    def get(self, path: str) -> httpx.Response:
        """A request on a new connection, so any worker may answer it."""
        with httpx.Client(base_url=self.url, timeout=60) as client:
            return client.get(path)

    def post(self, path: str, body: dict[str, object]) -> httpx.Response:
        """A request on a new connection, so any worker may answer it."""
        with httpx.Client(base_url=self.url, timeout=60) as client:
            return client.post(path, json=body)


@pytest.fixture
def fleet(settings: Settings) -> Iterator[Callable[..., Fleet]]:
    """Start ``modelfleet serve ARGS --workers N``; stop it and every worker it had."""
    started: list[Fleet] = []

    def start(*args: str, workers: int = 2, ready: bool = True) -> Fleet:
        port = free_port()
        log = settings.home / f"serve-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "modelfleet", "serve", *args),
                    *("--workers", str(workers), "--port", str(port), "--log-level", "info"),
                ],
                env={**os.environ, "MODELFLEET_HOME": str(settings.home)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        running = Fleet(proc, port, log)
        started.append(running)
        if ready:
            wait_for_port(port, timeout=60)
            _wait(lambda: len(running.workers()) == workers, timeout=60)
            _wait(lambda: running.get("/v2/health/ready").status_code == 200, timeout=60)
        return running

    yield start
    for running in started:
        if running.proc.poll() is None:
            running.workers()
            running.proc.send_signal(signal.SIGTERM)
            try:
                running.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                running.proc.kill()
                running.proc.wait(timeout=30)
        for pid in running.seen:
            if _alive(pid):  # an orphan left by a failed test: never leave one serving
                os.kill(pid, signal.SIGKILL)


def _row() -> dict[str, object]:
    return {"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}


def _samples(text: str, name: str, *labels: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(label in line for label in labels)
    )


@pytest.mark.slow
def test_workers_share_the_port_and_report_whole_metrics(
    registry: Registry, fleet: Callable[..., Fleet]
) -> None:
    mf.register(sum_graph(), name="adder", registry=registry)
    server = fleet("adder")
    assert len(server.workers()) == 2
    for _ in range(40):
        assert server.post("/v2/models/adder/infer", _row()).status_code == 200
    for _ in range(30):  # any worker answers /metrics with every worker's samples
        text = server.get("/metrics").text
        assert _samples(text, "modelfleet_requests_total", 'model="adder"') == 40, text
    batches = _samples(text, "modelfleet_batch_rows_count")
    assert batches >= 40 + 2  # 40 requests plus one warm-up per worker
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0


@pytest.mark.slow
def test_feedback_reaches_predictions_made_by_another_worker(
    registry: Registry, fleet: Callable[..., Fleet]
) -> None:
    model, X, y = logistic_pipeline()
    mf.register(model, name="iris", sample_input=X, registry=registry)
    server = fleet("iris")
    ids = []
    for x in X[:30]:
        body = {
            "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": x.tolist()}]
        }
        ids.append(server.post("/v2/models/iris/infer", body).json()["id"])
    pids = {rid.split("-")[0] for rid in ids}
    assert len(pids) == 2, "both workers answered"  # ids carry a per-process prefix
    time.sleep(1.0)  # both workers write their predictions every 0.5 s
    accepted = 0
    for rid, label in zip(ids, y[:30], strict=True):
        response = server.post(
            "/v2/models/iris/feedback", {"request_ids": [rid], "labels": [int(label)]}
        )
        assert response.status_code == 200, response.text
        accepted += response.json()["accepted"]
    assert accepted == 30
    time.sleep(1.5)  # each worker re-reads live accuracy every second
    summary = server.get("/monitor/summary").json()["models"][0]
    assert summary["accuracy"]["labelled_requests"] == 30
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_the_port_keeps_serving(
    registry: Registry, fleet: Callable[..., Fleet]
) -> None:
    mf.register(sum_graph(), name="adder", registry=registry)
    server = fleet("adder")
    before = server.workers()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    _wait(lambda: len(server.workers() - before) == 1 and len(server.workers()) == 2, timeout=60)
    assert victim not in server.workers()
    for _ in range(20):
        assert server.post("/v2/models/adder/infer", _row()).status_code == 200
    assert server.proc.poll() is None
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0


@pytest.mark.slow
def test_a_worker_that_keeps_dying_young_is_restarted_later_and_later(
    registry: Registry, fleet: Callable[..., Fleet]
) -> None:
    mf.register(sum_graph(), name="adder", registry=registry)
    server = fleet("adder")
    known = server.workers()
    victim = min(known)
    for _ in range(4):  # each replacement dies as soon as it appears, long before it is 10 s old
        os.kill(victim, signal.SIGKILL)
        _wait(lambda: bool(server.workers() - known), timeout=60)
        (victim,) = server.workers() - known
        known.add(victim)
    log = " ".join(server.log.read_text().split())
    assert "starting another in 1 s" in log
    assert "starting another in 2 s" in log
    assert server.post("/v2/models/adder/infer", _row()).status_code == 200


@pytest.mark.slow
def test_sighup_replaces_every_worker_and_sigttin_adds_one(
    registry: Registry, fleet: Callable[..., Fleet]
) -> None:
    mf.register(sum_graph(), name="adder", registry=registry)
    server = fleet("adder")
    before = server.workers()
    for _ in range(10):
        assert server.post("/v2/models/adder/infer", _row()).status_code == 200
    server.proc.send_signal(signal.SIGHUP)
    _wait(lambda: len(server.workers()) == 2 and not server.workers() & before, timeout=120)
    for _ in range(10):
        assert server.post("/v2/models/adder/infer", _row()).status_code == 200
    text = server.get("/metrics").text  # retired workers' counts stay in the total
    assert _samples(text, "modelfleet_requests_total", 'model="adder"') == 20, text
    server.proc.send_signal(signal.SIGTTIN)
    _wait(lambda: len(server.workers()) == 3, timeout=60)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0


@pytest.mark.slow
def test_workers_die_with_a_killed_supervisor_and_free_the_port(
    registry: Registry, fleet: Callable[..., Fleet]
) -> None:
    mf.register(sum_graph(), name="adder", registry=registry)
    server = fleet("adder")
    workers = server.workers()
    assert server.post("/v2/models/adder/infer", _row()).status_code == 200
    server.proc.kill()
    server.proc.wait(timeout=30)
    _wait(lambda: not any(_alive(pid) for pid in workers), timeout=5)
    with pytest.raises(httpx.ConnectError):
        server.get("/v2/health/ready")
    assert _port_is_free(server.port)


@pytest.mark.slow
def test_sigterm_drains_every_worker_and_exits_0(
    registry: Registry, fleet: Callable[..., Fleet]
) -> None:
    # Slow enough (about a second each here) that the three requests overlap, even on a
    # loaded machine where the client threads start far apart.
    mf.register(heavy_graph(layers=24), name="heavy", registry=registry)
    server = fleet("heavy")
    workers = server.workers()
    rows = np.full((2048, 1024), 0.01, np.float32)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "X",
                    "shape": [2048, 1024],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": rows.nbytes},
                }
            ]
        }
    ).encode()
    statuses: list[int] = []
    body = header + rows.tobytes()
    together = threading.Barrier(3)

    def slow_request() -> None:
        together.wait()
        response = httpx.post(
            f"{server.url}/v2/models/heavy/infer",
            content=body,
            headers={"inference-header-content-length": str(len(header))},
            timeout=120,
        )
        statuses.append(response.status_code)

    clients = [threading.Thread(target=slow_request) for _ in range(3)]
    for client in clients:
        client.start()
    try:
        inflight = "modelfleet_inflight_requests"
        _wait(lambda: _samples(server.get("/metrics").text, inflight) >= 3, timeout=60)
        server.proc.send_signal(signal.SIGTERM)
        _wait(lambda: _refuses(server), timeout=30)
    finally:
        for client in clients:
            client.join(timeout=120)
    assert statuses == [200, 200, 200]
    assert server.proc.wait(timeout=60) == 0
    assert not any(_alive(pid) for pid in workers)
    assert _port_is_free(server.port)


def _refuses(server: Fleet) -> bool:
    """Draining: not ready (503), or already gone."""
    try:
        return server.get("/v2/health/ready").status_code == 503
    except httpx.ConnectError:
        return True


def test_a_worker_that_cannot_start_stops_the_supervisor(
    registry: Registry, fleet: Callable[..., Fleet]
) -> None:
    server = fleet("ghost", ready=False)
    assert server.proc.wait(timeout=120) == 3
    assert "model 'ghost' not found" in server.log.read_text()
    assert _port_is_free(server.port)
