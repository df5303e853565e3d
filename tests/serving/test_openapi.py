"""The OpenAPI document and the docs page match the routes the server really answers."""

from __future__ import annotations

import html
from collections.abc import Callable

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelfleet.registry import Registry
from modelfleet.serving.openapi import OPERATIONS, openapi_document
from modelfleet.serving.settings import ModelConfig
from tests.serving.conftest import RunningServer

Start = Callable[..., RunningServer]

# What the server must keep offering; the document may grow, never lose one of these.
REQUIRED = {
    ("GET", "/"),
    ("GET", "/v2"),
    ("GET", "/v2/health/live"),
    ("GET", "/v2/health/ready"),
    ("GET", "/v2/models/{name}"),
    ("GET", "/v2/models/{name}/versions/{version}"),
    ("GET", "/v2/models/{name}/ready"),
    ("GET", "/v2/models/{name}/versions/{version}/ready"),
    ("GET", "/v2/models/{name}/config"),
    ("GET", "/v2/models/{name}/versions/{version}/config"),
    ("POST", "/v2/models/{name}/infer"),
    ("POST", "/v2/models/{name}/versions/{version}/infer"),
    ("POST", "/v2/models/{name}/feedback"),
    ("GET", "/v2/repository/index"),
    ("POST", "/v2/repository/index"),
    ("POST", "/v2/repository/models/{name}/load"),
    ("GET", "/v1/models/{name}"),
    ("POST", "/v1/models/{name}:predict"),
    ("POST", "/admin/reload"),
    ("GET", "/metrics"),
    ("GET", "/monitor/summary"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
}


@pytest.fixture
def server(models: Registry, served: Start) -> RunningServer:
    return served(ModelConfig(ref="adder"))


def _operations(doc: dict[str, object]) -> set[tuple[str, str]]:
    paths = doc["paths"]
    assert isinstance(paths, dict)
    return {(method.upper(), path) for path, ops in paths.items() for method in ops}


def test_every_live_route_is_documented_and_nothing_else(server: RunningServer) -> None:
    doc = server.http.get("/openapi.json").json()
    live = {
        (method, route.path)
        for route in server.app.routes
        if isinstance(route, Route) and route.methods
        for method in route.methods - {"HEAD"}
    }
    assert _operations(doc) == live
    assert REQUIRED.issubset(live), sorted(REQUIRED - live)
    infer = doc["paths"]["/v2/models/{name}/versions/{version}/infer"]["post"]
    assert [p["name"] for p in infer["parameters"]] == ["name", "version"]
    assert "requestBody" in infer and "413" in infer["responses"]


def test_every_documented_operation_is_answered(server: RunningServer) -> None:
    doc = server.http.get("/openapi.json").json()
    for method, path in sorted(_operations(doc)):
        url = path.replace("{name}", "adder").replace("{version}", "1")
        response = server.http.request(method, url, content=b"{}")
        reason = f"{method} {path}: {response.status_code} {response.text[:200]}"
        assert response.status_code != 405, reason
        if response.status_code == 404:
            assert "no route" not in response.json()["error"], reason


def test_docs_page_lists_every_operation_offline(server: RunningServer) -> None:
    doc = server.http.get("/openapi.json").json()
    page = server.http.get("/docs")
    assert page.status_code == 200
    for method, path in _operations(doc):
        assert f"<td class=m>{method}</td><td><code>{html.escape(path)}</code>" in page.text
    assert "<script" not in page.text
    assert "https://" not in page.text


async def _nothing(request: Request) -> Response:  # pragma: no cover - never called
    return Response()


def _routes_of(operations: set[tuple[str, str]]) -> list[Route]:
    return [Route(path, _nothing, methods=[method]) for method, path in sorted(operations)]


def test_a_route_without_a_description_is_refused() -> None:
    described = set(OPERATIONS)
    assert _operations(openapi_document(_routes_of(described))) == described
    with pytest.raises(LookupError, match=r"without a description: \['GET /v2/new'\]"):
        openapi_document([*_routes_of(described), Route("/v2/new", _nothing)])
    with pytest.raises(LookupError, match=r"without a route: \['POST /admin/reload'\]"):
        openapi_document(_routes_of(described - {("POST", "/admin/reload")}))
