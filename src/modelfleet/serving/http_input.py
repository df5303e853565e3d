"""What the HTTP layer reads off a request: the few headers it needs, its id, a limited body."""

from __future__ import annotations

import math
import os
import secrets
import zlib
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.types import Receive, Scope

from modelfleet.errors import InvalidInputError, PayloadTooLargeError
from modelfleet.serving.live import check_request_id
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


def request_id(given: str | None) -> str:
    """The client's id (V2 ``id`` or ``X-Request-Id``), checked, or a new unguessable one."""
    if given is None or given == "":
        # 128 random bits: feedback needs the id, so ids must not be guessable. The prefix,
        # random per process, tells logs and operators which worker answered.
        return f"{_process_tag()}-{secrets.token_urlsafe(16)}"
    check_request_id(given)
    return given


_TAG: dict[int, str] = {}


def _process_tag() -> str:
    """Six hex digits drawn once per process (keyed by pid, so a forked worker draws its own)."""
    pid = os.getpid()
    if pid not in _TAG:
        _TAG.clear()
        _TAG[pid] = secrets.token_hex(3)
    return _TAG[pid]


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
    if not math.isfinite(ms) or ms <= 0:
        raise InvalidInputError(
            f"header X-Timeout-Ms must be positive and finite (milliseconds), got {value!r}"
        )
    return ms / 1000


Offload = Callable[[Callable[[], bytes]], Awaitable[bytes]]


async def read_body(
    receive: Receive, headers: dict[str, str], limit: int, offload: Offload | None = None
) -> bytes:
    """The whole body, decompressed; 413 as soon as it (or what it inflates to) passes ``limit``.

    ``offload`` runs the decompression off the event loop (zlib lets go of the GIL meanwhile).
    """
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
    if not encoding:
        return body
    if offload is None:
        return _decompress(body, encoding, limit)
    return await offload(lambda: _decompress(body, encoding, limit))


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    encoding = encoding.strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise InvalidInputError(
            f"unsupported Content-Encoding {encoding!r}", hint="use gzip, deflate or none"
        )
    # gzip allows several members one after another (RFC 1952 2.2); deflate is one stream.
    wbits = 31 if encoding == "gzip" else 15
    parts: list[bytes] = []
    size, rest = 0, body
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            data = inflater.decompress(rest, limit + 1 - size)
        except zlib.error as exc:
            raise InvalidInputError(f"body is not valid {encoding} data: {exc}") from None
        size += len(data)
        if size > limit or inflater.unconsumed_tail:
            raise PayloadTooLargeError(limit)
        parts.append(data)
        if not inflater.eof:
            raise InvalidInputError(
                f"body is not valid {encoding} data: it ends before the compressed stream does",
                hint="send the whole compressed body",
            )
        rest = inflater.unused_data
        if not rest:
            return parts[0] if len(parts) == 1 else b"".join(parts)
        if encoding != "gzip":
            raise InvalidInputError(
                f"body is not valid {encoding} data: {len(rest)} bytes follow the stream"
            )
