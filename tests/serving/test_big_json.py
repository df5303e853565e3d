"""Big JSON bodies: decoded off the event loop, in about their own size of memory.

Issue 10 item 7: two clients looping 32 MB JSON bodies stalled every other client (the
decode ran on the event loop) and took the server to 669 MB (Python lists of floats).
"""

from __future__ import annotations

import gzip
import threading
import time
import tracemalloc
from typing import Any

import httpx
import orjson
import pytest

from modelfleet.errors import InvalidInputError
from modelfleet.registry import Registry
from modelfleet.serving.protocol import decode_request
from modelfleet.serving.settings import ModelConfig
from tests.serving.conftest import RunningServer

SMALL = {"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}


def _body(values: list[Any], datatype: str = "FP32", shape: list[int] | None = None) -> bytes:
    given = [len(values) // 3, 3] if shape is None else shape
    doc = {"inputs": [{"name": "X", "shape": given, "datatype": datatype, "data": values}]}
    return orjson.dumps(doc)


@pytest.fixture
def adder(models: Registry, served: Any) -> RunningServer:
    return served(ModelConfig(ref="adder"))  # type: ignore[no-any-return]


def test_small_requests_are_answered_while_a_big_body_is_decoded(adder: RunningServer) -> None:
    # ~30 MB of JSON, gzipped to a few kB so it arrives at once: what follows its sending is
    # the server decoding it (then refusing its 1.2 M rows), nothing else.
    raw = _body([12.375, 250.5, 3.0625] * 1_200_000)
    big = gzip.compress(raw, 9)
    answered: list[float] = []
    stop = threading.Event()

    def small_client() -> None:
        with httpx.Client(base_url=adder.url, timeout=60) as http:
            while not stop.is_set():
                assert http.post("/v2/models/adder/infer", json=SMALL).status_code == 200
                answered.append(time.monotonic())

    thread = threading.Thread(target=small_client)
    thread.start()
    try:
        while not answered:  # the small client is up and answered
            time.sleep(0.01)
        with httpx.Client(base_url=adder.url, timeout=60) as http:
            sent = time.monotonic()
            reply = http.post(
                "/v2/models/adder/infer", content=big, headers={"content-encoding": "gzip"}
            )
            done = time.monotonic()
    finally:
        stop.set()
        thread.join(timeout=60)
    assert reply.status_code == 400 and "rows" in reply.json()["error"]
    during = [t for t in answered if sent < t < done]
    # On the event loop the decode answered at most the one small request already in flight.
    assert len(during) >= 5, f"{len(during)} small requests answered during the big decode"


def test_a_big_body_decodes_in_about_its_own_size_of_memory() -> None:
    body = _body([12.375, 250.5, 3.0625] * 300_000)  # ~7 MB of JSON, 3.6 MB as FP32
    tracemalloc.start()
    try:
        request = decode_request(body, None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert request.inputs["X"].shape == (300_000, 3)
    assert request.inputs["X"][-1].tolist() == [12.375, 250.5, 3.0625]
    # As Python floats in lists this took about 15 times the body.
    assert peak < 2 * len(body), f"peak {peak / 2**20:.0f} MB for a {len(body) / 2**20:.0f} MB body"


N = 400_000  # values: a body over the size where the lean decoder takes over


@pytest.mark.parametrize(
    ("values", "datatype", "error"),
    [
        ([1] * (N - 1) + [None], "FP32", "data does not hold FP32 values"),
        ([1] * (N - 1) + [2.5], "INT32", "data does not hold INT32 values"),
        ([1] * (N - 1) + [2**40], "INT32", "data does not hold INT32 values"),
        ([True] * N, "FP32", "data does not hold FP32 values"),
        ([1] * (N - 1) + ["1"], "FP32", "data does not hold FP32 values"),
        ([1] * N, "BOOL", "data does not hold BOOL values"),
        ([1] * N, "BYTES", "data does not hold BYTES values"),
    ],
)
def test_big_bodies_are_refused_like_small_ones(
    values: list[Any], datatype: str, error: str
) -> None:
    for body in (_body(values, datatype, [N]), _body(values[-3:], datatype, [3])):
        with pytest.raises(InvalidInputError) as caught:
            decode_request(body, None)
        assert error in str(caught.value)


@pytest.mark.parametrize("shape", [[N + 3], [N - 3], [10**12], [N // 2, 3]])
def test_big_bodies_whose_shape_does_not_fit_are_refused(shape: list[int]) -> None:
    with pytest.raises(InvalidInputError) as caught:
        decode_request(_body([1.5] * N, "FP32", shape), None)
    count = 1
    for dim in shape:
        count *= dim
    assert f"shape {shape} needs {count} values, got {N}" in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        b"1,2,,3",  # an empty element
        b"1,2,3,",  # a trailing comma
        b"1,2,3e",  # a broken number
        b"1,2,0x3",  # not JSON numbers
        b"1, 2 ,- 3",
    ],
)
def test_big_bodies_with_broken_json_numbers_are_not_valid_json(text: bytes) -> None:
    data = b"1.5," * 300_000 + text
    body = b'{"inputs":[{"name":"X","shape":[1],"datatype":"FP32","data":[' + data + b"]}]}"
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        decode_request(body, None)


def test_a_big_array_that_is_not_an_inputs_data_stays_what_it_is() -> None:
    # A "data" key elsewhere (a parameter, an escaped name) is not an input's data.
    array = b"[" + b"1.5," * 300_000 + b"2]"
    body = (
        b'{"parameters":{"data":' + array + b'},"inputs":[{"name":"X","shape":[3],'
        b'"datatype":"FP32","data":[1,2,3],"parameters":{"x\\"data":' + array + b"}}]}"
    )
    request = decode_request(body, None)
    assert request.inputs["X"].tolist() == [1, 2, 3]
    assert len(request.parameters["data"]) == 300_001


def test_a_big_valid_body_is_answered_in_full(adder: RunningServer) -> None:
    rows = 90_000  # under the row limit, ~2.5 MB of JSON: the lean decoder reads it
    values = [float(i % 1000) / 8 for i in range(rows * 3)]
    reply = adder.http.post("/v2/models/adder/infer", content=_body(values))
    assert reply.status_code == 200, reply.text
    (output,) = reply.json()["outputs"]
    assert output["shape"] == [rows, 1]
    expected = [sum(values[3 * i : 3 * i + 3]) for i in range(rows)]
    assert output["data"] == expected
