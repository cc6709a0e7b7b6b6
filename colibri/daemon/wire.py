"""HTTP/1.1 messages for the daemon: requests, responses, error envelopes, the framing rules of
RFC 9112 (what http.py's protocol refuses, and why, is in its docstring) and the router."""

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

from colibri import strictjson

log = logging.getLogger("colibri.daemon")


class Connection(Protocol):
    """What a handler may ask of the connection a request came on (http.py's HttpProtocol)."""

    closed: bool

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when the client goes; returns the function that stops watching."""
        ...


MAX_HEAD = 16 * 1024
MAX_BODY = 1024 * 1024
MAX_REQUEST_LINE = 8 * 1024  # RFC 9112 §3: beyond, 414 (every route's target is far shorter)
MAX_SMALL_BODY = 16 * 1024  # register, heartbeat, claim, ...: nothing there needs more
LARGE_BODY = re.compile(r"/v1/tasks(?:/[0-9]+/result)?")  # submit a task, post its result
MAX_DEPTH = strictjson.MAX_DEPTH  # JSON nesting of an API body
REASONS = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad Request", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict",
    413: "Content Too Large", 414: "URI Too Long", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}  # fmt: skip


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    conn: Connection | None = None
    query_error: str | None = None  # a query the framing allows but that is not valid (400, kept open)

    @property
    def gone(self) -> bool:
        """The client has closed its connection: nobody will read the answer."""
        return self.conn is not None and self.conn.closed

    def json(self) -> Any:
        """The body as strict JSON (an empty body is ``{}``).  Raises BadRequest (400)."""
        if not self.body:
            return {}
        return parse_json(self.body)


def parse_json(body: bytes) -> Any:
    """The body as strict JSON (colibri/strictjson.py).  Anything else is BadRequest, never a 500."""
    try:
        return strictjson.loads(body, max_depth=MAX_DEPTH)
    except strictjson.NotStrictJson as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    close: bool = False
    unsent: Callable[[], None] | None = None  # called when the client has gone before the answer
    headers: dict[str, str] = field(default_factory=dict)  # more header fields (e.g. Allow)


class BadRequest(Exception):
    """The request itself is malformed (400, or the status given)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def log_bug(request: "Request", exc: BaseException) -> None:
    """A bug, answered 500: logged with its traceback (files, lines, code; never locals) and the
    exception's type, but not its message, which may quote what the client sent (``KeyError:
    'the-secret'``); never the request's body."""
    kind = type(exc)
    withheld = type(kind.__name__, (Exception,), {
        "__module__": kind.__module__, "__qualname__": kind.__qualname__,
        "__str__": lambda self: "(its message is not logged: it may quote the request)",
    })  # fmt: skip
    log.error("internal error answering %s %s (%s)", request.method[:20], request.path[:100], kind.__name__,
              exc_info=(withheld, withheld(), exc.__traceback__))  # fmt: skip


def json_response(status: int, data: Any) -> Response:
    return Response(status, json.dumps(data, separators=(",", ":")).encode())


def error_response(status: int, kind: str, code: int, message: str, close: bool = False) -> Response:
    body = {"error": {"type": kind, "code": code, "message": message}}
    return Response(status, json.dumps(body, separators=(",", ":")).encode(), close=close)


Handler = Callable[[Request], "Response | Awaitable[Response]"]


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def parse_request_line(line: str) -> tuple[str, str, str]:
    parts = line.split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]):
        raise BadRequest("malformed request line")
    if parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest("only HTTP/1.1 is spoken here", 505)
    target = parts[1]
    absolute = _ABSOLUTE.fullmatch(target)  # RFC 9112 §3.2.2: a server accepts the absolute form
    if absolute:
        target = absolute.group(1) or "/"
    if not target.startswith("/"):
        raise BadRequest("malformed request line")
    return parts[0], target, parts[2]


HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]{0,5})?", re.ASCII)
_ABSOLUTE = re.compile(r"https?://[^/?#\s]*(/[^#\s]*)?", re.IGNORECASE | re.ASCII)


KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"))
"""The methods of RFC 9110 §9 and PATCH (RFC 5789): one of them a route lacks is 405 with Allow;
any other method is 501, whatever the path (RFC 9110 §9.1, §15.6.2)."""


def head_line_error(line: bytes, first: bool) -> None:
    """Check one line of a request head as soon as it has arrived (without its CRLF): a bare CR
    or NUL, a malformed request line (400, or 505) or header line (400) is BadRequest at once, so a
    bad head is refused before the rest of it comes (http.py's HttpProtocol)."""
    if b"\r" in line or b"\0" in line:
        raise BadRequest("a bare CR, LF or NUL in the request head")
    text = line.decode("latin-1")
    if first:
        parse_request_line(text)
    else:
        header_field(text)


def header_field(line: str) -> tuple[str, str]:
    """One header line → (its name lower-cased, its value), or BadRequest."""
    if line[:1] in (" ", "\t"):
        raise BadRequest("obsolete line folding in the request head")  # RFC 9112 §5.2
    name, sep, value = line.partition(":")
    if not sep or not _TOKEN.fullmatch(name):  # also whitespace before the colon (§5.1)
        raise BadRequest("malformed header line")
    return name.lower(), value.strip(" \t")


def parse_headers(lines: list[str]) -> tuple[dict[str, str], int]:
    """The header fields (names lower-cased) and how many Host fields there were."""
    headers: dict[str, str] = {}
    hosts = 0
    for line in lines:
        key, value = header_field(line)
        if key == "content-length" and headers.get(key, value) != value:
            raise BadRequest("conflicting Content-Length headers")
        if key == "host":
            hosts += 1
        if key == "transfer-encoding" and key in headers:
            value = f"{headers[key]}, {value}"  # RFC 9110 §5.3: one list
        headers[key] = value
    return headers, hosts


_DIGITS = re.compile(r"[0-9]{1,12}", re.ASCII)


def tokens(value: str) -> list[str]:
    return [item.strip(" \t").lower() for item in value.split(",")]


def framing_length(headers: dict[str, str]) -> int:
    """The body's length (RFC 9112 §6.3), or BadRequest: there is one reading, or none."""
    if "transfer-encoding" in headers:
        if "content-length" in headers:
            raise BadRequest("Transfer-Encoding and Content-Length together: the length is ambiguous")
        if tokens(headers["transfer-encoding"])[-1] != "chunked":
            raise BadRequest("a Transfer-Encoding whose last coding is not chunked: the length is unknown")
        raise BadRequest("chunked bodies are not supported: send Content-Length", 501)
    raw = headers.get("content-length", "0")
    if not _DIGITS.fullmatch(raw):  # not str.isdigit(): it accepts '²', which int() refuses; nor lists
        raise BadRequest("invalid Content-Length")
    return int(raw)


def parse_query(query: str) -> dict[str, str]:
    """The query's parameters; one given twice is refused (which one counts would be a guess)."""
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in params:
            raise BadRequest(f"query parameter {key[:30]!r} given more than once")
        params[key] = value
    return params


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
        """The handler (a HEAD gets its GET's), or 404 / 405."""
        status = 404
        method = "GET" if request.method == "HEAD" else request.method
        for pattern, methods in self._routes:
            found = pattern.match(request.path)
            if found:
                handler = methods.get(method)
                if handler is None:
                    status = 405
                    continue
                request.params = {k: unquote(v, errors="replace") for k, v in found.groupdict().items()}
                return handler
        return status

    def allowed(self, path: str) -> list[str]:
        """The methods ``path`` answers (the ``Allow`` of a 405), HEAD wherever GET is."""
        methods = {m for pattern, handlers in self._routes if pattern.match(path) for m in handlers}
        if "GET" in methods:
            methods.add("HEAD")
        return sorted(methods)
