"""Request ids: unguessable when the server picks them, exact or refused when a client does.

Issue 10 items 4 (feedback aimed at other clients' predictions by guessing ids) and 12
(a non-ASCII ``X-Request-Id`` came back garbled, and feedback with it got a 404).
"""

from __future__ import annotations

import itertools
import string
from typing import Any

import httpx
import pytest

from modelfleet.registry import Registry
from modelfleet.serving.settings import ModelConfig
from tests.models import iris
from tests.serving.conftest import RunningServer

_URLSAFE = set(string.ascii_letters + string.digits + "-_")


@pytest.fixture
def iris_server(models: Registry, served: Any) -> RunningServer:
    return served(ModelConfig(ref="iris"))  # type: ignore[no-any-return]


def _predict(server: RunningServer, headers: dict[str, Any] | None = None) -> httpx.Response:
    X, _ = iris()
    body = {
        "inputs": [
            {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": X[0].tolist()},
        ]
    }
    return server.http.post("/v2/models/iris/infer", json=body, headers=headers or {})


def _feedback(server: RunningServer, rid: str) -> httpx.Response:
    body = {"request_ids": [rid], "labels": [0]}
    return server.http.post("/v2/models/iris/feedback", json=body)


def _guesses(own: str) -> set[str]:
    """What an attacker tries from its own id: neighbouring counters, or one changed char."""
    prefix, _, tail = own.rpartition("-")
    guesses = set()
    try:
        counter = int(tail, 16)
    except ValueError:
        counter = -1
    if prefix and counter >= 0:
        guesses |= {f"{prefix}-{n:x}" for n in range(max(1, counter - 60), counter + 60)}
    guesses |= {own[:-1] + c for c in sorted(_URLSAFE)}
    guesses.discard(own)
    return guesses


# -- issue 10 #4: generated ids carry at least 96 random bits ---------------------------------


def test_feedback_cannot_be_aimed_at_other_clients_predictions(iris_server: RunningServer) -> None:
    victims = [_predict(iris_server) for _ in range(30)]
    assert all(r.status_code == 200 for r in victims)
    own = _predict(iris_server).headers["x-request-id"]
    hits = [g for g in sorted(_guesses(own)) if _feedback(iris_server, g).status_code == 200]
    assert hits == []
    # The victims' own ids still take their feedback.
    assert _feedback(iris_server, victims[0].headers["x-request-id"]).status_code == 200


def test_generated_ids_are_random_not_counted(iris_server: RunningServer) -> None:
    ids = [_predict(iris_server).headers["x-request-id"] for _ in range(20)]
    assert len(set(ids)) == len(ids)
    tags = set()
    for rid in ids:
        # A per-process tag, then 16 random bytes in URL-safe base64: 22 characters, 128 bits.
        tag, _, secret = rid.partition("-")
        tags.add(tag)
        assert len(secret) == 22 and set(secret) <= _URLSAFE
    assert len(tags) == 1  # one server process answered them all
    randoms = [rid.partition("-")[2] for rid in ids]
    for a, b in itertools.pairwise(randoms):
        shared = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
        assert shared < 6, (a, b)  # no common stem the way "prefix-counter" ids have
    doc = _predict(iris_server).json()
    assert doc["id"].partition("-")[0] in tags


def test_client_supplied_ids_keep_working(iris_server: RunningServer) -> None:
    answer = _predict(iris_server, {"x-request-id": "order-17/A b"})
    assert answer.headers["x-request-id"] == "order-17/A b"
    assert answer.json()["id"] == "order-17/A b"
    assert _feedback(iris_server, "order-17/A b").json()["accepted"] == 1


# -- issue 10 #12: ids outside printable ASCII are refused, at predict and at feedback --------


@pytest.mark.parametrize("rid", ["café", "id-\u00e9", "日本", "tab\there"])
def test_an_id_outside_printable_ascii_is_a_400_at_predict_and_feedback(
    iris_server: RunningServer, rid: str
) -> None:
    answer = _predict(iris_server, {"x-request-id": rid.encode()})
    assert answer.status_code == 400, answer.text
    assert "printable ASCII" in answer.json()["error"]
    X, _ = iris()
    body = {
        "id": rid,
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": X[0].tolist()}],
    }
    answer = iris_server.http.post("/v2/models/iris/infer", json=body)
    assert answer.status_code == 400, answer.text
    assert "printable ASCII" in answer.json()["error"]
    refused = _feedback(iris_server, rid)
    assert refused.status_code == 400, refused.text
    assert "printable ASCII" in refused.json()["error"]


@pytest.mark.parametrize("rid", [" lead", "trail ", "x" * 129])
def test_ids_that_would_not_survive_a_header_are_a_400(
    iris_server: RunningServer, rid: str
) -> None:
    X, _ = iris()
    body = {
        "id": rid,
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": X[0].tolist()}],
    }
    answer = iris_server.http.post("/v2/models/iris/infer", json=body)
    assert answer.status_code == 400, answer.text


def test_v1_predict_refuses_a_non_ascii_id_too(iris_server: RunningServer) -> None:
    X, _ = iris()
    answer = iris_server.http.post(
        "/v1/models/iris:predict",
        json={"instances": [X[0].tolist()]},
        headers={"x-request-id": "café".encode()},
    )
    assert answer.status_code == 400, answer.text
    assert "printable ASCII" in answer.json()["error"]
