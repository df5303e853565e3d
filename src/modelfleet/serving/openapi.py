"""The OpenAPI description of the live routes, and a docs page rendered from it (no CDN, no script).

Paths and methods come from the application's route table; what each operation means lives in
:data:`OPERATIONS`, keyed by ``(method, path)``. Building the document fails when a route has
no entry or an entry has no route, so the two cannot drift apart.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.routing import BaseRoute, Route

from modelfleet import __version__

Operation = dict[str, Any]

_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {
            "type": "string",
            "enum": [
                "BOOL",
                "UINT8",
                "UINT16",
                "UINT32",
                "UINT64",
                "INT8",
                "INT16",
                "INT32",
                "INT64",
                "FP16",
                "FP32",
                "FP64",
                "BYTES",
            ],
        },
        "parameters": {"type": "object"},
        "data": {"type": "array", "items": {}},
    },
}
_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}}
_REASONS = {
    400: "bad request (malformed, wrong shape or datatype, too many rows)",
    401: "missing or invalid bearer token",
    403: "token lacks the scope",
    404: "unknown model or version",
    413: "body larger than the limit",
    503: "queue full (Retry-After) or server draining",
    504: "deadline passed before the request ran; it was not executed",
}
_INFER_ERRORS = (400, 401, 403, 404, 413, 503, 504)
_ADMIN_ERRORS = (401, 403)


def _json(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _op(
    summary: str,
    *,
    body: Mapping[str, Any] | None = None,
    ok: Mapping[str, Any] | None = None,
    errors: tuple[int, ...] = (404,),
) -> Operation:
    op: Operation = {
        "summary": summary,
        "responses": {
            "200": {"description": "OK", **_json(ok or {"type": "object"})},
            **{str(c): {"description": _REASONS[c], **_json(_ERROR)} for c in errors},
        },
    }
    if body is not None:
        op["requestBody"] = {"required": True, **_json(body)}
    return op


def _other(summary: str, media: str) -> Operation:
    """An operation answering something other than JSON (a page, the Prometheus text)."""
    return {"summary": summary, "responses": {"200": {"description": media}}}


_INFER = _op(
    "V2 inference (JSON, or JSON header + binary tensors)",
    body={
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {
                "type": "object",
                "description": "timeout (microseconds), priority (1 most urgent), "
                "binary_data_output, cache (false to bypass)",
            },
            "inputs": {"type": "array", "items": _TENSOR},
            "outputs": {"type": "array", "items": {"type": "object"}},
        },
    },
    ok={
        "type": "object",
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": _TENSOR},
        },
    },
    errors=_INFER_ERRORS,
)
_PREDICT = _op(
    "KServe v1 prediction",
    body={"type": "object", "properties": {"instances": {"type": "array", "items": {}}}},
    ok={
        "type": "object",
        "properties": {"predictions": {"type": "array"}, "probabilities": {"type": "array"}},
    },
    errors=_INFER_ERRORS,
)
_FEEDBACK = _op(
    "True labels for earlier requests, joined by request id into the live accuracy",
    body={
        "type": "object",
        "required": ["request_ids", "labels"],
        "properties": {
            "request_ids": {"type": "array", "items": {"type": "string"}},
            "labels": {"type": "array", "description": "one label, or a list per row, per id"},
        },
    },
    ok={
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "accepted": {"type": "integer"},
            "rows": {"type": "integer"},
            "correct": {"type": "integer"},
            "live_accuracy": {"type": "object"},
            "cache": {"type": "object"},
        },
    },
    errors=(400, 401, 403, 404, 413, 503),
)
_INDEX = _op("Served models and their state", errors=())

OPERATIONS: Mapping[tuple[str, str], Operation] = {
    ("GET", "/"): _other("Live monitoring page", "HTML"),
    ("GET", "/v2"): _op("Server metadata and extensions", errors=()),
    ("GET", "/v2/health/live"): _op("Liveness", errors=()),
    ("GET", "/v2/health/ready"): _op("Readiness (503 while loading or draining)", errors=(503,)),
    ("GET", "/v2/models/{name}"): _op("Model metadata"),
    ("GET", "/v2/models/{name}/versions/{version}"): _op("Model version metadata"),
    ("GET", "/v2/models/{name}/ready"): _op("Model readiness"),
    ("GET", "/v2/models/{name}/versions/{version}/ready"): _op("Model version readiness"),
    ("GET", "/v2/models/{name}/config"): _op("Triton-style model configuration"),
    ("GET", "/v2/models/{name}/versions/{version}/config"): _op(
        "Triton-style model version configuration"
    ),
    ("POST", "/v2/models/{name}/infer"): _INFER,
    ("POST", "/v2/models/{name}/versions/{version}/infer"): _INFER,
    ("POST", "/v2/models/{name}/feedback"): _FEEDBACK,
    ("GET", "/v2/repository/index"): _INDEX,
    ("POST", "/v2/repository/index"): _INDEX,
    ("POST", "/v2/repository/models/{name}/load"): _op(
        "Reload a model now (admin)", errors=(*_ADMIN_ERRORS, 404)
    ),
    ("GET", "/v1/models/{name}"): _op("KServe v1 model status"),
    ("POST", "/v1/models/{name}:predict"): _PREDICT,
    ("POST", "/admin/reload"): _op("Reload every model now (admin)", errors=_ADMIN_ERRORS),
    ("GET", "/metrics"): _other("Prometheus metrics", "text exposition"),
    ("GET", "/monitor/summary"): _op(
        "Request rates, latency percentiles, cache, drift and live accuracy per model",
        errors=_ADMIN_ERRORS,
    ),
    ("GET", "/openapi.json"): _op("This document", errors=()),
    ("GET", "/docs"): _other("API documentation page", "HTML"),
}
"""What each live operation means, keyed by ``(method, path)`` exactly as routed."""


def route_operations(routes: Iterable[BaseRoute]) -> list[tuple[str, str, list[str]]]:
    """``(method, path, path parameters)`` of every operation the routes answer.

    HEAD is left out: Starlette answers it for every GET route on its own.
    """
    found = []
    for route in routes:
        if not isinstance(route, Route) or route.methods is None:
            raise LookupError(f"cannot describe route {route!r}: only HTTP routes are documented")
        params = list(route.param_convertors)
        for method in sorted(route.methods - {"HEAD"}):
            found.append((method, route.path, params))
    return found


def openapi_document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """OpenAPI 3.1 for exactly the operations ``routes`` answer.

    Raises ``LookupError`` naming the route when a route has no entry in :data:`OPERATIONS`,
    or an entry names an operation no route answers.
    """
    live = route_operations(routes)
    missing = [f"{m} {p}" for m, p, _ in live if (m, p) not in OPERATIONS]
    stale = sorted(f"{m} {p}" for m, p in set(OPERATIONS) - {(m, p) for m, p, _ in live})
    if missing or stale:
        raise LookupError(
            f"routes without a description: {missing}; descriptions without a route: {stale}; "
            "keep OPERATIONS in modelfleet/serving/openapi.py equal to the route table"
        )
    paths: dict[str, dict[str, Operation]] = {}
    for method, path, params in live:
        op = dict(OPERATIONS[(method, path)])
        if params:
            op["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "modelfleet model server",
            "version": __version__,
            "description": "V2 Open Inference Protocol with Triton's binary tensor "
            "extension, and KServe v1 :predict.",
        },
        "paths": paths,
    }


def docs_page(doc: Mapping[str, Any]) -> str:
    """A self-contained HTML page listing every operation of ``doc``."""
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = ", ".join(sorted(op.get("responses", {})))
            rows.append(
                f"<tr><td class=m>{method.upper()}</td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(op['summary'])}</td><td>{codes}</td></tr>"
            )
    info = doc["info"]
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{html.escape(info['title'])}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:.4em .8em;"
        "text-align:left}.m{font-weight:bold;color:#05a}</style></head><body>"
        f"<h1>{html.escape(info['title'])} {html.escape(info['version'])}</h1>"
        f"<p>{html.escape(info['description'])}</p>"
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>. Errors are "
        '<code>{"error": "…"}</code>.</p>'
        "<table><tr><th>method</th><th>path</th><th>what</th><th>statuses</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )
