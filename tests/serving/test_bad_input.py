"""Bad input to the inference routes: every malformed request gets a 400 ``{"error"}``.

Issue 10 items 9 and 11 and the gzip defects: shapes numpy cannot build, ids that are not
strings or hold control characters, data that does not hold the declared datatype, headers
that are not numbers, compressed bodies that are cut short, and the pipelined requests
behind an inference request while the server drains.
"""

from __future__ import annotations

import gzip
import json
import signal
import socket
import time
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelfleet.registry import Registry
from modelfleet.serving.settings import ModelConfig
from tests.serving.conftest import RunningServer
from tests.serving.test_hostile_http import INFER, exchange, responses, serving


def _x(values: list[Any], shape: list[Any] | None = None) -> dict[str, Any]:
    given = [1, len(values)] if shape is None else shape
    return {"inputs": [{"name": "X", "shape": given, "datatype": "FP32", "data": values}]}


@pytest.fixture
def adder(models: Registry, served: Any) -> RunningServer:
    return served(ModelConfig(ref="adder"))  # type: ignore[no-any-return]


def _refused(answer: httpx.Response) -> str:
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/json"
    return str(answer.json()["error"])


# -- issue 10 #9: shapes and ids that used to get a 500 or a dropped connection --------------


@pytest.mark.parametrize(
    ("shape", "data"),
    [
        ([True, 3], [1, 2, 3]),
        ([1, False], []),
        ([2**62, 0], []),
        ([2**63, 0], []),
        ([2**64, 0], []),
        ([1] * 70 + [3], [1, 2, 3]),
        ([1] * 33 + [3], [1, 2, 3]),
    ],
    ids=["true", "false", "2**62", "2**63", "2**64", "70-dims", "34-dims"],
)
def test_impossible_shapes_are_a_400(
    adder: RunningServer, shape: list[Any], data: list[Any]
) -> None:
    answer = adder.http.post("/v2/models/adder/infer", json=_x(data, shape))
    assert "shape" in _refused(answer)


def test_binary_input_with_a_huge_shape_is_a_400(adder: RunningServer) -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "X",
                    "shape": [2**62, 0],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 0},
                }
            ]
        }
    ).encode()
    answer = adder.http.post(
        "/v2/models/adder/infer",
        content=header,
        headers={"inference-header-content-length": str(len(header))},
    )
    assert "shape" in _refused(answer)


@pytest.mark.parametrize("given", [{"a": 1}, 17, 1.5, True, ["a"]])
def test_a_v2_id_that_is_not_a_string_is_a_400(adder: RunningServer, given: Any) -> None:
    answer = adder.http.post("/v2/models/adder/infer", json={**_x([1, 2, 3]), "id": given})
    assert "'id'" in _refused(answer)


@pytest.mark.parametrize("char", ["\r", "\n", "\x00", "\x7f", "\r\nX-Evil: 1"])
def test_an_id_with_control_characters_is_a_400_and_keeps_the_connection(
    adder: RunningServer, char: str
) -> None:
    bad = json.dumps({**_x([1, 2, 3]), "id": f"a{char}b"}).encode()
    request = (
        b"POST /v2/models/adder/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(bad), bad)
    )
    closing = b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    port = int(adder.url.rsplit(":", 1)[1])
    answers = responses(exchange(port, INFER + request + INFER + closing))
    assert [status for status, _, _ in answers] == [200, 400, 200, 200]
    assert "printable ASCII" in json.loads(answers[1][2])["error"]
    assert all(b"x-evil" not in str(h).encode().lower() for _, h, _ in answers)


# -- issue 10 #11: data that does not hold its datatype, and X-Timeout-Ms ---------------------


_ECHO = {
    "bool": ("BOOL", [True, False]),
    "int8": ("INT8", [1, 2]),
    "int16": ("INT16", [1, 2]),
    "int32": ("INT32", [1, 2]),
    "int64": ("INT64", [1, 2]),
    "uint8": ("UINT8", [1, 2]),
    "uint16": ("UINT16", [1, 2]),
    "uint32": ("UINT32", [1, 2]),
    "uint64": ("UINT64", [1, 2]),
    "float16": ("FP16", [1, 2]),
    "float32": ("FP32", [1, 2]),
    "float64": ("FP64", [1, 2]),
    "string": ("BYTES", ["a", "b"]),
}


def _echo(name: str, datatype: str, data: list[Any]) -> dict[str, Any]:
    """A request for the echo model (one input per datatype) with ``name`` holding ``data``."""
    inputs = [
        {"name": f"x_{n}", "shape": [1, 2], "datatype": dt, "data": d}
        for n, (dt, d) in _ECHO.items()
        if f"x_{n}" != name
    ]
    inputs.append({"name": name, "shape": [1, 2], "datatype": datatype, "data": data})
    return {"inputs": inputs}


