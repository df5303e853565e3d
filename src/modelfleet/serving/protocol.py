"""Wire formats: the V2 / Open Inference Protocol (JSON and binary tensors) and KServe v1.

Binary tensor data follows Triton's extension: the JSON header is the first
``Inference-Header-Content-Length`` bytes of the body, inputs with a ``binary_data_size``
parameter take their bytes from what follows, in input order; BYTES elements are each a
little-endian uint32 length and the bytes. Outputs are binary when the output (or the
request, with ``binary_data_output``) asks for it.
"""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from modelfleet.errors import InvalidInputError
from modelfleet.serving.json_data import LEAN_MIN_BYTES, Spans, lift_data, typed
from modelfleet.signature import STRING, ArrayDict, Arrays, Signature

V2_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_SIGNATURE_TO_V2 = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    STRING: "BYTES",
}
HEADER_LENGTH = "inference-header-content-length"
MAX_DIMS = 32  # numpy allows 64; no model input comes near this
_ORJSON = orjson.OPT_SERIALIZE_NUMPY


def v2_datatype(dtype: str) -> str:
    """V2 datatype name of a signature dtype."""
    return _SIGNATURE_TO_V2[dtype]


_DTYPE_TO_V2 = {dtype: name for name, dtype in V2_TO_NUMPY.items()}


def dtype_of_array(array: np.ndarray[Any, Any]) -> str:
    """V2 datatype name of a numpy array."""
    name = _DTYPE_TO_V2.get(array.dtype)  # dtype objects hash fast; .name is slow Python
    if name is not None:
        return name
    if array.dtype.kind in ("O", "U", "S"):
        return "BYTES"
    return _SIGNATURE_TO_V2[array.dtype.newbyteorder("=").name]


@dataclass(slots=True)
class InferRequest:
    """A decoded V2 inference request."""

    inputs: ArrayDict
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[tuple[str, bool]] | None = None  # (name, binary)
    binary_output: bool = False


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(
            f"request body is not valid JSON: {exc}", hint="send a V2 inference request"
        ) from None


def decode_request(body: bytes, header_length: int | None) -> InferRequest:
    """Parse a V2 request, JSON or JSON header plus binary tensors.

    Big flat numeric ``data`` arrays are parsed in slices straight to numpy, so a 30 MB body
    costs about its size in memory rather than ten times that in Python floats, and a thread
    running this gives the GIL back between slices; anything unusual takes the general path.
    """
    if header_length is None and len(body) >= LEAN_MIN_BYTES:
        lifted = lift_data(body)
        if lifted is not None:
            with contextlib.suppress(Exception):  # unusual after all: the general path says why
                return _decode(lifted[0], None, Spans(body, lifted[1]))
    return _decode(body, header_length, None)


def _decode(body: bytes, header_length: int | None, spans: Spans | None) -> InferRequest:
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise InvalidInputError(
                f"Inference-Header-Content-Length {header_length} exceeds the body "
                f"({len(body)} bytes)"
            )
        header, binary = body[:header_length], memoryview(body)[header_length:]
    else:
        header, binary = body, memoryview(b"")
    doc = _loads(header)
    if not isinstance(doc, dict):
        raise InvalidInputError("request body must be a JSON object with 'inputs'")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInputError(
            "request has no 'inputs' list", hint='send {"inputs": [{"name", "shape", ...}]}'
        )
    parameters = _parameters(doc.get("parameters"), "request")
    inputs: ArrayDict = {}
    offset = 0
    for raw in raw_inputs:
        name, array, used = _decode_input(raw, binary, offset, spans)
        if name in inputs:
            raise InvalidInputError(f"input {name!r} is given twice")
        inputs[name] = array
        offset += used
    if offset != len(binary):
        raise InvalidInputError(
            f"binary data has {len(binary)} bytes but inputs declare {offset}",
            hint="check the binary_data_size parameters",
        )
    if spans is not None and spans.left:
        raise ValueError("a lifted data array is not an input's data")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInputError(
            f"request 'id' must be a string, got {type(request_id).__name__}",
            hint='send "id": "…" or leave it out and use the id the server returns',
        )
    return InferRequest(
        inputs=inputs,
        id=request_id,
        parameters=parameters,
        outputs=_requested_outputs(doc.get("outputs"), parameters),
        binary_output=bool(parameters.get("binary_data_output", False)),
    )


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"{where} 'parameters' must be an object")
    return value


