"""Hostile input against a real ``modelfleet serve``: every malformed request gets a JSON 4xx.

The corpus is generated (wrong types in every field, absurd shapes, lying lengths, truncated
binary tensors, unknown models, bad methods); each request must get a 4xx with a JSON
``{"error"}`` body, never a 5xx or a closed connection, and the server keeps answering.
"""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.serving.adversary import (
    GARBAGE,
    LABELS,
    ROW,
    answers,
    binary,
    raw,
    serving,
    v2,
)


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """One server for the corpus and the slow clients, with short read deadlines."""
    with serving(
        tmp_path_factory.mktemp("adversarial"), "{header_timeout_s: 2, body_timeout_s: 2}"
    ) as proc:
        yield proc.port  # type: ignore[attr-defined]


INFER = "/v2/models/adder/infer"


def _wrong_types() -> dict[str, bytes]:
    """Every garbage value in every field a V2 or v1 request has, and as the whole document."""
    cases = {}
    # Values a well-formed request may hold there: parameters are any object.
    valid: dict[str, list[Any]] = {
        "parameters": [None, {}, {"a": [{}]}],
        "outputs": [None, []],
        "id": [None, "", "x"],
    }
    for key in ("name", "shape", "datatype", "data", "parameters"):
        for i, g in enumerate(GARBAGE):
            if g not in valid.get(key, []):
                cases[f"input-{key}-{i}"] = v2({"inputs": [{**ROW, key: g}]})
    for key in ("inputs", "parameters", "outputs", "id"):
        for i, g in enumerate(GARBAGE):
            if g not in valid.get(key, []):
                cases[f"request-{key}-{i}"] = v2({"inputs": [ROW], key: g})
    for i, g in enumerate(GARBAGE):
        cases[f"document-{i}"] = v2(g)
        v1 = json.dumps({"instances": g}).encode()
        cases[f"v1-instances-{i}"] = raw("POST", "/v1/models/adder:predict", v1)
    return cases


def _absurd_values() -> dict[str, bytes]:
    """Shapes, data and ids that are the right type but cannot be meant."""
    cases = {}
    shapes: dict[str, list[Any]] = {
        **{"bool": [True, 3], "ndim-70": [1] * 70, "2**62": [2**62, 0], "2**63": [2**63, 0]},
        **{"2**64": [2**64, 0], "negative": [-1, 3], "float": [1.0, 3], "string": ["1", 3]},
        **{"huge-product": [10**9, 10**9], "wrong-count": [2, 3]},
    }
    for label, shape in shapes.items():
        values = [] if 0 in shape else [1, 2, 3]
        cases[f"shape-{label}"] = v2({"inputs": [{**ROW, "shape": shape, "data": values}]})
    data: dict[str, list[Any]] = {"null": [None, 2, 3], "nested": [[[[1]]], 2, 3]}
    for label, values in {**data, "ragged": [[1, 2], [3]], "strings": ["a", "b", "c"]}.items():
        cases[f"data-{label}"] = v2({"inputs": [{**ROW, "data": values}]})
    ints: dict[str, list[Any]] = {"fraction": [1.5, 2], "null": [None, 1], "2**64": [2**64, 1]}
    for label, values in ints.items():
        cases[f"int-{label}"] = v2({"inputs": [{**LABELS, "data": values}]}, model="labels")
    ids = {"int": 7, "float": 1.5, "bool": True, "object": {"a": 1}, "list": [1]}
    for label, rid in {**ids, "CR": "a\rb", "LF": "a\nb", "NUL": "a\0b", "DEL": "a\x7fb"}.items():
        cases[f"id-{label}"] = v2({"id": rid, "inputs": [ROW]})
    huge = b'{"inputs":[{"name":"X","shape":[1,3],"datatype":"FP32","data":[1e400,%s,3]}]}'
    cases["number-10**400"] = raw("POST", INFER, huge % (b"1" * 400))
    cases["deep-nesting"] = raw("POST", INFER, b"[" * 100_000 + b"]" * 100_000)
    cases["not-json"] = raw("POST", INFER, b"\xff\xfe{not json")
    return cases


