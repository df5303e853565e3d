"""A real modelfleet server on a free loopback port, run in a thread and stopped after the test."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

import modelfleet as mf
from modelfleet.config import Settings
from modelfleet.registry import Registry
from modelfleet.serving.app import ServingApp
from modelfleet.serving.server import DrainingServer, build_app
from modelfleet.serving.settings import (
    ModelConfig,
    MonitoringConfig,
    ServeConfig,
    ServerConfig,
    StateConfig,
)
from tests.models import echo_graph, heavy_graph, logistic_pipeline, sum_graph
from tests.servers import free_port


@dataclass
class RunningServer:
    """A started server: its URL, the app (to inspect state), and a sync client."""

    url: str
    app: ServingApp
    server: DrainingServer
    http: httpx.Client

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        text = self.http.get("/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total


@contextmanager
def run_server(config: ServeConfig, settings: Settings | None) -> Iterator[RunningServer]:
    """Start ``config`` on a free port; stop it (draining) when the block ends."""
    port = free_port()
    config = config.model_copy(
        update={"server": config.server.model_copy(update={"port": port, "host": "127.0.0.1"})}
    )
    app = build_app(config, settings)
    uv = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_level="warning",
        loop="asyncio",
        http="httptools",
    )
    server = DrainingServer(uv, app)
    thread = threading.Thread(target=server.run, name=f"server-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("server failed to start (see log output)")
        if time.monotonic() > deadline:
            raise TimeoutError("server did not start within 60 s")
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=60) as http:
        try:
            yield RunningServer(url, app, server, http)
        finally:
            server.should_exit = True
            thread.join(timeout=60)


ServerFactory = Callable[..., Any]


@pytest.fixture
def served(settings: Settings) -> Iterator[Callable[..., RunningServer]]:
    """Start servers for the given model configs (and server settings) on the test's registry."""
    stack: list[Any] = []

    def start(
        *models: ModelConfig,
        monitoring: MonitoringConfig | None = None,
        state: StateConfig | None = None,
        **server: Any,
    ) -> RunningServer:
        config = ServeConfig(
            server=ServerConfig(**server),
            monitoring=monitoring or MonitoringConfig(),
            state=state or StateConfig(),
            models=models,
        )
        ctx = run_server(config, settings)
        running = ctx.__enter__()
        stack.append(ctx)
        return running

    yield start
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


@pytest.fixture
def models(registry: Registry) -> Registry:
    """A registry with: iris (logistic, accuracy 0.97), adder (sum), echo (all dtypes), heavy."""
    model, X, y = logistic_pipeline()
    mf.register(
        model,
        name="iris",
        sample_input=X,
        metrics={"accuracy": model.score(X, y)},
        registry=registry,
    )
    mf.register(sum_graph(), name="adder", metrics={"accuracy": 1.0}, registry=registry)
    mf.register(echo_graph(), name="echo", registry=registry)
    mf.register(heavy_graph(), name="heavy", registry=registry)
    return registry
