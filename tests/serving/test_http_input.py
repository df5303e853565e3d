"""Reading requests (headers, size limits, decompression) and answering failures over HTTP."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from typing import Any

import orjson
import pytest

from modelfleet.errors import (
    ConfigError,
    DeadlineExceededError,
    InvalidInputError,
    OverloadedError,
    PayloadTooLargeError,
    SignatureError,
    UnauthorizedError,
    UnknownModelError,
)
from modelfleet.serving.http_errors import error_reply, error_status
from modelfleet.serving.http_input import int_header, read_body, scope_headers, timeout_header


class Channel:
    """An ASGI receive channel that delivers ``chunks`` and counts how many were read."""

    def __init__(self, *chunks: bytes, disconnect: bool = False) -> None:
        self.messages: list[dict[str, Any]] = [
            {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1 or disconnect}
            for i, c in enumerate(chunks)
        ]
        if disconnect:
            self.messages.append({"type": "http.disconnect"})
        self.read = 0

    async def __call__(self) -> dict[str, Any]:
        self.read += 1
        return self.messages[self.read - 1]


def _read(channel: Channel, limit: int = 1000, **headers: str) -> bytes:
    named = {k.replace("_", "-"): v for k, v in headers.items()}
    return asyncio.run(read_body(channel, named, limit))


def test_a_chunked_body_is_joined() -> None:
    assert _read(Channel(b"ab", b"", b"cd", b"e")) == b"abcde"


def test_a_declared_oversize_body_is_refused_before_reading() -> None:
    channel = Channel(b"x" * 10)
    with pytest.raises(PayloadTooLargeError) as info:
        _read(channel, limit=5, content_length="10")
    assert channel.read == 0
    assert info.value.limit == 5
    assert str(info.value) == (
        "request body larger than 5 bytes; "
        "send fewer rows per request or raise server.max_body_bytes"
    )


def test_an_undeclared_oversize_body_stops_at_the_chunk_that_passes_the_limit() -> None:
    channel = Channel(b"x" * 400, b"x" * 400, b"x" * 400, b"x" * 400)
    with pytest.raises(PayloadTooLargeError):
        _read(channel)
    assert channel.read == 3
    assert _read(Channel(b"x" * 500, b"x" * 500)) == b"x" * 1000  # exactly the limit is fine


def test_a_client_that_disconnects_mid_body_gets_a_clear_error() -> None:
    with pytest.raises(InvalidInputError, match="disconnected before sending the whole body"):
        _read(Channel(b"partial", disconnect=True))


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        (" GZip ", gzip.compress),
        ("deflate", zlib.compress),
        ("identity", lambda data: data),
    ],
)
def test_compressed_bodies_are_inflated(encoding: str, compress: Any) -> None:
    data = b'{"inputs": []}' * 20
    assert _read(Channel(compress(data)), content_encoding=encoding) == data


def test_what_a_body_inflates_to_is_held_to_the_limit() -> None:
    assert _read(Channel(gzip.compress(b"x" * 1000)), content_encoding="gzip") == b"x" * 1000
    with pytest.raises(PayloadTooLargeError, match="larger than 1000 bytes"):
        _read(Channel(gzip.compress(b"x" * 1001)), content_encoding="gzip")
    with pytest.raises(PayloadTooLargeError):  # a bomb: 44 bytes that inflate to 10 MB
        _read(Channel(gzip.compress(b"\0" * 10_000_000)), content_encoding="gzip")


@pytest.mark.parametrize(
    ("encoding", "body", "message"),
    [
        ("br", b"x", "unsupported Content-Encoding 'br'; use gzip, deflate or none"),
        ("gzip, br", b"x", "unsupported Content-Encoding 'gzip, br'"),
        ("gzip", b"plain text", "body is not valid gzip data"),
        ("deflate", gzip.compress(b"x"), "body is not valid deflate data"),
    ],
)
def test_unknown_or_corrupt_encodings_are_400(encoding: str, body: bytes, message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        _read(Channel(body), content_encoding=encoding)
    assert message in str(info.value)
    assert info.value.status == 400


def test_header_parsing() -> None:
    assert int_header(None, "X") is None
    assert int_header(" 42 ", "X") == 42
    with pytest.raises(
        InvalidInputError, match="header Content-Length must be an integer, got '4k'"
    ):
        int_header("4k", "Content-Length")
    assert _read(Channel(b"ok"), content_length="2") == b"ok"
    with pytest.raises(InvalidInputError, match="Content-Length must be an integer"):
        _read(Channel(b"ok"), content_length="two")
    assert timeout_header(None) is None
    assert timeout_header("250") == pytest.approx(0.25)
    assert timeout_header("0.5") == pytest.approx(0.0005)
    for bad in ("0", "-3"):
        with pytest.raises(InvalidInputError, match="X-Timeout-Ms must be positive"):
            timeout_header(bad)
    with pytest.raises(InvalidInputError, match="X-Timeout-Ms must be a number, got 'soon'"):
        timeout_header("soon")


def test_only_the_headers_the_inference_path_needs_are_kept() -> None:
    scope = {
        "headers": [
            (b"x-request-id", b"r-1"),
            (b"inference-header-content-length", b"120"),
            (b"cookie", b"secret"),
            (b"user-agent", b"curl"),
            (b"authorization", b"Bearer t"),
        ]
    }
    assert scope_headers(scope) == {
        "x-request-id": "r-1",
        "inference-header-content-length": "120",
        "authorization": "Bearer t",
    }


def _answer(exc: BaseException) -> tuple[int, str, dict[str, str]]:
    reply = error_reply(exc, "POST", "/v2/models/m/infer")
    body = orjson.loads(reply.body)
    assert list(body) == ["error"]
    return reply.status, body["error"], reply.header_dict()


def test_each_error_gets_its_status_message_and_headers() -> None:
    status, message, headers = _answer(OverloadedError("m", 9, retry_after=2.6))
    assert (status, headers) == (503, {"retry-after": "3"})
    assert (
        message == "model 'm' is overloaded (9 requests queued); retry after 2.6 s or add replicas"
    )
    assert _answer(OverloadedError("m", 1, retry_after=0.2))[2] == {"retry-after": "1"}
    assert _answer(UnauthorizedError("no token"))[::2] == (401, {"www-authenticate": "Bearer"})
    assert _answer(UnknownModelError("x", served=["a", "b"]))[:2] == (
        404,
        "model 'x' is not served here; served models: a, b (GET /v2/repository/index)",
    )
    assert _answer(PayloadTooLargeError(10))[0] == 413
    assert _answer(DeadlineExceededError("m", 0.05))[0] == 504
    assert _answer(SignatureError("input 'X' expects 4 features"))[:2] == (
        400,
        "input 'X' expects 4 features",
    )
    assert _answer(ConfigError("bad", hint="fix it"))[:2] == (500, "bad; fix it")


def test_unexpected_errors_hide_their_message(caplog: pytest.LogCaptureFixture) -> None:
    status, message, headers = _answer(RuntimeError("password=hunter2 in /secret/path"))
    assert (status, message, headers) == (500, "internal server error", {})
    assert "hunter2" in caplog.text  # logged with its traceback for the operator
    assert error_status(KeyError("k")) == 500
