"""Numbers in V2 JSON: strict conversion to a tensor's dtype, and big arrays read lean.

A big body's flat numeric ``data`` arrays are cut out of the document before it is parsed and
read straight into numpy a slice at a time, so a 30 MB request costs about its own size in
memory and the GIL is free between slices for the other requests.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import numpy as np
import orjson

# The numpy kinds of JSON data each datatype's kind takes: numbers never take strings,
# booleans or nulls, and integers take floats only when they are whole (truncating 2.7 to 2
# changes a label).
_JSON_KINDS = {"b": "b", "i": "iuf", "u": "iuf", "f": "iuf"}


def typed(data: Any, dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """JSON ``data`` as ``dtype``, if it holds values of that type (else TypeError)."""
    raw = np.asarray(data)
    if raw.size == 0 or raw.dtype == dtype:
        return raw.astype(dtype, copy=False)
    if raw.dtype.kind not in _JSON_KINDS[dtype.kind]:
        raise TypeError(f"{raw.dtype.kind} data for {dtype.name}")
    if dtype.kind in "iu":
        if raw.dtype.kind == "f":
            # Fractions, or int64 and uint64 values together (numpy reads those as floats):
            # convert exactly, then refuse what does not compare equal.
            with np.errstate(invalid="ignore", over="ignore"):
                exact = np.asarray(data, dtype=dtype)
            if not np.array_equal(exact, raw):
                raise TypeError(f"fractional data for {dtype.name}")
            return exact
        info = np.iinfo(dtype)
        if int(raw.min()) < info.min or int(raw.max()) > info.max:
            raise OverflowError(f"out of the range of {dtype.name}")
    return raw.astype(dtype)


# Bodies from this size have their big flat numeric ``data`` arrays cut out of the JSON (the
# rest is parsed as usual) and read a slice at a time: orjson for each slice of numbers,
# numpy for the values. A random marker stands in for each array in the JSON, so only an
# input's ``data`` can take it; a marker left anywhere else, or a slice that is not plain
# numbers, sends the whole body down the general path, whose errors stay the only ones.
LEAN_MIN_BYTES = 1 << 20
_SLICE = 1 << 18
_DATA_KEY = re.compile(rb'"data"\s*:\s*\[')
_NUMBER_BYTES = b"0123456789+-.eE, \t\r\n"


def lift_data(body: bytes) -> tuple[bytes, dict[str, tuple[int, int]]] | None:
    """``body`` with each big ``"data": [numbers]`` replaced by a marker, and where each was."""
    nonce = secrets.token_hex(8)
    parts: list[bytes] = []
    spans: dict[str, tuple[int, int]] = {}
    copied = pos = 0
    while (found := body.find(b'"data"', pos)) >= 0:
        match = _DATA_KEY.match(body, found)
        pos = found + 6
        if match is None:
            continue
        start = match.end()
        end = body.find(b"]", start)
        if end < 0:
            return None
        pos = end + 1
        if end - start < LEAN_MIN_BYTES // 2:
            continue  # small arrays cost little the general way
        marker = f"{nonce}:{len(spans)}"
        parts += [body[copied : start - 1], b'"', marker.encode(), b'"']
        spans[marker] = (start, end)
        copied = end + 1
    if not spans:
        return None
    parts.append(body[copied:])
    return b"".join(parts), spans


class Spans:
    """The arrays cut out of a body, parsed when their input is decoded."""

    def __init__(self, body: bytes, spans: dict[str, tuple[int, int]]) -> None:
        self.body = body
        self.left = dict(spans)

    def parse(self, marker: str, dtype: np.dtype[Any], count: int) -> np.ndarray[Any, Any]:
        """The values of one array, ``count`` of them (anything else is ``ValueError``)."""
        start, end = self.left.pop(marker)
        if dtype.kind == "O":
            raise TypeError("BYTES data are strings")
        if count > (end - start + 1) // 2:  # each value takes a digit and a comma
            raise ValueError("more values than the text holds")
        array, filled = np.empty(count, dtype), 0
        while start < end:
            cut = self.body.find(b",", min(start + _SLICE, end), end)
            cut = end if cut < 0 else cut
            piece = self.body[start:cut]
            if piece.translate(None, _NUMBER_BYTES) or not piece.strip():
                raise ValueError("not a list of plain numbers")
            values = typed(orjson.loads(b"[" + piece + b"]"), dtype)
            if filled + values.size > count:
                raise ValueError("more values than the shape holds")
            array[filled : filled + values.size] = values
            filled += values.size
            start = cut + 1
        if filled != count:
            raise ValueError("fewer values than the shape holds")
        return array
