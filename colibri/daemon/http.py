"""A small HTTP/1.1 server protocol for asyncio: JSON over Unix sockets, keep-alive, pipelining.

Why not a framework: the daemon's API is a dozen routes of JSON on Unix sockets, and its hot path
(heartbeats) must cost a dict update, not a framework's request object; stdlib asyncio does that
in one module, with nothing to install inside FreeBSD base-like environments.

What it accepts: ``Content-Length`` bodies only (chunked is refused with 501), a request line up to
``MAX_REQUEST_LINE`` bytes (414 beyond), request lines and headers up to ``Limits.max_head`` bytes
(431 beyond), bodies up to ``Limits.max_body`` on the routes that carry a payload
(``Limits.large_body``) and ``Limits.max_small_body`` on the others (413 beyond, before the body is
read).  Anything unparsable is answered 400 and the connection closed.  A handler may answer at
once (a ``Response``) or later (an awaitable): requests on one connection are answered in order.

The framing follows RFC 9112 strictly, since a request whose length two readers could read two
ways is how a second request gets smuggled inside a first one's body: the message body length is
Content-Length's (§6.3); a request with Transfer-Encoding and Content-Length, a Transfer-Encoding
whose last coding is not chunked, differing or list-valued Content-Lengths, whitespace before a
field's colon (§5.1), obsolete line folding (§5.2), a bare CR, LF or NUL in the head (§2.2, RFC
9110 §5.5), and an HTTP/1.1 request without exactly one Host (§3.2) are all answered 400, and
the connection is closed without reading further; the head is checked as its bytes arrive, so a
bad one (a bare LF included) is refused at once, not held until the request timeout.  A query
that names a parameter twice is 400 too: which of the two a reader would take is the same
ambiguity.  HEAD is answered as GET with
the same headers and no body (RFC 9110 §9.3.2); 204 carries neither Content-Length nor
Content-Type (RFC 9110 §8.6, §15.3.5); 405 carries Allow (RFC 9110 §15.5.6), for a method of
RFC 9110 the route lacks; any other method is 501 (RFC 9110 §9.1, §15.6.2).

What a client can consume is bounded (everything a tenant sends is hostile): each listening
socket has a ``Gate`` with its own connection budget (beyond it a connection gets one 503 and is
closed; the admin socket's budget is its own, so a flooded tenant socket cannot starve it) and its
own request rate (429 beyond it); a request must arrive whole within ``request_timeout`` (slowloris:
408 and closed) and an idle keep-alive connection is closed after ``idle_timeout``; a client that
does not read its answers stops being read (write-buffer backpressure), so pipelined requests
never pile up in memory beyond one request's worth per connection.
"""

import asyncio
import contextlib
import functools
import inspect
import logging
import time
from collections.abc import Callable

from colibri.daemon.gate import Gate, Limits, Pool
from colibri.daemon.wire import (
    HOST,
    KNOWN_METHODS,
    MAX_REQUEST_LINE,
    REASONS,
    BadRequest,
    Handler,
    Request,
    Response,
    Router,
    error_response,
    framing_length,
    head_line_error,
    json_response,
    log_bug,
    parse_headers,
    parse_json,
    parse_query,
    parse_request_line,
    tokens,
)
from colibri.errors import INTERNAL_ERROR_EXIT, DaemonError, InvalidInput, LimitExceeded

BAD = InvalidInput.exit_code  # the codes of the error envelopes this module answers by itself
log = logging.getLogger("colibri.daemon")

_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
_BUSY_BODY = b'{"error":{"type":"LimitExceeded","code":%d,"message":"too many connections on this socket"}}' % (
    LimitExceeded.exit_code
)
BUSY = _BUSY + b"Content-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY


