"""HTTP transport: the ASGI application over :class:`InferenceCore`.

Inference POSTs (V2 ``…/infer`` and v1 ``…:predict``) take a lean ASGI path: read the body
with a size limit, decode, call the core, encode. Everything else is a Starlette route.
Errors become ``{"error": "…"}`` with their status in exactly one place,
:func:`~modelfleet.serving.http_errors.error_reply`. The OpenAPI document is built from the
route table here, so every route is documented and every documented route is live.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from modelfleet.errors import InvalidInputError, ModelfleetError, ServingError
from modelfleet.serving.auth import Authenticator
from modelfleet.serving.core import InferenceCore
from modelfleet.serving.http_errors import error_reply
from modelfleet.serving.http_input import (
    int_header,
    read_body,
    request_headers,
    request_id,
    scope_headers,
    timeout_header,
)
from modelfleet.serving.json_data import LEAN_MIN_BYTES
from modelfleet.serving.live import Summarizer, monitor_page
from modelfleet.serving.metrics import ServingMetrics
from modelfleet.serving.model import unavailable
from modelfleet.serving.openapi import docs_page, openapi_document
from modelfleet.serving.protocol import (
    HEADER_LENGTH,
    InferRequest,
    decode_request,
    decode_v1,
    encode_response,
    encode_v1,
)
from modelfleet.serving.repository import ModelRepository
from modelfleet.serving.settings import OpenPath, TokenScope

logger = logging.getLogger(__name__)

_V2_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
_V1_PREDICT = re.compile(r"^/v1/models/([^/:]+):predict$")
_JSON = b"application/json"


class ServingApp:
    """The ASGI application: lifespan, the inference fast path, Starlette for the rest."""

    def __init__(
        self, core: InferenceCore, repository: ModelRepository, metrics: ServingMetrics
    ) -> None:
        self.core = core
        self.repository = repository
        self.metrics = metrics
        self.config = core.config.server
        self.auth = Authenticator(self.config.tokens)
        self.summary = Summarizer(core.config.monitoring.summary_window_s)
        self._tasks: list[asyncio.Task[None]] = []
        self._decoder: ThreadPoolExecutor | None = None
        self.router = Starlette(
            routes=self._routes(),
            exception_handlers={
                HTTPException: self._error_response,
                ModelfleetError: self._error_response,
                # Starlette answers with this handler, then re-raises so the server logs it.
                Exception: self._error_response,
            },
        )
        # Built once: a route without a description fails here, at start-up and in tests.
        self.openapi = openapi_document(self.routes)
        self._openapi_json = orjson.dumps(self.openapi)
        self._docs_page = docs_page(self.openapi)

    @property
    def routes(self) -> Sequence[BaseRoute]:
        """Every route the server answers, the inference fast path's included."""
        return self.router.routes

    # -- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind == "http" and scope["method"] == "POST":
            path = scope["path"]
            if path.endswith("/infer"):
                match = _V2_INFER.match(path)
                if match:
                    await self._infer(scope, receive, send, match[1], match[2])
                    return
            elif path.endswith(":predict"):
                match = _V1_PREDICT.match(path)
                if match:
                    await self._predict(scope, receive, send, match[1])
                    return
        await self.router(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # report to the server, which exits
                    logger.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        """Load the models, then start following their stage pointers."""
        await self.repository.watchtower.start()
        failures = await self.repository.load_all()
        if failures:
            raise ServingError("cannot load " + "; ".join(failures))
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.repository.poll_forever()),
            loop.create_task(self._refresh_gauges()),
        ]
        # One slot: big bodies are decoded one at a time, off the event loop, so their
        # memory is one decode's and small requests are answered between the slices.
        self._decoder = ThreadPoolExecutor(1, thread_name_prefix="modelfleet-decode")
        self.core.started = True
        _tune_gc()

    async def _refresh_gauges(self) -> None:
        while True:
            self.repository.refresh_gauges()
            await asyncio.sleep(1.0)

    async def shutdown(self) -> None:
        """Drain in-flight requests, stop polling, unload."""
        self.core.begin_drain()
        drained = await self.core.wait_idle(self.config.drain_timeout_s)
        if not drained:
            logger.warning("drain timed out with %d requests in flight", self.core.inflight)
        for task in self._tasks:
            task.cancel()
        if self._decoder is not None:
            self._decoder.shutdown(wait=False, cancel_futures=True)
        await self.repository.close()

    # -- inference fast path --------------------------------------------------------------

    async def _infer(
        self, scope: Scope, receive: Receive, send: Send, name: str, version: str | None
    ) -> None:
        started = time.monotonic()
        headers = scope_headers(scope)
        status, instance = 200, None
        try:
            if self.auth.enabled:
                self.auth.check(headers.get("authorization"), "infer")
            body = await read_body(receive, headers, self.config.max_body_bytes, self._offload)
            length = headers.get(HEADER_LENGTH)
            request = await self._decode(
                body, None if length is None else int_header(length, HEADER_LENGTH)
            )
            timeout = headers.get("x-timeout-ms")
            rid = request_id(request.id or headers.get("x-request-id"))
            result = await self.core.infer(
                name,
                version,
                request,
                use_cache="no-cache" not in headers.get("cache-control", ""),
                timeout_s=None if timeout is None else timeout_header(timeout),
                request_id=rid,
            )
            instance = result.instance
            binary = _binary_map(request, result.outputs)
            payload, header_length = encode_response(
                model=name,
                version=instance.version,
                request_id=rid,
                outputs=result.outputs,
                binary=binary,
            )
            extra = [(b"x-request-id", rid.encode())]
            if header_length is not None:
                extra.append((HEADER_LENGTH.encode(), str(header_length).encode()))
            kind = _JSON if header_length is None else b"application/octet-stream"
            await _send(send, 200, payload, kind, extra)
        except Exception as exc:  # every failure becomes one JSON error response
            status = await self._send_error(scope, send, exc)
        self._count(name, instance, "v2", status, started)

    async def _offload(self, inflate: Callable[[], bytes]) -> bytes:
        if self._decoder is None:
            return inflate()
        return await asyncio.get_running_loop().run_in_executor(self._decoder, inflate)

    async def _decode(self, body: bytes, header_length: int | None) -> InferRequest:
        if len(body) < LEAN_MIN_BYTES or self._decoder is None:
            return decode_request(body, header_length)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._decoder, decode_request, body, header_length)

    async def _predict(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        started = time.monotonic()
        headers = scope_headers(scope)
        status, instance = 200, None
        try:
            self.auth.check(headers.get("authorization"), "infer")
            body = await read_body(receive, headers, self.config.max_body_bytes)
            signature = self.repository.instance(name).signature
            rid = request_id(headers.get("x-request-id"))
            result = await self.core.predict(
                name,
                decode_v1(body, signature),
                use_cache="no-cache" not in headers.get("cache-control", ""),
                request_id=rid,
            )
            instance = result.instance
            extra = [(b"x-request-id", rid.encode())]
            await _send(send, 200, encode_v1(result.outputs, signature), _JSON, extra)
        except Exception as exc:  # every failure becomes one JSON error response
            status = await self._send_error(scope, send, exc)
        self._count(name, instance, "v1", status, started)

    def _count(self, name: str, instance: Any, endpoint: str, status: int, started: float) -> None:
        elapsed = time.monotonic() - started
        if instance is None:
            handle = self.repository.handles.get(name)
            instance = handle.current if handle else None
        if instance is not None:
            instance.metrics.request(endpoint, status, elapsed)
        else:
            self.metrics.requests.labels("unknown", "", endpoint, str(status)).inc()

    async def _send_error(self, scope: Scope, send: Send, exc: Exception) -> int:
        # While draining, the HTTP protocol adds Connection: close to the last answer of a
        # connection, after every pipelined request already received is answered.
        reply = error_reply(exc, scope["method"], scope["path"])
        await _send(send, reply.status, reply.body, _JSON, list(reply.headers))
        return reply.status

    # -- other routes ---------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        # The fast path answers inference before Starlette sees it; the stubs keep those
        # paths in the route table, so they are documented and other methods get 405.
        infer_stub = self._infer_via_router
        return [
            Route("/", self._page),
            Route("/v2", self._server_metadata),
            Route("/v2/health/live", self._live),
            Route("/v2/health/ready", self._ready),
            Route("/v2/models/{name}", self._model_metadata),
            Route("/v2/models/{name}/versions/{version}", self._model_metadata),
            Route("/v2/models/{name}/ready", self._model_ready),
            Route("/v2/models/{name}/versions/{version}/ready", self._model_ready),
            Route("/v2/models/{name}/config", self._model_config),
            Route("/v2/models/{name}/versions/{version}/config", self._model_config),
            Route("/v2/models/{name}/infer", infer_stub, methods=["POST"]),
            Route("/v2/models/{name}/versions/{version}/infer", infer_stub, methods=["POST"]),
            Route("/v2/models/{name}/feedback", self._feedback, methods=["POST"]),
            Route("/v2/repository/index", self._repository_index, methods=["GET", "POST"]),
            Route("/v2/repository/models/{name}/load", self._load, methods=["POST"]),
            Route("/v1/models/{name}", self._v1_status),
            Route("/v1/models/{name}:predict", infer_stub, methods=["POST"]),
            Route("/admin/reload", self._reload_all, methods=["POST"]),
            Route("/metrics", self._metrics),
            Route("/monitor/summary", self._summary),
            Route("/openapi.json", self._openapi),
            Route("/docs", self._docs),
        ]

    def _guard(self, request: Request, needs: TokenScope, kind: OpenPath | None = None) -> None:
        if kind is not None and kind in self.config.open_paths:
            return
        self.auth.check(request.headers.get("authorization"), needs)

    @staticmethod
    def _json(doc: Any, status: int = 200) -> Response:
        return Response(orjson.dumps(doc), status_code=status, media_type="application/json")

    async def _infer_via_router(self, request: Request) -> Response:  # pragma: no cover
        raise HTTPException(404)  # reached only for paths the fast path rejects

    async def _server_metadata(self, request: Request) -> Response:
        self._guard(request, "infer", "health")
        return self._json(self.core.server_metadata())

    async def _live(self, request: Request) -> Response:
        self._guard(request, "infer", "health")
        return self._json({"live": self.core.live})

    async def _ready(self, request: Request) -> Response:
        self._guard(request, "infer", "health")
        ready = self.core.ready
        return self._json({"ready": ready}, 200 if ready else 503)

    async def _model_metadata(self, request: Request) -> Response:
        self._guard(request, "infer")
        p = request.path_params
        return self._json(self.core.model_metadata(p["name"], p.get("version")))

    async def _model_ready(self, request: Request) -> Response:
        self._guard(request, "infer", "health")
        p = request.path_params
        self.repository.handle(p["name"])
        ready = self.core.model_ready(p["name"], p.get("version"))
        return self._json({"name": p["name"], "ready": ready}, 200 if ready else 503)

    async def _model_config(self, request: Request) -> Response:
        self._guard(request, "infer")
        p = request.path_params
        return self._json(self.core.model_config(p["name"], p.get("version")))

    async def _repository_index(self, request: Request) -> Response:
        self._guard(request, "infer")
        return self._json(self.core.repository_index())

    async def _load(self, request: Request) -> Response:
        self._guard(request, "admin")
        statuses = await self.repository.reload(request.path_params["name"])
        return self._json(statuses[0])

    async def _reload_all(self, request: Request) -> Response:
        self._guard(request, "admin")
        return self._json(await self.repository.reload())

    async def _v1_status(self, request: Request) -> Response:
        self._guard(request, "infer", "health")
        name = request.path_params["name"]
        self.repository.handle(name)
        return self._json({"name": name, "ready": self.core.model_ready(name)})

    async def _metrics(self, request: Request) -> Response:
        self._guard(request, "admin", "metrics")
        self.repository.refresh_gauges()
        await self.repository.watchtower.flush()  # count the latest predictions too
        body, kind = self.metrics.render()
        return Response(body, media_type=kind)

    async def _feedback(self, request: Request) -> Response:
        self._guard(request, "feedback")
        name = request.path_params["name"]
        handle = self.repository.handle(name)
        instance = handle.current
        if instance is None:
            raise unavailable(name, handle.last_error or "still loading")
        if instance.watch is None:
            raise InvalidInputError(
                f"model {name!r} is served with watch.enabled false: nothing records its "
                "predictions",
                hint="enable watching in the serve config to take feedback",
            )
        limit = self.config.max_body_bytes
        body = await read_body(request.receive, request_headers(request), limit)
        return self._json(await self.repository.watchtower.feedback(instance.watch, body))

    async def _summary(self, request: Request) -> Response:
        self._guard(request, "admin", "metrics")
        self.repository.refresh_gauges()
        await self.repository.watchtower.flush()
        return self._json(self.summary.summarize(self.repository, self.metrics.render()[0]))

    async def _page(self, request: Request) -> Response:
        self._guard(request, "infer", "docs")
        return HTMLResponse(monitor_page())

    async def _openapi(self, request: Request) -> Response:
        self._guard(request, "infer", "docs")
        return Response(self._openapi_json, media_type="application/json")

    async def _docs(self, request: Request) -> Response:
        self._guard(request, "infer", "docs")
        return HTMLResponse(self._docs_page)

    async def _error_response(self, request: Request, exc: Exception) -> Response:
        reply = error_reply(exc, request.method, request.url.path)
        return Response(
            reply.body,
            status_code=reply.status,
            headers=reply.header_dict(),
            media_type="application/json",
        )


def _tune_gc() -> None:
    # Everything loaded so far (sessions, modules, settings) lives as long as the server:
    # move it out of the collector's sight, and collect the young generation less often.
    # The hot path allocates many short-lived objects; with the defaults, full
    # collections walking every long-lived object showed up as tens of ms at p99.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


_NO_BINARY: dict[str, bool] = {}


def _binary_map(request: Any, outputs: dict[str, Any]) -> dict[str, bool]:
    if request.outputs is not None:
        return dict(request.outputs)
    if not request.binary_output:
        return _NO_BINARY
    return dict.fromkeys(outputs, True)


async def _send(
    send: Send, status: int, body: bytes, kind: bytes, extra: list[tuple[bytes, bytes]]
) -> None:
    headers = [
        (b"content-type", kind),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(
    core: InferenceCore, repository: ModelRepository, metrics: ServingMetrics
) -> ServingApp:
    """Assemble the ASGI application."""
    return ServingApp(core, repository, metrics)
