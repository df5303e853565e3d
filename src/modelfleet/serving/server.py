"""Running the server: uvicorn with a graceful drain, one process or several behind one port.

SIGTERM (or Ctrl-C) first drains: readiness turns false, new requests get 503, requests in
flight finish; then the server exits. A second signal exits at once. With ``workers > 1``
each worker is its own process with its own sessions, all listening on the same port
(SO_REUSEPORT), and Prometheus samples are shared through files so ``/metrics`` is whole.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from types import FrameType
from typing import Any

import uvicorn

from modelfleet.config import Settings
from modelfleet.serving.app import ServingApp, create_app
from modelfleet.serving.core import InferenceCore
from modelfleet.serving.metrics import ServingMetrics, mark_process_dead
from modelfleet.serving.repository import ModelRepository
from modelfleet.serving.settings import ServeConfig

logger = logging.getLogger(__name__)
_STARTUP_FAILED = 3


def build_app(config: ServeConfig, settings: Settings | None) -> ServingApp:
    """Wire metrics, repository, core and transport together."""
    metrics = ServingMetrics()
    repository = ModelRepository(config, metrics, settings)
    core = InferenceCore(config, repository, metrics)
    return create_app(core, repository, metrics)


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose first exit signal drains before shutting down."""

    def __init__(self, config: uvicorn.Config, app: ServingApp) -> None:
        super().__init__(config)
        self.serving = app
        self.drain_started: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First signal: drain. Second: exit now."""
        if self.drain_started is None and not self.should_exit:
            logger.info("signal %s: draining before exit", signal.Signals(sig).name)
            self.drain_started = time.monotonic()
            self.serving.core.begin_drain()
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        """Exit once drained (or the drain timeout passed)."""
        if self.drain_started is not None and not self.should_exit:
            waited = time.monotonic() - self.drain_started
            config = self.serving.config
            lame_duck_over = waited >= config.lame_duck_s
            idle = self.serving.core.inflight == 0
            if (idle and lame_duck_over) or waited > config.lame_duck_s + config.drain_timeout_s:
                self.should_exit = True
        return await super().on_tick(counter)


def _uvicorn_config(app: ServingApp, config: ServeConfig, log_level: str) -> uvicorn.Config:
    server = config.server
    return uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        loop=_loop(),
        http=_http(),
        lifespan="on",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=int(server.drain_timeout_s) + 5,
        server_header=False,
        # modelfleet reads no client address; skip uvicorn's per-request header rewriting.
        proxy_headers=False,
    )


def _loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _http() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def run_server(config: ServeConfig, settings: Settings | None, *, log_level: str = "info") -> None:
    """Serve until a signal arrives; blocks."""
    if config.server.workers > 1:
        _supervise(config, settings, log_level)
        return
    app = build_app(config, settings)
    server = DrainingServer(_uvicorn_config(app, config, log_level), app)
    server.run()
    if not server.started:
        raise SystemExit(_STARTUP_FAILED)


def _reuseport_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _worker_main(config_json: str, settings_json: str | None, log_level: str) -> None:
    config = ServeConfig.model_validate_json(config_json)
    settings = Settings.model_validate_json(settings_json) if settings_json else None
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s [%(process)d] %(message)s")
    app = build_app(config, settings)
    sock = _reuseport_socket(config.server.host, config.server.port)
    server = DrainingServer(_uvicorn_config(app, config, log_level), app)
    try:
        server.run(sockets=[sock])
    finally:
        mark_process_dead(os.getpid())
    if not server.started:
        raise SystemExit(_STARTUP_FAILED)


def _shared_state_dir(config: ServeConfig) -> tuple[ServeConfig, str | None]:
    """Workers share one predictions store, so feedback may reach any of them."""
    if config.monitoring.state_dir is not None:
        return config, None
    state_dir = tempfile.mkdtemp(prefix="modelfleet-state-")
    monitoring = config.monitoring.model_copy(update={"state_dir": state_dir})
    return config.model_copy(update={"monitoring": monitoring}), state_dir


def _supervise(config: ServeConfig, settings: Settings | None, log_level: str) -> None:
    # Reserve the port (bound, never listening) so every worker joins the same one.
    reserved = _reuseport_socket(config.server.host, config.server.port)
    port = reserved.getsockname()[1]
    config = config.model_copy(update={"server": config.server.model_copy(update={"port": port})})
    config, state_dir = _shared_state_dir(config)
    metrics_dir = tempfile.mkdtemp(prefix="modelfleet-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    ctx = multiprocessing.get_context("spawn")
    args = (config.model_dump_json(), settings.model_dump_json() if settings else None, log_level)
    workers: list[Any] = []
    stopping = False

    def stop(sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for proc in workers:
            if proc.is_alive() and proc.pid:
                os.kill(proc.pid, sig)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info("starting %d workers on %s:%d", config.server.workers, config.server.host, port)
    try:
        for _ in range(config.server.workers):
            proc = ctx.Process(target=_worker_main, args=args, daemon=False)
            proc.start()
            workers.append(proc)
        while not stopping:
            time.sleep(0.2)
            for i, proc in enumerate(workers):
                if not proc.is_alive() and proc.exitcode == _STARTUP_FAILED:
                    logger.error("a worker could not start; stopping")
                    stop(signal.SIGTERM, None)
                elif not proc.is_alive() and not stopping:
                    logger.warning("worker %s exited (%s); restarting", proc.pid, proc.exitcode)
                    mark_process_dead(proc.pid)
                    workers[i] = ctx.Process(target=_worker_main, args=args, daemon=False)
                    workers[i].start()
        for proc in workers:
            proc.join(config.server.drain_timeout_s + 10)
    finally:
        _clean_up(workers, reserved, metrics_dir, state_dir)


def _clean_up(workers: list[Any], reserved: socket.socket, *dirs: str | None) -> None:
    for proc in workers:
        if proc.is_alive():
            proc.kill()
    reserved.close()
    for owned in dirs:
        if owned is not None:
            shutil.rmtree(owned, ignore_errors=True)


__all__ = ["DrainingServer", "InferenceCore", "build_app", "run_server"]
