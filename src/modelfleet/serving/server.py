"""Running the server: uvicorn with a graceful drain, one process or several behind one port.

SIGTERM (or Ctrl-C) first drains: readiness turns false, every answer closes its connection,
new requests get 503, requests in flight finish; then the server exits, answering every request
it has read (``http_protocol.py``) and the connections still queued on its socket. A second
signal exits at once. With ``workers > 1``
uvicorn's supervisor (``supervisor.py``) runs one ``DrainingServer`` per process, each with
its own sessions, all serving one socket bound by the supervisor; Prometheus samples are
shared through files so ``/metrics`` is whole.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from functools import partial
from types import FrameType

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from modelfleet.config import Settings
from modelfleet.serving.app import ServingApp, create_app
from modelfleet.serving.core import InferenceCore
from modelfleet.serving.http_protocol import guarded_protocol
from modelfleet.serving.metrics import ServingMetrics
from modelfleet.serving.repository import ModelRepository
from modelfleet.serving.settings import ServeConfig
from modelfleet.serving.supervisor import Supervisor

logger = logging.getLogger(__name__)
_HEALTHCHECK_TIMEOUT_S = 15
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # where prometheus_client shares samples
_LOOP_CLOSES_S = 0.05  # uvloop closes a server's listening socket on a later loop iteration


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

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop listening, but serve the connections the kernel already queued; then exit.

        Closing a listening socket resets the connections in its backlog, though their
        clients connected and may have sent a request. So a copy of each listening socket
        outlives the server's own (which the event loop closes a little later), and what the
        kernel queued on it is accepted just before the last copy is closed.
        """
        listeners = [
            socket.socket(fileno=os.dup(listener.fileno()))
            for server in self.servers
            for listener in server.sockets
        ]
        for server in self.servers:
            server.close()
        await asyncio.sleep(_LOOP_CLOSES_S)
        queued = [conn for listener in listeners for conn in _accept_queued(listener)]
        loop = asyncio.get_running_loop()
        for conn in queued:
            await loop.connect_accepted_socket(self._new_protocol, conn)
        await super().shutdown(sockets)

    def _new_protocol(self) -> asyncio.Protocol:
        config = self.config
        return config.http_protocol_class(  # type: ignore[call-arg]  # uvicorn's own call
            config=config, server_state=self.server_state, app_state=self.lifespan.state
        )


def _accept_queued(listener: socket.socket) -> list[socket.socket]:
    """Accept every connection queued on ``listener``, then close it."""
    accepted: list[socket.socket] = []
    with listener:
        listener.setblocking(False)
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return accepted
            accepted.append(conn)


def _uvicorn_config(app: ServingApp, config: ServeConfig, log_level: str) -> uvicorn.Config:
    server = config.server
    return uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        loop=_loop(),
        http=guarded_protocol(server, lambda: app.core.draining),
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


def run_server(config: ServeConfig, settings: Settings | None, *, log_level: str = "info") -> None:
    """Serve until a signal arrives; blocks."""
    if config.server.workers > 1:
        _supervise(config, settings, log_level)
        return
    app = build_app(config, settings)
    server = DrainingServer(_uvicorn_config(app, config, log_level), app)
    server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)


def _worker_server(config_json: str, settings_json: str | None, log_level: str) -> DrainingServer:
    """Runs in each worker process: its own app, sessions and metrics, on the shared socket."""
    config = ServeConfig.model_validate_json(config_json)
    settings = Settings.model_validate_json(settings_json) if settings_json else None
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s [%(process)d] %(message)s")
    app = build_app(config, settings)
    return DrainingServer(_uvicorn_config(app, config, log_level), app)


def _shared_state_dir(config: ServeConfig) -> tuple[ServeConfig, str | None]:
    """Workers share one predictions store, so feedback may reach any of them."""
    if config.monitoring.state_dir is not None:
        return config, None
    state_dir = tempfile.mkdtemp(prefix="modelfleet-state-")
    monitoring = config.monitoring.model_copy(update={"state_dir": state_dir})
    return config.model_copy(update={"monitoring": monitoring}), state_dir


def _supervise(config: ServeConfig, settings: Settings | None, log_level: str) -> None:
    parent = uvicorn.Config(
        # uvicorn's config wants an app; the supervisor loads none, each worker builds its own.
        "(built in each worker)",
        host=config.server.host,
        port=config.server.port,
        workers=config.server.workers,
        log_level=log_level,
        # A new worker imports the serving stack before it can answer a ping: allow for a
        # busy machine, or the supervisor would take it for hung and kill it.
        timeout_worker_healthcheck=_HEALTHCHECK_TIMEOUT_S,
    )
    sock = parent.bind_socket()  # once, here: every worker serves this one socket
    port = sock.getsockname()[1]
    config = config.model_copy(update={"server": config.server.model_copy(update={"port": port})})
    config, state_dir = _shared_state_dir(config)
    metrics_dir = tempfile.mkdtemp(prefix="modelfleet-metrics-")
    os.environ[_MULTIPROC_ENV] = metrics_dir
    settings_json = settings.model_dump_json() if settings else None
    factory = partial(_worker_server, config.model_dump_json(), settings_json, log_level)
    supervisor = Supervisor(parent, [sock], factory)
    try:
        supervisor.run()
    finally:
        sock.close()
        os.environ.pop(_MULTIPROC_ENV, None)
        for owned in (metrics_dir, state_dir):
            if owned is not None:
                shutil.rmtree(owned, ignore_errors=True)
    if supervisor.startup_failed:
        raise SystemExit(STARTUP_FAILURE)


__all__ = ["DrainingServer", "InferenceCore", "build_app", "run_server"]