@pytest.mark.parametrize(
    ("name", "datatype", "data"),
    [
        ("x_int64", "INT64", [2.7, 1]),
        ("x_int32", "INT32", [1.5, 2]),
        ("x_uint8", "UINT8", [300, 1]),
        ("x_uint8", "UINT8", [-1, 1]),
        ("x_int64", "INT64", [True, False]),
        ("x_int64", "INT64", ["1", "2"]),
        ("x_float32", "FP32", ["1.5", "2"]),
        ("x_float32", "FP32", [None, 1.0]),
        ("x_float64", "FP64", [None, None]),
        ("x_bool", "BOOL", [1, 0]),
        ("x_float32", "FP32", [[1.0], 2.0]),
    ],
)
def test_data_that_does_not_hold_its_datatype_is_a_400(
    models: Registry, served: Any, name: str, datatype: str, data: list[Any]
) -> None:
    server = served(ModelConfig(ref="echo"))
    answer = server.http.post("/v2/models/echo/infer", json=_echo(name, datatype, data))
    assert datatype in _refused(answer)


def test_fitting_data_still_passes(models: Registry, served: Any) -> None:
    server = served(ModelConfig(ref="echo"))
    cases = [
        ("x_int64", "INT64", [2, -(2**63)]),
        ("x_uint64", "UINT64", [2**64 - 1, 0]),
        ("x_float32", "FP32", [1, 2.5]),
        ("x_float16", "FP16", [1, 0.5]),
        ("x_uint8", "UINT8", [255, 0]),
        ("x_bool", "BOOL", [True, False]),
    ]
    for name, datatype, data in cases:
        answer = server.http.post("/v2/models/echo/infer", json=_echo(name, datatype, data))
        assert answer.status_code == 200, answer.text
        [output] = [o for o in answer.json()["outputs"] if o["name"] == "y" + name[1:]]
        assert output["data"] == data


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e400"])
def test_a_timeout_header_that_is_not_a_finite_number_is_a_400(
    adder: RunningServer, value: str
) -> None:
    answer = adder.http.post(
        "/v2/models/adder/infer", json=_x([1, 2, 3]), headers={"x-timeout-ms": value}
    )
    assert "X-Timeout-Ms" in _refused(answer)


# -- compressed bodies -------------------------------------------------------------------------


def test_multi_member_gzip_body_is_read_whole(adder: RunningServer) -> None:
    raw = json.dumps(_x([1, 2, 3])).encode()
    body = gzip.compress(raw[:20]) + gzip.compress(raw[20:30]) + gzip.compress(raw[30:])
    answer = adder.http.post(
        "/v2/models/adder/infer", content=body, headers={"content-encoding": "gzip"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == [6.0]


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(json.dumps(_x([1, 2, 3])).encode())[:-12]),
        ("gzip", gzip.compress(json.dumps(_x([1, 2, 3])).encode())[:-1]),
        ("gzip", gzip.compress(json.dumps(_x([1, 2, 3])).encode()) + b"garbage"),
        ("deflate", zlib.compress(json.dumps(_x([1, 2, 3])).encode())[:-6]),
        ("deflate", zlib.compress(json.dumps(_x([1, 2, 3])).encode()) + b"x"),
    ],
    ids=["gzip-cut", "gzip-cut-1", "gzip-trailing", "deflate-cut", "deflate-trailing"],
)
def test_a_cut_or_padded_compressed_body_is_a_400(
    adder: RunningServer, encoding: str, body: bytes
) -> None:
    answer = adder.http.post(
        "/v2/models/adder/infer", content=body, headers={"content-encoding": encoding}
    )
    assert f"not valid {encoding}" in _refused(answer)


# -- pipelined requests behind an inference request while draining -----------------------------


def test_while_draining_pipelined_inference_requests_are_all_answered(tmp_path: Path) -> None:
    with serving(tmp_path, "{lame_duck_s: 3}") as (proc, port):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as kept:
            kept.sendall(INFER)
            assert kept.recv(65536).startswith(b"HTTP/1.1 200")
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 5
            while httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code != 503:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            kept.sendall(INFER * 3)
            raw = b""
            while chunk := kept.recv(65536):
                raw += chunk
        assert proc.wait(timeout=30) == 0
    answers = responses(raw)
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert [h.get("connection") for _, h, _ in answers] == [None, None, "close"]
