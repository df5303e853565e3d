"""The V2 codec without a server: every datatype both ways, nested data, BYTES, header length."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest

from modelfleet.errors import InvalidInputError
from modelfleet.serving.protocol import (
    decode_request,
    decode_response,
    decode_v1,
    encode_request,
    encode_response,
    encode_v1,
)
from modelfleet.signature import Signature, TensorSpec
from tests.models import ALL_DTYPES


def _sample(dtype: str) -> np.ndarray[Any, Any]:
    """A 2x3 array of ``dtype`` holding its extreme values where it has them."""
    if dtype == "string":
        return np.array([["a", "β", ""], ["long text", "∑", "z"]], dtype=object)
    if dtype == "bool":
        return np.array([[True, False, True], [False, False, True]])
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return np.array([[info.min, info.max, 0], [1, info.max - 1, 7]], dtype=dtype)
    info_f = np.finfo(dtype)
    return np.array([[info_f.min, info_f.max, 0.5], [-1.25, info_f.tiny, 3.0]], dtype=dtype)


def _doc(body: bytes, header_length: int | None) -> dict[str, Any]:
    head = body[:header_length] if header_length is not None else body
    doc: dict[str, Any] = orjson.loads(head)
    return doc


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_every_datatype_survives_a_request_round_trip(dtype: str, binary: bool) -> None:
    array = _sample(dtype)
    body, header_length = encode_request(
        {"x": array}, binary=binary, request_id="r-1", parameters={"priority": 2}
    )
    assert (header_length is not None) is binary
    request = decode_request(body, header_length)
    got = request.inputs["x"]
    assert got.shape == (2, 3)
    assert got.dtype == array.dtype
    np.testing.assert_array_equal(got, array)
    assert request.id == "r-1"
    assert request.parameters["priority"] == 2
    assert request.binary_output is binary


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_every_datatype_survives_a_response_round_trip(binary: bool) -> None:
    outputs = {f"y_{d}": _sample(d) for d in ALL_DTYPES}
    body, header_length = encode_response(
        model="echo",
        version="4",
        request_id="abc",
        outputs=outputs,
        binary={name: binary for name in outputs},
        parameters={"note": "x"},
    )
    doc, arrays = decode_response(body, header_length)
    assert (doc["model_name"], doc["model_version"], doc["id"]) == ("echo", "4", "abc")
    assert doc["parameters"] == {"note": "x"}
    assert list(arrays) == list(outputs)  # order kept, so binary offsets line up
    for name, array in outputs.items():
        np.testing.assert_array_equal(arrays[name], array)
        assert arrays[name].dtype == array.dtype


def test_binary_header_length_is_exactly_the_json_header() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    s = np.array(["ab", "cde"], dtype=object)
    body, header_length = encode_request({"x": x, "s": s}, binary=True, outputs=["y"])
    assert header_length is not None
    doc = _doc(body, header_length)
    sizes = [i["parameters"]["binary_data_size"] for i in doc["inputs"]]
    assert sizes == [24, 4 + 2 + 4 + 3]  # BYTES: a little-endian uint32 length per element
    assert header_length + sum(sizes) == len(body)
    assert body[header_length : header_length + 24] == x.astype("<f4").tobytes()
    assert (
        body[header_length + 24 :] == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 3) + b"cde"
    )
    assert doc["parameters"] == {"binary_data_output": True}
    assert doc["outputs"] == [{"name": "y", "parameters": {"binary_data": True}}]


def test_big_endian_inputs_are_sent_little_endian() -> None:
    big = np.array([[1.5, -2.0]], dtype=">f8")
    body, header_length = encode_request({"x": big}, binary=True)
    assert header_length is not None
    assert body[header_length:] == np.array([[1.5, -2.0]], dtype="<f8").tobytes()
    np.testing.assert_array_equal(decode_request(body, header_length).inputs["x"], big)


def test_nested_and_flat_json_data_decode_to_the_same_array() -> None:
    def decode(data: Any) -> np.ndarray[Any, Any]:
        doc = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "INT16", "data": data}]}
        return decode_request(orjson.dumps(doc), None).inputs["x"]

    flat, nested = decode([1, 2, 3, 4]), decode([[1, 2], [3, 4]])
    np.testing.assert_array_equal(flat, nested)
    assert flat.dtype == np.int16 and flat.tolist() == [[1, 2], [3, 4]]


def test_empty_and_scalar_tensors() -> None:
    for binary in (False, True):
        inputs = {
            "rows": np.zeros((0, 3), np.float32),
            "text": np.zeros((0, 2), dtype=object),
            "one": np.array(7, dtype=np.int64),
        }
        body, header_length = encode_request(inputs, binary=binary)
        decoded = decode_request(body, header_length).inputs
        assert {k: v.shape for k, v in decoded.items()} == {
            "rows": (0, 3),
            "text": (0, 2),
            "one": (),
        }
        assert decoded["one"].item() == 7


def test_requested_outputs_follow_the_request_default_unless_overridden() -> None:
    doc = {
        "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
        "parameters": {"binary_data_output": True},
        "outputs": [{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}}],
    }
    request = decode_request(orjson.dumps(doc), None)
    assert request.outputs == [("a", True), ("b", False)]
    assert decode_request(orjson.dumps({"inputs": doc["inputs"]}), None).outputs is None


def _one(**entry: Any) -> bytes:
    base = {"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}
    return orjson.dumps({"inputs": [{**base, **entry}]})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xfe", "not valid JSON"),
        (b'"text"', "JSON object with 'inputs'"),
        (b'{"inputs": {}}', "no 'inputs' list"),
        (b'{"inputs": [5]}', "an object with name, shape and datatype"),
        (_one(name=None), "has no 'name'"),
        (_one(shape=[1, -2]), "list of non-negative integers"),
        (_one(shape="1,2"), "list of non-negative integers"),
        (_one(datatype="FLOAT"), "unknown datatype 'FLOAT'; use one of BOOL, UINT8"),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}', "neither 'data'"),
        (_one(data=[1, 2, 3]), r"shape [1, 2] needs 2 values, got 3"),
        (_one(data=[[1, 2], [3]]), "data does not hold FP32 values"),
        (_one(datatype="UINT8", data=[1, 256]), "does not hold UINT8 values"),
        (_one(datatype="INT8", data=[-129, 0]), "does not hold INT8 values"),
        (_one(datatype="BOOL", data=[1, 0]), "does not hold BOOL values"),
        (_one(datatype="BYTES", data=["a", 2]), "does not hold BYTES values"),
        (_one(parameters=[1]), "input 'x' 'parameters' must be an object"),
        (
            orjson.dumps({"inputs": [orjson.loads(_one())["inputs"][0]] * 2}),
            "input 'x' is given twice",
        ),
        (
            orjson.dumps({"inputs": orjson.loads(_one())["inputs"], "parameters": "fast"}),
            "request 'parameters' must be an object",
        ),
        (
            orjson.dumps({"inputs": orjson.loads(_one())["inputs"], "outputs": "y"}),
            "'outputs' must be a list",
        ),
        (
            orjson.dumps({"inputs": orjson.loads(_one())["inputs"], "outputs": [{"id": 1}]}),
            "each requested output needs a 'name'",
        ),
    ],
)
def test_malformed_json_requests_say_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        decode_request(body, None)
    assert message in str(info.value)


def _binary(declared: int, payload: bytes, datatype: str = "FP32") -> tuple[bytes, int]:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, 2],
                    "datatype": datatype,
                    "parameters": {"binary_data_size": declared},
                }
            ]
        }
    )
    return header + payload, len(header)


def _strings(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(i)) + i for i in items)


@pytest.mark.parametrize(
    ("declared", "payload", "datatype", "message"),
    [
        (8, b"\0" * 4, "FP32", "invalid binary_data_size 8"),
        (-1, b"", "FP32", "invalid binary_data_size -1"),
        (4, b"\0" * 4, "FP32", "needs 8 bytes, got 4"),
        (8, b"\0" * 12, "FP32", "binary data has 12 bytes but inputs declare 8"),
        (3, b"\x05\0\0", "BYTES", "truncated BYTES element length"),
        (6, struct.pack("<I", 9) + b"ab", "BYTES", "truncated BYTES element"),
        (5, _strings(b"a"), "BYTES", "shape needs 2 strings, got 1"),
    ],
)
def test_malformed_binary_requests_say_what_is_wrong(
    declared: int, payload: bytes, datatype: str, message: str
) -> None:
    body, header_length = _binary(declared, payload, datatype)
    with pytest.raises(InvalidInputError, match=message.replace("[", r"\[")):
        decode_request(body, header_length)


@pytest.mark.parametrize("header_length", [-1, 10_000])
def test_a_header_length_outside_the_body_is_refused(header_length: int) -> None:
    body, _ = _binary(8, b"\0" * 8)
    with pytest.raises(InvalidInputError, match=f"{header_length} exceeds the body"):
        decode_request(body, header_length)


def test_a_header_length_that_cuts_the_json_is_refused() -> None:
    body, header_length = _binary(8, b"\0" * 8)
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        decode_request(body, header_length - 1)


def test_v1_rows_records_and_their_errors() -> None:
    signature = Signature(
        inputs=(
            TensorSpec(name="age", dtype="float32", shape=(None, 1)),
            TensorSpec(name="city", dtype="string", shape=(None, 1)),
        ),
        outputs=(TensorSpec(name="label", dtype="int64", shape=(None,)),),
    )
    columns = decode_v1(
        b'{"instances": [{"age": 31, "city": "Oslo"}, {"age": 5, "city": "Rome"}]}', signature
    )
    assert columns["age"].tolist() == [[31], [5]]  # one scalar per row becomes a column
    assert columns["city"].tolist() == [["Oslo"], ["Rome"]]
    rows = decode_v1(b'{"instances": [[1, 2], [3, 4]]}', signature)
    assert rows.tolist() == [[1, 2], [3, 4]]
    with pytest.raises(InvalidInputError, match=r"instances lack inputs \['city'\]"):
        decode_v1(b'{"instances": [{"age": 1}]}', signature)
    with pytest.raises(InvalidInputError, match="non-empty 'instances' list"):
        decode_v1(b'{"inputs": [[1]]}', signature)
    encoded = orjson.loads(
        encode_v1(
            {
                "label": np.array([2, 0]),
                "probabilities": np.array([[0.1, 0.9], [1.0, 0.0]]),
                "other": np.array([1, 1]),
            },
            signature,
        )
    )
    assert encoded == {"predictions": [2, 0], "probabilities": [[0.1, 0.9], [1.0, 0.0]]}
