"""What the HTTP layer reads off a request: the few headers it needs and a size-limited body."""

from __future__ import annotations

import zlib

from starlette.requests import Request
from starlette.types import Receive, Scope

from modelfleet.errors import InvalidInputError, PayloadTooLargeError
from modelfleet.serving.protocol import HEADER_LENGTH

_WANTED_HEADERS = frozenset(
    {
        b"x-request-id",
        b"content-length",
        b"content-encoding",
        b"authorization",
        b"cache-control",
        b"x-timeout-ms",
        HEADER_LENGTH.encode(),
    }
)


def scope_headers(scope: Scope) -> dict[str, str]:
    """The few request headers the inference path reads (ASGI names are lower case)."""
    return {
        k.decode("latin-1"): v.decode("latin-1")
        for k, v in scope["headers"]
        if k in _WANTED_HEADERS
    }


def request_headers(request: Request) -> dict[str, str]:
    """The same headers as :func:`scope_headers`, from a Starlette request."""
    return {k: v for k, v in request.headers.items() if k.encode() in _WANTED_HEADERS}


def int_header(value: str | None, name: str) -> int | None:
    """An integer header, or a clear 400."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidInputError(f"header {name} must be an integer, got {value!r}") from None


def timeout_header(value: str | None) -> float | None:
    """``X-Timeout-Ms`` in seconds, or a clear 400."""
    if value is None:
        return None
    try:
        ms = float(value)
    except ValueError:
        raise InvalidInputError(f"header X-Timeout-Ms must be a number, got {value!r}") from None
    if ms <= 0:
        raise InvalidInputError("header X-Timeout-Ms must be positive")
    return ms / 1000


async def read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    """The whole body, decompressed; 413 as soon as it (or what it inflates to) passes ``limit``."""
    declared = int_header(headers.get("content-length"), "Content-Length")
    if declared is not None and declared > limit:
        raise PayloadTooLargeError(limit)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidInputError("client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    encoding = headers.get("content-encoding")
    return _decompress(body, encoding, limit) if encoding else body


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    encoding = encoding.strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise InvalidInputError(
            f"unsupported Content-Encoding {encoding!r}", hint="use gzip, deflate or none"
        )
    wbits = 31 if encoding == "gzip" else 15
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInputError(f"body is not valid {encoding} data: {exc}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise PayloadTooLargeError(limit)
    return data
