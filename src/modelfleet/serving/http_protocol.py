"""uvicorn's httptools protocol with limits, read deadlines, JSON refusals and a lossless close.

uvicorn bounds neither a request's head nor how slowly it may arrive with httptools (its
``h11_max_incomplete_event_size`` is for h11 only), and answers what llhttp refuses with
plain text. This protocol adds, per connection:

- a head limit: past ``max_header_bytes`` (431) or ``max_url_bytes`` (414) the client is
  answered and disconnected at once, so a 100 MB header costs 32 KB, not seconds of CPU;
- read deadlines: the head must arrive within ``header_timeout_s`` of its first byte (or of
  the connection opening), and a body must bring ``min_body_rate`` bytes a second over each
  ``body_timeout_s`` window; slower clients get 408. Time the server itself is not reading
  (a full buffer, a pending ``100 Continue``) is not held against the client;
- ``{"error": …}`` JSON for everything refused here, llhttp's reason included (bad method,
  ``Content-Length`` with ``Transfer-Encoding``, …), written after the answers to earlier
  pipelined requests;
- a close that loses nothing: while the server drains every request is answered with
  ``Connection: close``, and at exit a connection is closed only once the last request it
  delivered is answered; an idle one stays open briefly for a request already on its way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import ClassVar

import httptools
from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from modelfleet.serving.http_errors import ErrorReply, HttpProblem, problem_reply
from modelfleet.serving.settings import ServerConfig

logger = logging.getLogger(__name__)
_LINGER_S = 0.25  # at exit, how long an idle connection waits for a request already sent


class _RefusedError(Exception):
    """Raised from a parser callback to stop parsing; the refusal is on the protocol."""


class GuardedHttpProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection; :func:`guarded_protocol` binds the limits and drain state."""

    limits: ClassVar[ServerConfig] = ServerConfig()

    def draining(self) -> bool:
        """Whether the server drains: answers then carry ``Connection: close``."""
        return False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._in_head = True  # reading a request line and headers (or waiting for one)
        self._head_bytes = 0
        self._window_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_for: Callable[[], None] | None = None
        self._refusal: ErrorReply | None = None
        self._victim: RequestResponseCycle | None = None  # the request a 408 answers
        self._running: RequestResponseCycle | None = None  # the request the app is on
        self._closing = False
        self._last: RequestResponseCycle | None = None  # marked to close the connection
        self._last_keep_alive = True
        self._arm(self.limits.header_timeout_s, self._head_overdue)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._refusal is not None or (self._last is not None and self._last.response_started):
            return  # answered with Connection: close already; nothing more is read
        view = memoryview(data)
        try:
            while view and self._refusal is None:
                # In a head, feed one byte past the room left, so an overflow is seen at once.
                size = self.limits.max_header_bytes - self._head_bytes + 1 if self._in_head else 0
                piece, view = (view[:size], view[size:]) if size else (view, view[:0])
                if self._in_head:
                    self._head_bytes += len(piece)
                self.parser.feed_data(piece)
                if self._in_head and self._head_bytes > self.limits.max_header_bytes:
                    limit = self.limits.max_header_bytes
                    self._refuse(HttpProblem.HEADERS_TOO_LARGE, f"request head over {limit} bytes")
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:
            if self._refusal is None:
                reason = str(exc.__context__ or exc) or type(exc).__name__
                self._refuse(HttpProblem.MALFORMED, f"malformed HTTP request: {reason}")

    # -- parser callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._timer_for != self._head_overdue:  # a fresh connection's clock runs already
            self._arm(self.limits.header_timeout_s, self._head_overdue)

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_url_bytes:
            limit = self.limits.max_url_bytes
            self._refuse(HttpProblem.URL_TOO_LONG, f"request target over {limit} bytes")
            raise _RefusedError

    def on_headers_complete(self) -> None:
        self._disarm()
        self._in_head = False
        self._window_bytes = 0
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is previous:  # upgraded: no request of ours
            return
        self._arm(self.limits.body_timeout_s, self._body_overdue)
        if self._closing or self.draining():
            self._close_after(self.cycle)

    def on_body(self, body: bytes) -> None:
        self._window_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head, self._head_bytes = True, 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._answer_refusal()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        self._running = cycle
        super()._start_asgi_task(cycle, app)

    # -- deadlines ------------------------------------------------------------------------

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._timer, self._timer_for = self.loop.call_later(delay, callback), callback

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_for = None

    def _head_overdue(self) -> None:
        self._disarm()
        if self.flow.read_paused:  # pipelined behind a request still running: not late
            self._arm(self.limits.header_timeout_s, self._head_overdue)
        elif self._head_bytes == 0:
            self.transport.close()  # connected and said nothing
        else:
            limit = self.limits.header_timeout_s
            self._refuse(HttpProblem.TOO_SLOW, f"request head not received within {limit:g} s")

    def _body_overdue(self) -> None:
        window, cycle = self.limits.body_timeout_s, self.cycle
        needed = max(1, int(self.limits.min_body_rate * window))
        if self.flow.read_paused or cycle.waiting_for_100_continue or self._window_bytes >= needed:
            self._window_bytes = 0
            self._arm(window, self._body_overdue)
            return
        self._disarm()
        if cycle.response_started:  # answered without reading the body: just hang up
            cycle.keep_alive = False
            if cycle.response_complete:
                self.transport.close()
            return
        if self.pipeline and self.pipeline[0][0] is cycle:
            self.pipeline.popleft()  # never started; the refusal is its answer
        rate, self._victim = self.limits.min_body_rate, cycle
        self._refuse(HttpProblem.TOO_SLOW, f"request body slower than {rate} bytes/s")

    # -- refusals and closing -------------------------------------------------------------

    def _refuse(self, problem: HttpProblem, message: str) -> None:
        self._disarm()
        logger.debug("refused %s: %s (%s)", self.client, message, problem.value)
        self._refusal = problem_reply(problem, f"{message}; {_HINTS[problem]}")
        self.flow.pause_reading()
        self._answer_refusal()

    def _answer_refusal(self) -> None:
        """Write the refusal once every request before it is answered, then close."""
        reply, running = self._refusal, self._running
        if reply is None or self.pipeline or self.transport.is_closing():
            return
        if running is not None and not running.response_complete and running is not self._victim:
            return  # an earlier request is being answered: after it
        head = [STATUS_LINE[reply.status]]
        headers = [*self.server_state.default_headers, (b"content-type", b"application/json")]
        headers += [(b"content-length", str(len(reply.body)).encode()), *reply.headers]
        head += [name + b": " + value + b"\r\n" for name, value in headers]
        self.transport.write(b"".join([*head, b"\r\n", reply.body]))
        self.transport.close()

    def _close_after(self, cycle: RequestResponseCycle) -> None:
        """Close the connection once ``cycle``, the last request read so far, is answered."""
        last = self._last
        if last is not None and last is not cycle and not last.response_started:
            last.keep_alive = self._last_keep_alive  # a later request arrived: it goes last
        self._last, self._last_keep_alive = cycle, cycle.keep_alive
        cycle.keep_alive = False

    def shutdown(self) -> None:
        """The server exits: answer what was delivered, then close."""
        self._closing = True
        if self._refusal is not None or (self._in_head and self._head_bytes):
            return  # a head on its way is answered once whole; its deadline bounds the wait
        last = self.pipeline[0][0] if self.pipeline else self.cycle
        if last is not None and not last.response_complete:
            self._close_after(last)
        else:
            self._arm(_LINGER_S, self._close_if_idle)

    def _close_if_idle(self) -> None:
        self._disarm()
        if self._head_bytes == 0 and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()


_HINTS = {
    HttpProblem.MALFORMED: "send a well-formed HTTP/1.1 request",
    HttpProblem.TOO_SLOW: "send the whole request at once",
    HttpProblem.URL_TOO_LONG: "send large inputs in a POST body",
    HttpProblem.HEADERS_TOO_LARGE: "send fewer or smaller headers",
}


def guarded_protocol(limits: ServerConfig, draining: Callable[[], bool]) -> type[HttpToolsProtocol]:
    """The protocol class uvicorn's ``http=`` takes, bound to these limits and drain state."""

    class BoundHttpProtocol(GuardedHttpProtocol):
        def draining(self) -> bool:
            return draining()

    BoundHttpProtocol.limits = limits
    return BoundHttpProtocol


__all__ = ["GuardedHttpProtocol", "guarded_protocol"]