def _encodings_and_lengths() -> dict[str, bytes]:
    """Wrong content types and encodings, truncated binary tensors, lying lengths."""
    good = json.dumps({"inputs": [ROW]}).encode()
    cases = {
        "type-form": raw(
            "POST", INFER, b"a=1&b=2", Content_Type="application/x-www-form-urlencoded"
        ),
        "type-xml": raw(
            "POST", INFER, b"<inputs><X>1</X></inputs>", Content_Type="application/xml"
        ),
        "type-multipart": raw(
            "POST", INFER, b"--b\r\n\r\n1\r\n--b--", Content_Type="multipart/form-data; boundary=b"
        ),
        "gzip-garbage": raw("POST", INFER, b"\x1f\x8b" + good, Content_Encoding="gzip"),
        "gzip-two-members": raw(
            "POST", INFER, gzip.compress(good) + gzip.compress(b"{}"), Content_Encoding="gzip"
        ),
        "gzip-trailing-junk": raw(
            "POST", INFER, gzip.compress(good) + b"junk", Content_Encoding="gzip"
        ),
        "encoding-br": raw("POST", INFER, good, Content_Encoding="br"),
        "header-length-text": raw("POST", INFER, good, Inference_Header_Content_Length="ten"),
        "content-length-short": raw("POST", INFER, good, length=10),
        "content-length-long": raw("POST", INFER, good, length=len(good) + 100),
        "content-length-text": raw("POST", INFER, good, length="abc"),
        "content-length-negative": raw("POST", INFER, good, length=-1),
        "content-length-over-limit": raw("POST", INFER, good, length=1 << 40),
    }
    for label in ("nan", "-5", "soon", "inf"):
        cases[f"timeout-{label}"] = raw("POST", INFER, good, X_Timeout_Ms=label)
    sized = {"name": "X", "shape": [1, 3], "datatype": "FP32"}
    floats = struct.pack("<3f", 1, 2, 3)
    for label, size, payload, header_length in (
        ("truncated", 12, floats[:8], None),
        ("extra-bytes", 12, floats + b"\0\0\0\0", None),
        ("size-2**40", 2**40, floats, None),
        ("size-negative", -4, floats, None),
        ("size-text", "12", floats, None),
        ("header-length-past-body", 12, floats, 10**6),
        ("header-length-negative", 12, floats, -1),
    ):
        header = {"inputs": [{**sized, "parameters": {"binary_data_size": size}}]}
        cases[f"binary-{label}"] = binary(header, payload, header_length)
    return cases


def _routes() -> dict[str, bytes]:
    """Unknown models and versions, and methods no route takes."""
    good = json.dumps({"inputs": [ROW]}).encode()
    cases = {}
    for path in (
        *("/v2/models/nope/infer", "/v2/models/adder/versions/99/infer", "/v2/models/../infer"),
        *("/v1/models/nope:predict", "/v2/models/nope/versions/1/infer", "/v2/models/%00/infer"),
    ):
        cases[f"unknown-POST-{path}"] = raw("POST", path, good)
    for path in ("/v2/models/nope", "/v2/models/adder/versions/99", "/v2/models/nope/ready"):
        cases[f"unknown-GET-{path}"] = raw("GET", path)
    cases["unknown-GET-/v1/models/nope"] = raw("GET", "/v1/models/nope")
    for method, path in (
        *(("GET", INFER), ("DELETE", INFER), ("PUT", "/v2"), ("BREW", "/v2")),
        *(
            ("PATCH", "/v1/models/adder:predict"),
            ("POST", "/v2/health/live"),
            ("TRACE", "/metrics"),
        ),
    ):
        cases[f"method-{method}-{path}"] = raw(method, path, good if method != "GET" else b"")
    return cases


def corpus() -> dict[str, tuple[bytes, int]]:
    """Malformed requests by name, each with how many answers it must get."""
    cases = {**_wrong_types(), **_absurd_values(), **_encodings_and_lengths(), **_routes()}
    return {
        name: (data, 2 if name == "content-length-short" else 1) for name, data in cases.items()
    }


def test_every_malformed_request_gets_a_json_4xx_and_the_server_keeps_answering(port: int) -> None:
    cases = corpus()
    with ThreadPoolExecutor(8) as pool:
        results = dict(
            zip(cases, pool.map(lambda c: answers(port, *c), cases.values()), strict=True)
        )
    wrong = {}
    for name, got in results.items():
        if len(got) != cases[name][1]:
            wrong[name] = f"{len(got)} answers, connection closed"
        for status, headers, body in got:
            try:
                error = json.loads(body)["error"]
            except (ValueError, KeyError, TypeError):
                error = None
            if (
                not 400 <= status < 500
                or not isinstance(error, str)
                or "json" not in headers.get("content-type", "")
            ):
                wrong[name] = f"{status} {body[:120]!r}"
    assert not wrong, json.dumps(wrong, indent=1)
    assert len(cases) > 150
    [(status, _, body)] = answers(
        port, v2({"inputs": [{**ROW, "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}]})
    )
    assert (status, json.loads(body)["outputs"][0]["data"]) == (200, [6.0, 15.0])
    [(status, _, body)] = answers(
        port, v2({"inputs": [{**LABELS, "data": [2, 3]}]}, model="labels")
    )
    assert (status, json.loads(body)["outputs"][0]["data"]) == (200, [2, 3])