class HttpProtocol(asyncio.Protocol):
    """One connection.  ``handler`` gets each parsed request; ``gate`` is its socket's budget."""

    def __init__(self, handler: Handler, gate: "Gate | set[HttpProtocol]") -> None:
        self._handler = handler
        self._gate = gate if isinstance(gate, Gate) else Gate("test", 1 << 30, everyone=gate)
        self._limits = self._gate.limits
        self._max_buffer = self._limits.max_buffer
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._busy = False
        self._closing = False
        self._paused = False  # reading paused (the buffer is full, or the client does not read)
        self._write_paused = False
        self._counted = False
        self._head = False  # the request being parsed is a HEAD (its error answer has no body)
        self._checked = 0  # the head in the buffer is checked up to here (_check_partial_head)
        self._on_close: set[Callable[[], None]] = set()
        self.closed = False
        self.last_active = self._started = self._paused_at = time.monotonic()

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        gate = self._gate
        if not gate.admit():
            self.closed = True
            with contextlib.suppress(Exception):
                transport.write(BUSY)
                transport.close()
            return
        self._transport = transport
        self._counted = True
        gate.conns.add(self)
        gate.everyone.add(self)
        if gate.pool is not None:
            gate.pool.count += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._transport = None
        callbacks, self._on_close = self._on_close, set()
        for callback in callbacks:
            callback()
        if self._counted:
            self._counted = False
            gate = self._gate
            gate.conns.discard(self)
            gate.everyone.discard(self)
            if gate.pool is not None:
                gate.pool.count -= 1

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when the client goes (at once if it has); returns the way to unwatch."""
        if self.closed:
            callback()
        else:
            self._on_close.add(callback)
        return lambda: self._on_close.discard(callback)

    def pause_writing(self) -> None:
        """The client does not read its answers: stop reading (and parsing) its requests."""
        self._write_paused = True
        self._paused_at = time.monotonic()
        self._flow()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._flow()
        if not self._busy:
            self._process()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self._buffer:
            self._started = now
            self._checked = 0
        self._buffer += data
        self.last_active = now
        if not self._busy and not self._write_paused:
            self._process()
        if self._write_paused or len(self._buffer) >= self._max_buffer:
            self._flow()

    def _flow(self) -> None:
        transport = self._transport
        if transport is None:
            return
        pause = self._write_paused or len(self._buffer) >= self._max_buffer
        if pause and not self._paused:
            transport.pause_reading()
            self._paused = True
        elif not pause and self._paused:
            transport.resume_reading()
            self._paused = False

    @property
    def idle(self) -> bool:
        return not self._busy and not self._buffer

    def expire(self, now: float) -> None:
        """The sweep (about once a second): close what has waited too long (slowloris, idle, unread)."""
        if self._transport is None or self._busy:
            return
        limits = self._limits
        if self._write_paused:
            if now - self._paused_at > limits.idle_timeout:
                self._abort()
        elif self._buffer:
            if now - self._started > limits.request_timeout:
                self._buffer.clear()
                message = f"the request was not complete within {limits.request_timeout:g} s"
                self._send(error_response(408, "InvalidInput", BAD, message, close=True))
        elif now - self.last_active > limits.idle_timeout:
            self._abort()

    def _abort(self) -> None:
        transport, self._transport = self._transport, None
        self._buffer.clear()
        if transport is not None:
            transport.abort()

    def close_when_idle(self) -> None:
        """Graceful stop: finish the request in hand (answered with Connection: close), then close."""
        self._closing = True
        if self.idle and self._transport is not None:
            self._transport.close()

    def _process(self) -> None:
        while self._transport is not None and not self._busy and not self._write_paused:
            self._head = False
            try:
                request = self._parse()
            except BadRequest as exc:
                self._buffer.clear()
                self._send(error_response(exc.status, "InvalidInput", BAD, str(exc), close=True), self._head)
                return
            if request is None:
                break
            head = request.method == "HEAD"
            if not self._gate.take(self.last_active, len(request.body)):
                message = "too many requests on this socket: slow down"
                self._send(error_response(429, "LimitExceeded", LimitExceeded.exit_code, message), head)
                continue
            if request.method not in KNOWN_METHODS:  # RFC 9110 §9.1, §15.6.2; a known one a route lacks is 405
                message = f"method {request.method[:20]} is not implemented"
                self._send(error_response(501, "InvalidInput", BAD, message), head)
                continue
            if request.query_error is not None:
                self._send(error_response(400, "InvalidInput", BAD, request.query_error), head)
                continue
            try:
                outcome = self._handler(request)
            except Exception as exc:  # the handler maps its own errors; this is a bug, answer 500 anyway
                log_bug(request, exc)
                outcome = error_response(500, "ColibriError", INTERNAL_ERROR_EXIT, "internal error", close=True)
            if inspect.isawaitable(outcome):
                self._busy = True
                task = asyncio.ensure_future(outcome)
                task.add_done_callback(functools.partial(self._finished, request))
                return
            self._send(outcome, head)
        if self._paused:
            self._flow()

    def _finished(self, request: Request, task: "asyncio.Future[Response]") -> None:
        self._busy = False
        if task.cancelled():
            response = error_response(503, "DaemonError", DaemonError.exit_code, "the daemon is stopping", close=True)
        elif (exc := task.exception()) is not None:
            log_bug(request, exc)
            response = error_response(500, "ColibriError", INTERNAL_ERROR_EXIT, "internal error", close=True)
        else:
            response = task.result()
        if response.unsent is not None and (self._transport is None or self._transport.is_closing()):
            response.unsent()
        self._send(response, request.method == "HEAD")
        if not self._write_paused:
            self._process()

    def _send(self, response: Response, head_only: bool = False) -> None:
        """Write one answer; ``head_only``: the answer to a HEAD, its GET's headers without the body."""
        if self._transport is None:
            return
        close = response.close or (self._closing and not self._buffer)
        lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Status')}"]
        if response.status != 204:  # RFC 9110 §8.6: a 204 has no Content-Length (and no content)
            lines += [f"Content-Type: {response.content_type}", f"Content-Length: {len(response.body)}"]
        lines += [f"{name}: {value}" for name, value in response.headers.items()]
        if close:
            lines.append("Connection: close")
        body = b"" if head_only or response.status == 204 else response.body
        self._transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        if close:
            self._buffer.clear()
            self._transport.close()
            self._transport = None

    def _check_partial_head(self) -> None:
        """The head so far, as its bytes arrive: each line once it is whole (``head_line_error``),
        and in the line still coming a NUL or a CR that is not its end; a bare LF is refused too.
        ``_checked`` is where the first line not yet checked begins, so each byte is looked at
        about once however slowly the head comes (a slowloris costs no quadratic time)."""
        buffer, start = self._buffer, self._checked
        try:
            while (newline := buffer.find(b"\n", start)) >= 0:
                if newline == start or buffer[newline - 1] != 0x0D:  # RFC 9112 §2.2: refused, not held
                    raise BadRequest("a bare CR, LF or NUL in the request head")
                head_line_error(bytes(buffer[start : newline - 1]), first=start == 0)
                start = self._checked = newline + 1
            if buffer.find(b"\0", start) >= 0 or buffer.find(b"\r", start, len(buffer) - 1) >= 0:
                raise BadRequest("a bare CR, LF or NUL in the request head")
        except BadRequest:
            self._head = buffer.startswith(b"HEAD ")
            raise

    def _parse(self) -> Request | None:
        end = self._buffer.find(b"\r\n\r\n")
        line_end = self._buffer.find(b"\r\n", 0, MAX_REQUEST_LINE + 2)
        if (line_end < 0 and len(self._buffer) > MAX_REQUEST_LINE) or line_end > MAX_REQUEST_LINE:
            raise BadRequest(f"request target too long (the request line is limited to {MAX_REQUEST_LINE} bytes)", 414)
        if end < 0:
            if len(self._buffer) > self._limits.max_head:
                raise BadRequest("request head too large", 431)
            self._check_partial_head()
            return None
        if end > self._limits.max_head:
            raise BadRequest("request head too large", 431)
        lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")  # latin-1 decodes every byte
        self._head = lines[0].startswith("HEAD ")
        if any(c in line for line in lines for c in "\r\n\x00"):
            raise BadRequest("a bare CR, LF or NUL in the request head")
        method, target, version = parse_request_line(lines[0])
        headers, hosts = parse_headers(lines[1:])
        length = framing_length(headers)
        limit = self._limits.max_body
        path, _, query = target.partition("?")
        if length > self._limits.max_small_body and not self._limits.large_body.fullmatch(path):
            limit = self._limits.max_small_body
        if length > limit:
            raise BadRequest(f"body larger than {limit // 1024} KiB", 413)
        if version == "HTTP/1.1" and hosts != 1:  # RFC 9112 §3.2
            raise BadRequest("an HTTP/1.1 request needs exactly one Host header" if hosts else
                             "an HTTP/1.1 request needs a Host header")  # fmt: skip
        if not HOST.fullmatch(headers.get("host", "")):  # RFC 9112 §3.2: uri-host [":" port], or empty
            raise BadRequest("invalid Host header")
        if len(self._buffer) < end + 4 + length:
            return None
        body = bytes(self._buffer[end + 4 : end + 4 + length])
        del self._buffer[: end + 4 + length]
        self._checked = 0
        self._started = self.last_active
        if version == "HTTP/1.0" or "close" in tokens(headers.get("connection", "")):
            self._closing = True
        try:
            params, problem = parse_query(query), None
        except BadRequest as exc:
            params, problem = {}, str(exc)
        # The path stays as sent: routes match its segments, and a parameter is decoded after
        # (a %2F in a tenant id is part of that id, not a second segment; RFC 3986 §2.2).
        return Request(method, path, params, headers, body, conn=self, query_error=problem)


def sweep(conns: set[HttpProtocol], now: float | None = None) -> None:
    """Apply the request and idle timeouts to every connection (the daemon runs this each second)."""
    now = time.monotonic() if now is None else now
    for conn in list(conns):
        conn.expire(now)


async def close_all(conns: set[HttpProtocol], grace: float) -> None:
    """Let requests in hand finish (up to ``grace`` seconds), then close every connection."""
    for conn in list(conns):
        conn.close_when_idle()
    deadline = time.monotonic() + grace
    while conns and time.monotonic() < deadline:  # noqa: ASYNC110 - connections have no event to await
        await asyncio.sleep(0.05)
    for conn in list(conns):
        with contextlib.suppress(Exception):
            if conn._transport is not None:
                conn._transport.abort()


__all__ = [
    "REASONS", "BadRequest", "Gate", "Handler", "HttpProtocol", "Limits", "Pool", "Request", "Response", "Router",
    "close_all", "error_response", "json_response", "log_bug", "parse_json", "sweep",
]  # fmt: skip
