"""Following ``name@stage`` as an operator sees it: idle polls, hot-swap logs, failing versions."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import modelfleet as mf
from modelfleet.config import Settings
from modelfleet.registry import Registry
from modelfleet.serving.metrics import ServingMetrics
from modelfleet.serving.repository import ModelRepository
from modelfleet.serving.settings import ModelConfig, MonitoringConfig, ServeConfig, ServerConfig
from tests.models import sum_graph
from tests.servers import free_port, wait_for_port

POLL_S = 0.1


def _wide_graph(features: int) -> Any:
    """X float32[N, features] @ W[features, features]: a model of features² x 4 bytes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).random((features, features), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "wide",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", features])],
        initializer=[numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


class Served:
    """A ``modelfleet serve`` subprocess at the CLI's default log level, and its log."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    def lines(self, text: str) -> list[str]:
        """Log lines containing ``text``."""
        return [line for line in self.log.read_text().splitlines() if text in line]

    def wait_for_line(self, text: str, timeout: float = 60) -> None:
        _wait(lambda: bool(self.lines(text)), timeout, f"no log line with {text!r}")

    def version(self) -> str:
        body = {"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
        response = httpx.post(f"{self.url}/v2/models/adder/infer", json=body, timeout=30)
        assert response.status_code == 200, response.text
        return str(response.json()["model_version"])

    def load_failures(self) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=30).text
        name = "modelfleet_model_load_failures_total{"
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if name in line)


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


@pytest.fixture
def serve(settings: Settings, tmp_path: Path) -> Iterator[Callable[[str], Served]]:
    """Start ``modelfleet serve REF`` polling every 0.1 s; stopped (or killed) after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(ref: str) -> Served:
        port = free_port()
        config = tmp_path / "serve.yaml"
        config.write_text(f"server: {{poll_interval_s: {POLL_S}}}\n")
        log = tmp_path / f"serve-{port}.log"
        argv = [sys.executable, "-m", "modelfleet", "serve", ref, "--config", str(config)]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*argv, "--port", str(port)],
                env={**os.environ, "MODELFLEET_HOME": str(settings.home)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(proc)
        wait_for_port(port, timeout=120)
        url = f"http://127.0.0.1:{port}"
        _wait(lambda: httpx.get(f"{url}/v2/health/ready").status_code == 200, 120, "never ready")
        return Served(proc, url, log)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


def _bytes_read(pid: int) -> int:
    """Bytes the process got from read(2)-like calls: page-cache hits count too."""
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["rchar"])


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/<pid>/io")
def test_an_idle_server_does_not_reread_its_model(
    registry: Registry, settings: Settings, serve: Callable[[str], Served]
) -> None:
    mf.register(_wide_graph(2600), name="wide", registry=registry)
    mf.promote("wide:1", to="prod", registry=registry)
    record = registry.get("wide:1").artifact("onnx")
    assert record is not None
    model_bytes = (Path(settings.artifacts) / record.key).stat().st_size
    assert model_bytes > 25_000_000
    server = serve("wide@prod")
    before = _bytes_read(server.proc.pid)
    time.sleep(30 * POLL_S)  # some 30 polls of the stage pointer
    read = _bytes_read(server.proc.pid) - before
    assert read < model_bytes / 4, (
        f"an idle server read {read / 1e6:.1f} MB in {30 * POLL_S:.0f} s "
        f"(the model is {model_bytes / 1e6:.1f} MB)"
    )


def _promote_corrupted(registry: Registry, settings: Settings) -> tuple[Path, bytes]:
    """Register a version whose stored graph is damaged, promote it; the file and good bytes."""
    broken = mf.register(sum_graph(), name="adder", metrics={"v": 3}, registry=registry)
    record = broken.artifact("onnx")
    assert record is not None
    stored = Path(settings.artifacts) / record.key
    good = stored.read_bytes()
    stored.write_bytes(b"corrupted bytes")
    mf.promote(f"adder:{broken.version}", to="prod", registry=registry)
    return stored, good


def test_hot_swaps_and_drains_are_logged_once_at_the_default_level(
    registry: Registry, serve: Callable[[str], Served]
) -> None:
    mf.register(sum_graph(), name="adder", registry=registry)
    mf.promote("adder:1", to="prod", registry=registry)
    server = serve("adder@prod")
    mf.register(sum_graph(), name="adder", metrics={"v": 2}, registry=registry)
    mf.promote("adder:2", to="prod", registry=registry)
    server.wait_for_line("retired adder version 1")
    time.sleep(10 * POLL_S)  # more polls of the same pointer add nothing
    assert server.version() == "2"
    assert len(server.lines("hot swap adder: version 1 -> 2")) == 1
    assert len(server.lines("draining adder version 1")) == 1
    assert len(server.lines("retired adder version 1")) == 1


def test_a_failing_version_is_logged_once_and_retried_with_backoff(
    registry: Registry, settings: Settings, serve: Callable[[str], Served]
) -> None:
    mf.register(sum_graph(), name="adder", registry=registry)
    mf.promote("adder:1", to="prod", registry=registry)
    server = serve("adder@prod")
    stored, good = _promote_corrupted(registry, settings)
    server.wait_for_line("failed")
    time.sleep(40 * POLL_S)  # some 40 polls while version 2 stays broken
    failed = server.lines("failed")
    assert len(failed) == 1, f"{len(failed)} lines: {failed[:3]}"
    assert "hot swap of adder to version 2 failed: artifact corrupted" in failed[0]
    assert "version 1 keeps serving" in failed[0]
    assert 2 <= server.load_failures() <= 6  # retried at 0.2, 0.6, 1.4, 3.0 s: not per poll
    assert server.version() == "1"
    stored.write_bytes(good)  # repaired: a later retry loads it without any new promotion
    server.wait_for_line("hot swap adder: version 1 -> 2", timeout=60)
    assert server.version() == "2"
    assert len(server.lines("failed")) == 1


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_retries_of_a_failing_version_double_up_to_a_cap(
    registry: Registry, settings: Settings, tmp_path: Path
) -> None:
    mf.register(sum_graph(), name="adder", registry=registry)
    mf.promote("adder:1", to="prod", registry=registry)
    config = ServeConfig(
        server=ServerConfig(poll_interval_s=10, warmup=False),
        monitoring=MonitoringConfig(state_dir=str(tmp_path / "state")),
        models=(ModelConfig(ref="adder@prod"),),
    )
    metrics, clock = ServingMetrics(), Clock()

    def failures() -> float:
        value = metrics.registry.get_sample_value(
            "modelfleet_model_load_failures_total", {"model": "adder"}
        )
        return value or 0.0

    async def scenario() -> list[float]:
        repository = ModelRepository(config, metrics, settings, clock=clock)
        await repository.watchtower.start()
        try:
            assert await repository.load_all() == []
            _promote_corrupted(registry, settings)
            tried_at = []
            for _ in range(200):  # polls every 10 s for 2000 s
                before = failures()
                status = await repository.load(repository.handle("adder"), polled=True)
                assert status["version"] == "1" and status["state"] == "ready"
                if failures() > before:
                    tried_at.append(clock.now)
                clock.now += 10
            return tried_at
        finally:
            await repository.close()

    tried_at = asyncio.run(scenario())
    waits = [b - a for a, b in itertools.pairwise(tried_at)]
    assert waits[:4] == [20, 40, 80, 160], tried_at
    assert set(waits[4:]) == {300}, tried_at  # capped at 5 minutes
