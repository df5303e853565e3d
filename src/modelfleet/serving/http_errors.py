"""Failures as HTTP answers: the one place an error gets its status, JSON body and headers.

Both ways a request is answered go through :func:`error_reply`: the inference fast path that
writes ASGI messages itself, and the Starlette routes (through their exception handler).

    ServingError (and subclasses)   its own ``status`` (400, 401, 403, 404, 409, 413, 503, 504)
    SignatureError                  400
    other ModelfleetError           500
    anything else                   500, message hidden, logged with its traceback
    routing (no route, method)      404 / 405 with a message pointing at /docs
    HTTP layer (before any route)   400 malformed, 408 too slow, 414 long URL, 431 big headers
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

import orjson
from starlette.exceptions import HTTPException

from modelfleet.errors import (
    ModelfleetError,
    OverloadedError,
    ServingError,
    SignatureError,
    StateUnavailableError,
    UnauthorizedError,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """What a failed request is answered with; the body is always ``{"error": "…"}``."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def header_dict(self) -> dict[str, str]:
        """The headers as Starlette's ``Response`` takes them."""
        return {k.decode("latin-1"): v.decode("latin-1") for k, v in self.headers}


class HttpProblem(Enum):
    """What the HTTP layer refuses before a request reaches a route; the value is its status."""

    MALFORMED = 400
    TOO_SLOW = 408
    URL_TOO_LONG = 414
    HEADERS_TOO_LARGE = 431


def problem_reply(problem: HttpProblem, message: str) -> ErrorReply:
    """The answer to a request the HTTP layer refuses; the connection closes after it."""
    return ErrorReply(problem.value, _body(message), ((b"connection", b"close"),))


def error_status(exc: BaseException) -> int:
    """The HTTP status of an error."""
    if isinstance(exc, HTTPException):
        return exc.status_code
    if isinstance(exc, ServingError):
        return exc.status
    if isinstance(exc, SignatureError):
        return 400
    return 500


def error_reply(exc: BaseException, method: str, path: str) -> ErrorReply:
    """The answer to a request to ``method path`` that failed with ``exc``."""
    if isinstance(exc, HTTPException):
        return _routing_reply(exc, method, path)
    status = error_status(exc)
    if status >= 500 and not isinstance(exc, ServingError):
        logger.error("request failed", exc_info=exc)
    # Only our own errors are written for users; anything else may carry internals.
    message = str(exc) if isinstance(exc, ModelfleetError) else "internal server error"
    return ErrorReply(status, _body(message), _error_headers(exc))


def _routing_reply(exc: HTTPException, method: str, path: str) -> ErrorReply:
    headers = exc.headers or {}
    if exc.status_code == 404:
        message = f"no route {method} {path}; see /docs"
    elif exc.status_code == 405:
        message = f"method {method} not allowed on {path} (allowed: {headers.get('Allow', '')})"
    else:
        message = exc.detail
    encoded = tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
    return ErrorReply(exc.status_code, _body(message), encoded)


def _error_headers(exc: BaseException) -> tuple[tuple[bytes, bytes], ...]:
    if isinstance(exc, OverloadedError | StateUnavailableError):
        return ((b"retry-after", str(max(1, round(exc.retry_after))).encode()),)
    if isinstance(exc, UnauthorizedError):
        return ((b"www-authenticate", b"Bearer"),)
    return ()


def _body(message: str) -> bytes:
    return orjson.dumps({"error": message})
