"""Bearer tokens with scopes; health and metrics stay open unless configured otherwise."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from modelfleet.errors import ConfigError
from modelfleet.registry import Registry
from modelfleet.serving.auth import hash_token, new_token, parse_tokens
from modelfleet.serving.settings import ModelConfig, TokenConfig
from tests.serving.conftest import RunningServer

Start = Callable[..., RunningServer]
ROW = {"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}


@pytest.fixture
def secured(models: Registry, served: Start) -> RunningServer:
    tokens = (
        TokenConfig(name="app", sha256=hash_token("infer-token"), scopes=("infer",)),
        TokenConfig(name="ops", sha256=hash_token("admin-token"), scopes=("infer", "admin")),
    )
    return served(ModelConfig(ref="adder"), tokens=tokens)


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_inference_needs_a_token(secured: RunningServer) -> None:
    missing = secured.http.post("/v2/models/adder/infer", json=ROW)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "needs a bearer token" in missing.json()["error"]
    wrong = secured.http.post("/v2/models/adder/infer", json=ROW, headers=_auth("nope"))
    assert wrong.status_code == 401
    ok = secured.http.post("/v2/models/adder/infer", json=ROW, headers=_auth("infer-token"))
    assert ok.status_code == 200
    v1 = secured.http.post("/v1/models/adder:predict", json={"instances": [[1, 2, 3]]})
    assert v1.status_code == 401


def test_admin_endpoints_need_the_admin_scope(secured: RunningServer) -> None:
    path = "/v2/repository/models/adder/load"
    assert secured.http.post(path).status_code == 401
    forbidden = secured.http.post(path, headers=_auth("infer-token"))
    assert forbidden.status_code == 403
    assert "'admin' scope" in forbidden.json()["error"]
    assert secured.http.post(path, headers=_auth("admin-token")).status_code == 200
    assert secured.http.get("/v2/models/adder").status_code == 401


def test_feedback_needs_the_feedback_scope(models: Registry, served: Start) -> None:
    """A client that may only ask cannot grade answers (and so move the cache gate)."""
    tokens = (
        TokenConfig(name="app", sha256=hash_token("infer-token"), scopes=("infer",)),
        TokenConfig(
            name="labeller", sha256=hash_token("label-token"), scopes=("infer", "feedback")
        ),
    )
    server = served(ModelConfig(ref="iris"), tokens=tokens)
    row = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5, 3, 1, 0]}]}
    answer = server.http.post("/v2/models/iris/infer", json=row, headers=_auth("infer-token"))
    assert answer.status_code == 200, answer.text
    label = {"request_ids": [answer.json()["id"]], "labels": [0]}
    refused = server.http.post("/v2/models/iris/feedback", json=label, headers=_auth("infer-token"))
    assert refused.status_code == 403
    assert "'feedback' scope" in refused.json()["error"]
    taken = server.http.post("/v2/models/iris/feedback", json=label, headers=_auth("label-token"))
    assert taken.status_code == 200, taken.text
    assert taken.json()["accepted"] == 1


def test_health_metrics_and_docs_stay_open(secured: RunningServer) -> None:
    for path in (
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/adder/ready",
        "/metrics",
        "/docs",
        "/openapi.json",
    ):
        assert secured.http.get(path).status_code == 200, path


def test_closing_metrics_requires_admin(models: Registry, served: Start) -> None:
    tokens = (TokenConfig(name="ops", sha256=hash_token("t"), scopes=("admin",)),)
    server = served(ModelConfig(ref="adder"), tokens=tokens, open_paths=("health",))
    assert server.http.get("/metrics").status_code == 401
    assert server.http.get("/metrics", headers=_auth("t")).status_code == 200
    assert server.http.get("/v2/health/live").status_code == 200


def test_token_helpers() -> None:
    token, digest = new_token()
    assert hash_token(token) == digest
    parsed = parse_tokens(f"ci:{digest}:infer+admin, viewer:{digest}:infer")
    assert [(t.name, t.scopes) for t in parsed] == [
        ("ci", ("infer", "admin")),
        ("viewer", ("infer",)),
    ]
    with pytest.raises(ConfigError, match="name:sha256"):
        parse_tokens("just-a-token")
    with pytest.raises(ConfigError, match="invalid token entry 'x'"):
        parse_tokens("x:abc:infer")