def _decode_input(
    raw: Any, binary: memoryview, offset: int, spans: Spans | None = None
) -> tuple[str, Any, int]:
    if not isinstance(raw, dict):
        raise InvalidInputError("each input must be an object with name, shape and datatype")
    name, datatype = raw.get("name"), raw.get("datatype")
    if not isinstance(name, str):
        raise InvalidInputError("an input has no 'name'")
    shape = _shape(name, raw.get("shape"))
    dtype = V2_TO_NUMPY.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise InvalidInputError(
            f"input {name!r} has unknown datatype {datatype!r}",
            hint=f"use one of {', '.join(V2_TO_NUMPY)}",
        )
    params = _parameters(raw.get("parameters"), f"input {name!r}")
    size = params.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise InvalidInputError(f"input {name!r} has an invalid binary_data_size {size!r}")
        chunk = binary[offset : offset + size]
        return name, _from_binary(name, chunk, dtype, shape), size
    if "data" not in raw:
        raise InvalidInputError(f"input {name!r} has neither 'data' nor binary_data_size")
    data = raw["data"]
    if spans is not None and isinstance(data, str) and data in spans.left:
        array = spans.parse(data, dtype, math.prod(shape))
        return name, _reshape(name, array, shape), 0
    return name, _from_json(name, data, dtype, shape, str(datatype)), 0


def _shape(name: str, shape: Any) -> list[int]:
    # bool is an int subclass: JSON true would otherwise be a dimension of 1.
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise InvalidInputError(
            f"input {name!r} needs 'shape', a list of non-negative integers "
            f"(at most {MAX_DIMS} of them)"
        )
    return shape


def _reshape(name: str, array: np.ndarray[Any, Any], shape: list[int]) -> Any:
    try:
        return array.reshape(shape)
    except ValueError:  # a zero-size shape with a dimension numpy cannot index
        raise InvalidInputError(
            f"input {name!r}: shape {shape} is too large to build",
            hint="send the shape of the data you send",
        ) from None


def _from_json(name: str, data: Any, dtype: np.dtype[Any], shape: list[int], datatype: str) -> Any:
    try:
        if dtype.kind == "O":
            array = np.array(data, dtype=object)
            array = np.vectorize(_as_text, otypes=[object])(array) if array.size else array
        else:
            array = typed(data, dtype)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(
            f"input {name!r}: data does not hold {datatype} values",
            hint=f"send {datatype} values for {name!r}",
        ) from None
    return _check_count(name, array, shape)


def _check_count(name: str, array: np.ndarray[Any, Any], shape: list[int]) -> Any:
    count = math.prod(shape)
    if array.size != count:
        raise InvalidInputError(
            f"input {name!r}: shape {shape} needs {count} values, got {array.size}"
        )
    return _reshape(name, array, shape)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError("BYTES elements must be strings")


def _from_binary(name: str, chunk: memoryview, dtype: np.dtype[Any], shape: list[int]) -> Any:
    count = math.prod(shape)
    if dtype.kind == "O":
        return _reshape(
            name, np.array(_unpack_bytes(name, bytes(chunk), count), dtype=object), shape
        )
    if len(chunk) != count * dtype.itemsize:
        raise InvalidInputError(
            f"input {name!r}: shape {shape} of {dtype.name} needs "
            f"{count * dtype.itemsize} bytes, got {len(chunk)}"
        )
    return _reshape(name, np.frombuffer(chunk, dtype=dtype.newbyteorder("<")), shape)


