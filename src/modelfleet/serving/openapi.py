"""The OpenAPI description of the server, and a docs page rendered from it (no CDN, no script)."""

from __future__ import annotations

import html
from typing import Any

from modelfleet import __version__

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


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    reasons = {
        400: "bad request (malformed, wrong shape or datatype, too many rows)",
        401: "missing or invalid bearer token",
        403: "token lacks the scope",
        404: "unknown model or version",
        413: "body larger than the limit",
        503: "queue full (Retry-After) or server draining",
        504: "deadline passed before the request ran; it was not executed",
    }
    return {str(c): {"description": reasons[c], **_json(_ERROR)} for c in codes}


def _op(
    summary: str,
    *,
    body: dict[str, Any] | None = None,
    ok: dict[str, Any] | None = None,
    errors: tuple[int, ...] = (404,),
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": "OK", **_json(ok or {"type": "object"})},
            **_errors(*errors),
        },
    }
    if body is not None:
        op["requestBody"] = {"required": True, **_json(body)}
    return op


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 for every route the server answers."""
    infer_body = {
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
    }
    infer_ok = {
        "type": "object",
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": _TENSOR},
        },
    }
    infer = _op(
        "V2 inference (JSON, or JSON header + binary tensors)",
        body=infer_body,
        ok=infer_ok,
        errors=(400, 401, 403, 404, 413, 503, 504),
    )
    v1 = _op(
        "KServe v1 prediction",
        body={"type": "object", "properties": {"instances": {"type": "array", "items": {}}}},
        ok={
            "type": "object",
            "properties": {"predictions": {"type": "array"}, "probabilities": {"type": "array"}},
        },
        errors=(400, 401, 403, 404, 413, 503, 504),
    )
    paths: dict[str, Any] = {
        "/v2": {"get": _op("Server metadata and extensions", errors=())},
        "/v2/health/live": {"get": _op("Liveness", errors=())},
        "/v2/health/ready": {
            "get": _op("Readiness (503 while loading or draining)", errors=(503,))
        },
        "/v2/models/{name}": {"get": _op("Model metadata")},
        "/v2/models/{name}/versions/{version}": {"get": _op("Model version metadata")},
        "/v2/models/{name}/ready": {"get": _op("Model readiness")},
        "/v2/models/{name}/versions/{version}/ready": {"get": _op("Model version readiness")},
        "/v2/models/{name}/config": {"get": _op("Triton-style model configuration")},
        "/v2/models/{name}/infer": {"post": infer},
        "/v2/models/{name}/versions/{version}/infer": {"post": infer},
        "/v2/repository/index": {"post": _op("Served models and their state", errors=())},
        "/v2/repository/models/{name}/load": {
            "post": _op("Reload a model now (admin)", errors=(401, 403, 404))
        },
        "/v1/models/{name}": {"get": _op("KServe v1 model status")},
        "/v1/models/{name}:predict": {"post": v1},
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "text exposition"}},
            }
        },
        "/openapi.json": {"get": _op("This document", errors=())},
        "/docs": {
            "get": {
                "summary": "API documentation page",
                "responses": {"200": {"description": "HTML"}},
            }
        },
    }
    for path, ops in paths.items():
        params = [p.strip("{}") for p in path.replace(":", "/").split("/") if p.startswith("{")]
        for op in ops.values():
            if params:
                op["parameters"] = [
                    {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                    for p in params
                ]
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


def docs_page(doc: dict[str, Any]) -> str:
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
