"""Hot swap under load, failed swaps, graceful drain on SIGTERM (workers: test_workers.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

import modelfleet as mf
from modelfleet.config import Settings
from modelfleet.registry import Registry
from modelfleet.serving.settings import ModelConfig
from tests.models import heavy_graph, sum_graph
from tests.servers import free_port, wait_for_port, wait_until
from tests.serving.conftest import RunningServer

Start = Callable[..., RunningServer]


def _row() -> dict[str, object]:
    return {"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}


class Load:
    """A background client that keeps sending requests and records every status."""

    def __init__(self, url: str, body: dict[str, object]) -> None:
        self.url, self.body = url, body
        self.statuses: list[int] = []
        self.versions: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                response = client.post(
                    "/v2/models/adder/infer", json=self.body, headers={"cache-control": "no-cache"}
                )
                self.statuses.append(response.status_code)
                if response.status_code == 200:
                    self.versions.add(response.json()["model_version"])

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _wait(condition: Callable[[], bool], timeout: float = 30) -> None:
    wait_until(condition, timeout)


def test_hot_swap_under_load_loses_nothing(registry: Registry, served: Start) -> None:
    mf.register(sum_graph(), name="adder", registry=registry)
    mf.promote("adder:1", to="prod", registry=registry)
    server = served(ModelConfig(ref="adder@prod"), poll_interval_s=0.2)
    with Load(server.url, _row()) as load:
        _wait(lambda: len(load.statuses) > 50)
        mf.register(sum_graph(), name="adder", metrics={"v": 2}, registry=registry)
        mf.promote("adder:2", to="prod", registry=registry)
        _wait(lambda: "2" in load.versions)
        count = len(load.statuses)
        _wait(lambda: len(load.statuses) > count + 50)
    assert set(load.statuses) == {200}, {s: load.statuses.count(s) for s in set(load.statuses)}
    assert load.versions == {"1", "2"}
    index = server.http.post("/v2/repository/index").json()
    assert index[0]["version"] == "2"
    assert index[0]["swaps"] == 1


def test_failed_load_keeps_the_old_version(
    registry: Registry, served: Start, settings: Settings
) -> None:
    mf.register(sum_graph(), name="adder", registry=registry)
    mf.promote("adder:1", to="prod", registry=registry)
    server = served(ModelConfig(ref="adder@prod"), poll_interval_s=3600)
    broken = mf.register(sum_graph(5), name="adder", registry=registry)
    record = broken.artifact("onnx")
    assert record is not None
    (Path(settings.artifacts) / record.key).write_bytes(b"corrupted bytes")
    mf.promote("adder:2", to="prod", registry=registry)
    status = server.http.post("/v2/repository/models/adder/load").json()
    assert status["version"] == "1"
    assert status["state"] == "ready"
    assert "artifact corrupted" in status["reason"]
    answer = server.http.post("/v2/models/adder/infer", json=_row())
    assert answer.json()["model_version"] == "1"
    assert server.metric("modelfleet_model_load_failures_total", model="adder") == 1


@pytest.fixture
def cli_server(settings: Settings) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], str]]]:
    """Start ``modelfleet serve`` processes; any still running after the test is killed."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> tuple[subprocess.Popen[bytes], str]:
        return _cli_server(settings.home, *args, started=started)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def _cli_server(
    home: Path, *args: str, started: list[subprocess.Popen[bytes]]
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "MODELFLEET_HOME": str(home)}
    with (home / f"serve-{port}.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelfleet",
                "serve",
                *args,
                "--port",
                str(port),
                "--log-level",
                "info",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    started.append(proc)
    wait_for_port(port, timeout=60)
    url = f"http://127.0.0.1:{port}"
    _wait(lambda: httpx.get(f"{url}/v2/health/ready").status_code == 200, timeout=60)
    return proc, url


def _gauge(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")
    )


def test_sigterm_drains_in_flight_requests(
    settings: Settings,
    registry: Registry,
    cli_server: Callable[..., tuple[subprocess.Popen[bytes], str]],
) -> None:
    mf.register(heavy_graph(), name="heavy", registry=registry)
    proc, url = cli_server("heavy")
    rows = np.full((2048, 1024), 0.01, np.float32)
    body = {
        "inputs": [
            {
                "name": "X",
                "shape": [2048, 1024],
                "datatype": "FP32",
                "parameters": {"binary_data_size": rows.nbytes},
            }
        ]
    }
    import json

    header = json.dumps(body).encode()
    results: list[int] = []

    def slow_request() -> None:
        response = httpx.post(
            f"{url}/v2/models/heavy/infer",
            content=header + rows.tobytes(),
            headers={"inference-header-content-length": str(len(header))},
            timeout=120,
        )
        results.append(response.status_code)

    workers = [threading.Thread(target=slow_request) for _ in range(3)]
    for worker in workers:
        worker.start()
    _wait(lambda: _gauge(url, "modelfleet_inflight_requests") >= 3)
    proc.send_signal(signal.SIGTERM)
    _wait(lambda: httpx.get(f"{url}/v2/health/ready").status_code == 503, timeout=10)
    refused = httpx.post(
        f"{url}/v2/models/heavy/infer",
        content=header + rows.tobytes(),
        headers={"inference-header-content-length": str(len(header))},
    )
    assert refused.status_code == 503
    assert "shutting down" in refused.json()["error"]
    for worker in workers:
        worker.join(timeout=120)
    assert results == [200, 200, 200]
    assert proc.wait(timeout=60) == 0


def test_lame_duck_answers_with_connection_close_then_refuses(
    settings: Settings,
    registry: Registry,
    cli_server: Callable[..., tuple[subprocess.Popen[bytes], str]],
) -> None:
    mf.register(sum_graph(), name="adder", registry=registry)
    config = settings.home / "serve.yaml"
    config.write_text("server: {lame_duck_s: 8}\nmodels: [{ref: adder}]\n")
    proc, url = cli_server("--config", str(config))
    with httpx.Client(base_url=url) as client:
        assert (
            client.post("/v2/models/adder/infer", json=_row()).headers.get("connection") != "close"
        )
        proc.send_signal(signal.SIGTERM)
        _wait(lambda: client.get("/v2/health/ready").status_code == 503, timeout=10)
        during = client.post("/v2/models/adder/infer", json=_row())
        assert during.status_code == 200
        assert during.headers["connection"] == "close"
        _wait(lambda: proc.poll() is not None or _refused(client), timeout=10)
    assert proc.wait(timeout=30) == 0


def _refused(client: httpx.Client) -> bool:
    """After the lame-duck window new work is turned away: 503, or no listener at all."""
    try:
        return client.post("/v2/models/adder/infer", json=_row()).status_code == 503
    except httpx.ConnectError:
        return True
