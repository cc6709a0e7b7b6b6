"""A small HTTP/1.1 server protocol for asyncio: JSON over Unix sockets, keep-alive, pipelining.

Why not a framework: the daemon's API is a dozen routes of JSON on Unix sockets, and its hot path
(heartbeats) must cost a dict update, not a framework's request object; stdlib asyncio does that
in one module, with nothing to install inside FreeBSD base-like environments.

What it accepts: ``Content-Length`` bodies only (chunked is refused with 501), request lines and
headers up to ``MAX_HEAD`` bytes (431 beyond), bodies up to ``MAX_BODY`` (413 beyond, before the
body is read).  Anything unparsable is answered 400 and the connection closed.  A handler may
answer at once (a ``Response``) or later (an awaitable): requests on one connection are answered
in order.
"""

import asyncio
import contextlib
import inspect
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

MAX_HEAD = 16 * 1024
MAX_BODY = 1024 * 1024
REASONS = {
    200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 411: "Length Required",
    413: "Content Too Large", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
    504: "Gateway Timeout", 505: "HTTP Version Not Supported",
}  # fmt: skip


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body as JSON (an empty body is ``{}``).  Raises BadRequest."""
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from None


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    close: bool = False


class BadRequest(Exception):
    """The request itself is malformed (400, or the status given)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def json_response(status: int, data: Any) -> Response:
    return Response(status, json.dumps(data, separators=(",", ":")).encode())


def error_response(status: int, kind: str, code: int, message: str, close: bool = False) -> Response:
    body = {"error": {"type": kind, "code": code, "message": message}}
    return Response(status, json.dumps(body, separators=(",", ":")).encode(), close=close)


Handler = Callable[[Request], "Response | Awaitable[Response]"]


class HttpProtocol(asyncio.Protocol):
    """One connection.  ``handler`` gets each parsed request; ``conns`` tracks open connections."""

    def __init__(self, handler: Handler, conns: set["HttpProtocol"]) -> None:
        self._handler = handler
        self._conns = conns
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._busy = False
        self._closing = False
        self._paused = False
        self.last_active = time.monotonic()

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._conns.discard(self)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self.last_active = time.monotonic()
        if not self._busy:
            self._process()
        elif len(self._buffer) > MAX_HEAD + MAX_BODY and not self._paused and self._transport:
            self._transport.pause_reading()
            self._paused = True

    @property
    def idle(self) -> bool:
        return not self._busy and not self._buffer

    def close_when_idle(self) -> None:
        """Graceful stop: finish the request in hand (answered with Connection: close), then close."""
        self._closing = True
        if self.idle and self._transport is not None:
            self._transport.close()

    def _process(self) -> None:
        while self._transport is not None and not self._busy:
            try:
                request = self._parse()
            except BadRequest as exc:
                self._buffer.clear()
                self._send(error_response(exc.status, "InvalidInput", 7, str(exc), close=True))
                return
            if request is None:
                break
            try:
                outcome = self._handler(request)
            except Exception:  # the handler maps its own errors; this is a bug, answer 500 anyway
                outcome = error_response(500, "ColibriError", 1, "internal error", close=True)
            if inspect.isawaitable(outcome):
                self._busy = True
                task = asyncio.ensure_future(outcome)
                task.add_done_callback(self._finished)
                return
            self._send(outcome)
        if self._paused and self._transport is not None:
            self._transport.resume_reading()
            self._paused = False

    def _finished(self, task: "asyncio.Future[Response]") -> None:
        self._busy = False
        if task.cancelled():
            response = error_response(503, "DaemonError", 16, "the daemon is stopping", close=True)
        elif task.exception() is not None:
            response = error_response(500, "ColibriError", 1, "internal error", close=True)
        else:
            response = task.result()
        self._send(response)
        self._process()

    def _send(self, response: Response) -> None:
        if self._transport is None:
            return
        close = response.close or (self._closing and not self._buffer)
        head = (
            f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Status')}\r\n"
            f"Content-Type: {response.content_type}\r\nContent-Length: {len(response.body)}\r\n"
            f"{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n"
        )
        self._transport.write(head.encode("latin-1") + response.body)
        if close:
            self._buffer.clear()
            self._transport.close()
            self._transport = None

    def _parse(self) -> Request | None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD:
                raise BadRequest("request head too large", 431)
            return None
        if end > MAX_HEAD:
            raise BadRequest("request head too large", 431)
        try:
            lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            raise BadRequest("undecodable request head") from None
        method, target, version = _request_line(lines[0])
        headers = _headers(lines[1:])
        if "transfer-encoding" in headers:
            raise BadRequest("chunked bodies are not supported: send Content-Length", 501)
        length = _content_length(headers)
        if length > MAX_BODY:
            raise BadRequest(f"body larger than {MAX_BODY // 1024} KiB", 413)
        if len(self._buffer) < end + 4 + length:
            return None
        body = bytes(self._buffer[end + 4 : end + 4 + length])
        del self._buffer[: end + 4 + length]
        if version == "HTTP/1.0" or headers.get("connection", "").lower() == "close":
            self._closing = True
        path, _, query = target.partition("?")
        return Request(method, unquote(path), dict(parse_qsl(query)), headers, body)


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _request_line(line: str) -> tuple[str, str, str]:
    parts = line.split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1].startswith("/"):
        raise BadRequest("malformed request line")
    if parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest("only HTTP/1.1 is spoken here", 505)
    return parts[0], parts[1], parts[2]


def _headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise BadRequest("malformed header line")
        headers[name.lower()] = value.strip()
    return headers


def _content_length(headers: dict[str, str]) -> int:
    raw = headers.get("content-length", "0")
    if not raw.isdigit() or len(raw) > 12:
        raise BadRequest("invalid Content-Length")
    return int(raw)


class Router:
    """Routes ``METHOD /path/{param}``; unknown paths are 404, known paths with another method 405."""

    def __init__(self) -> None:
        self._routes: list[tuple[re.Pattern[str], dict[str, Callable[..., Any]]]] = []

    def add(self, method: str, template: str, handler: Callable[..., Any]) -> None:
        pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")
        for existing, methods in self._routes:
            if existing.pattern == pattern.pattern:
                methods[method] = handler
                return
        self._routes.append((pattern, {method: handler}))

    def match(self, request: Request) -> Callable[..., Any] | int:
        """The handler, or 404 / 405."""
        status = 404
        for pattern, methods in self._routes:
            found = pattern.match(request.path)
            if found:
                handler = methods.get(request.method)
                if handler is None:
                    status = 405
                    continue
                request.params = found.groupdict()
                return handler
        return status


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