def _unpack_bytes(name: str, raw: bytes, count: int) -> list[str]:
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInputError(f"input {name!r}: truncated BYTES element length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidInputError(f"input {name!r}: truncated BYTES element")
        items.append(raw[offset : offset + length].decode("utf-8", "replace"))
        offset += length
    if len(items) != count:
        raise InvalidInputError(f"input {name!r}: shape needs {count} strings, got {len(items)}")
    return items


def _requested_outputs(value: Any, parameters: Mapping[str, Any]) -> list[tuple[str, bool]] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidInputError("'outputs' must be a list of {name, parameters}")
    default = bool(parameters.get("binary_data_output", False))
    requested = []
    for raw in value:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise InvalidInputError("each requested output needs a 'name'")
        params = _parameters(raw.get("parameters"), f"output {raw['name']!r}")
        requested.append((raw["name"], bool(params.get("binary_data", default))))
    return requested


def _pack_bytes(array: np.ndarray[Any, Any]) -> bytes:
    parts = []
    for item in array.ravel():
        data = item if isinstance(item, bytes) else str(item).encode()
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def _json_data(array: np.ndarray[Any, Any]) -> Any:
    if array.dtype.kind in ("O", "U", "S"):
        return [v.decode() if isinstance(v, bytes) else str(v) for v in array.ravel()]
    return array.ravel()


def encode_response(
    *,
    model: str,
    version: str,
    request_id: str | None,
    outputs: Arrays,
    binary: Mapping[str, bool],
    parameters: Mapping[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """Encode a V2 response; returns the body and the JSON header length if binary."""
    described = []
    blobs = []
    for name, array in outputs.items():
        entry: dict[str, Any] = {
            "name": name,
            "datatype": dtype_of_array(array),
            "shape": list(array.shape),
        }
        if binary.get(name, False):
            blob = _pack_bytes(array) if entry["datatype"] == "BYTES" else _little(array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(array)
        described.append(entry)
    doc: dict[str, Any] = {"model_name": model, "model_version": version}
    if request_id is not None:
        doc["id"] = request_id
    if parameters:
        doc["parameters"] = dict(parameters)
    doc["outputs"] = described
    header = orjson.dumps(doc, option=_ORJSON)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def _little(array: np.ndarray[Any, Any]) -> bytes:
    data = np.ascontiguousarray(array)
    if data.dtype.byteorder == ">":
        data = data.astype(data.dtype.newbyteorder("<"))
    return data.tobytes()


def decode_v1(body: bytes, signature: Signature) -> Any:
    """KServe v1 / TF-Serving ``{"instances": [...]}``: rows (lists) or records (objects).

    Returns data for :func:`~modelfleet.signature.prepare_inputs`: a mapping of input names
    when the instances are records, otherwise a table of rows.
    """
    doc = _loads(body)
    instances = doc.get("instances") if isinstance(doc, dict) else None
    if not isinstance(instances, list) or not instances:
        raise InvalidInputError(
            "request needs a non-empty 'instances' list", hint='send {"instances": [[...], ...]}'
        )
    names = signature.input_names
    if all(isinstance(row, dict) for row in instances):
        missing = [n for n in names if any(n not in row for row in instances)]
        if missing:
            raise InvalidInputError(f"instances lack inputs {missing}", hint=f"inputs: {names}")
        columns = {n: _table([row[n] for row in instances]) for n in names}
        for spec in signature.inputs:
            if spec.shape == (None, 1) and columns[spec.name].ndim == 1:
                columns[spec.name] = columns[spec.name].reshape(-1, 1)  # one scalar per row
        return columns
    return _table(instances)


def _table(values: list[Any]) -> np.ndarray[Any, Any]:
    try:
        return np.asarray(values)
    except ValueError:  # ragged or mixed rows; the signature check explains what is wrong
        return np.asarray(values, dtype=object)


def encode_v1(outputs: Arrays, signature: Signature) -> bytes:
    """``{"predictions": [...]}`` plus ``probabilities`` when the model outputs them."""
    names = list(outputs)
    doc: dict[str, Any] = {"predictions": _plain(outputs[names[0]])}
    for name in names[1:]:
        if name in ("probabilities", "output_probability", "probability"):
            doc["probabilities"] = _plain(outputs[name])
    return orjson.dumps(doc, option=_ORJSON)


def _plain(array: np.ndarray[Any, Any]) -> Any:
    if array.dtype.kind in ("O", "U", "S"):
        return array.astype(str).tolist()
    return array


def describe_tensors(specs: Sequence[Any]) -> list[dict[str, Any]]:
    """V2 metadata entries (``-1`` marks a dynamic axis)."""
    return [
        {
            "name": s.name,
            "datatype": v2_datatype(s.dtype),
            "shape": [-1 if d is None else d for d in s.shape],
        }
        for s in specs
    ]


def encode_request(
    inputs: Arrays,
    *,
    binary: bool,
    outputs: Sequence[str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    request_id: str | None = None,
) -> tuple[bytes, int | None]:
    """Encode a V2 request (the client side); binary inputs ask for binary outputs too."""
    described, blobs = [], []
    for name, array in inputs.items():
        entry: dict[str, Any] = {
            "name": name,
            "datatype": dtype_of_array(array),
            "shape": list(array.shape),
        }
        if binary:
            blob = _pack_bytes(array) if entry["datatype"] == "BYTES" else _little(array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(array)
        described.append(entry)
    params = dict(parameters or {})
    if binary:
        params["binary_data_output"] = True
    doc: dict[str, Any] = {"inputs": described}
    if request_id is not None:
        doc["id"] = request_id
    if params:
        doc["parameters"] = params
    if outputs is not None:
        doc["outputs"] = [{"name": n, "parameters": {"binary_data": binary}} for n in outputs]
    header = orjson.dumps(doc, option=_ORJSON)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def decode_response(body: bytes, header_length: int | None) -> tuple[dict[str, Any], ArrayDict]:
    """Decode a V2 response (the client side): the JSON document and the output arrays."""
    header = body[:header_length] if header_length is not None else body
    binary = memoryview(body)[header_length:] if header_length is not None else memoryview(b"")
    doc = orjson.loads(header)
    outputs: ArrayDict = {}
    offset = 0
    for raw in doc.get("outputs", []):
        name, array, used = _decode_input(raw, binary, offset)
        outputs[name] = array
        offset += used
    return doc, outputs
