"""The HTTP/1.1 protocol on a fake transport: parsing, limits, pipelining, keep-alive."""

import asyncio
import logging
import time
from typing import Any

import pytest

from colibri.daemon.http import (
    BadRequest,
    Gate,
    HttpProtocol,
    Limits,
    Request,
    Response,
    Router,
    json_response,
    parse_json,
    sweep,
)
from colibri.daemon.wire import MAX_BODY, MAX_DEPTH


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: Any) -> None:
        self.out += bytes(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def serve(data: bytes) -> tuple[Transport, list[Request]]:
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        return json_response(200, {"path": request.path})

    transport = Transport()
    protocol = HttpProtocol(handler, set())
    protocol.connection_made(transport)
    protocol.data_received(data)
    return transport, seen


def test_pipelined_requests_in_pieces_are_answered_in_order() -> None:
    data = b"POST /a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}GET /b HTTP/1.1\r\nHost: h\r\n\r\n"
    transport, seen = serve(data)
    assert [r.path for r in seen] == ["/a", "/b"]
    assert seen[0].query == {"x": "1"} and seen[0].body == b"{}" and seen[1].headers["host"] == "h"
    assert transport.out.count(b"HTTP/1.1 200 OK") == 2 and not transport.closed


def test_limits_and_malformed_requests_close_the_connection() -> None:
    cases = {
        b"POST / HTTP/1.1\r\nContent-Length: " + str(MAX_BODY + 1).encode() + b"\r\n\r\n": b"413",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n": b"501",
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n": b"400",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n": b"400",
        b"GET nothing HTTP/1.1\r\n\r\n": b"400",
        b"GET / HTTP/3\r\n\r\n": b"505",
        b"GET /" + b"x" * 17000: b"414",  # a request line too long (RFC 9112 §3)
        b"GET / HTTP/1.1\r\nX: " + b"x" * 17000: b"431",  # a head too large
    }
    for data, status in cases.items():
        transport, seen = serve(data)
        assert transport.out.startswith(b"HTTP/1.1 " + status), data[:40]
        assert transport.closed and seen == []


def test_a_head_arriving_a_byte_at_a_time_is_checked_as_it_comes() -> None:
    """A good head in one-byte pieces (each CR alone at the buffer's end for a moment) is read;
    a bad one is refused at the byte that makes it bad, before the rest arrives."""
    good = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}GET /b HTTP/1.1\r\nHost: h\r\n\r\n"
    protocol = HttpProtocol(lambda r: json_response(200, {}), set())
    protocol.connection_made(transport := Transport())
    for byte in good:
        protocol.data_received(bytes([byte]))
    assert transport.out.count(b"HTTP/1.1 200 OK") == 2 and not transport.closed
    for bad in [b"GET / HTTP/1.1\r\nHost: h\n", b"GET / HTTP/1.1\r\nX: a\rb", b"GET / HTTP/1.1\r\nHost: h\r\n\x00",
                b"GET /\r\n"]:  # fmt: skip
        transport, _ = serve(bad)
        assert transport.out.startswith(b"HTTP/1.1 400 ") and transport.closed, bad


def test_connection_close_and_http10() -> None:
    transport, _ = serve(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert b"Connection: close" in transport.out and transport.closed
    transport, _ = serve(b"GET / HTTP/1.0\r\n\r\n")
    assert transport.closed


def test_router_404_405_and_literal_before_parameter() -> None:
    router = Router()
    router.add("GET", "/v1/tasks/{task_id}", lambda r: "task")
    router.add("POST", "/v1/tasks/claim", lambda r: "claim")
    claim = Request("POST", "/v1/tasks/claim", {}, {}, b"")
    assert callable(found := router.match(claim)) and found(claim) == "claim"
    get = Request("GET", "/v1/tasks/7", {}, {}, b"")
    assert callable(router.match(get)) and get.params == {"task_id": "7"}
    assert router.match(Request("DELETE", "/v1/tasks/7", {}, {}, b"")) == 405
    assert router.match(Request("GET", "/v2/tasks", {}, {}, b"")) == 404


def test_malformed_headers_are_400_not_a_traceback() -> None:
    cases = [
        "POST / HTTP/1.1\r\nContent-Length: \u00b2\r\n\r\n".encode("latin-1"),  # isdigit() says yes, int() no
        "POST / HTTP/1.1\r\nContent-Length: \u0663\r\n\r\n".encode("utf-8"),  # an Arabic-Indic digit
        b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x",
        b"POST / HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length:  \r\n\r\n",
    ]
    for data in cases:
        transport, seen = serve(data)
        assert transport.out.startswith(b"HTTP/1.1 400"), data
        assert transport.closed and seen == []


def test_hostile_json_is_a_400() -> None:
    cases = [
        b"[" * 1000 + b"]" * 1000,
        b'{"payload": ' + b"[" * 100 + b"]" * 100 + b"}",
        b'{"payload": NaN}',
        b'{"payload": -Infinity}',
        b'{"payload": "\\ud800"}',
        b'{"payload": "\\uDC00x"}',
        b'{"payload": ' + str(2**70).encode() + b"}",
        b'{"payload": -' + str(2**63).encode() + b"}",
        b'{"payload": "\xed\xa0\x80"}',  # a surrogate encoded in UTF-8 bytes
    ]
    for body in cases:
        with pytest.raises(BadRequest):
            Request("POST", "/", {}, {}, body).json()
    fine = b'{"a": "\\ud83d\\ude00 [not nested] {", "n": ' + str(2**63 - 1).encode() + b', "d": [[[1]]]}'
    assert Request("POST", "/", {}, {}, fine).json() == {"a": "\U0001f600 [not nested] {", "n": 2**63 - 1,
                                                          "d": [[[1]]]}  # fmt: skip
    assert parse_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None


def test_every_500_is_logged_with_its_traceback_never_the_body(caplog: pytest.LogCaptureFixture) -> None:
    def broken(request: Request) -> Response:
        raise KeyError("bug")

    async def broken_later(request: Request) -> Response:
        raise ZeroDivisionError("bug")

    async def run() -> None:
        for handler in (broken, lambda r: broken_later(r)):
            transport = Transport()
            protocol = HttpProtocol(handler, set())
            protocol.connection_made(transport)
            protocol.data_received(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nSECRET-BODY")
            await asyncio.sleep(0.01)
            assert transport.out.startswith(b"HTTP/1.1 500")

    with caplog.at_level(logging.ERROR, logger="colibri.daemon"):
        asyncio.run(run())
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2 and all(r.exc_info for r in errors)
    assert "POST /x" in errors[0].getMessage()
    assert "SECRET-BODY" not in caplog.text


def test_a_client_that_does_not_read_is_not_read_either() -> None:
    transport = Transport()
    handled: list[Request] = []

    def handler(request: Request) -> Response:
        handled.append(request)
        return json_response(200, {"pad": "x" * 1000})

    protocol = HttpProtocol(handler, Gate("t", 10, limits=Limits(max_head=1024, max_body=4096)))
    protocol.connection_made(transport)
    request = b"GET /h HTTP/1.1\r\nHost: h\r\n\r\n"
    protocol.data_received(request * 10)
    assert len(handled) == 10
    protocol.pause_writing()  # the transport's buffer passed its high-water mark
    assert transport.paused  # reading stops at once
    protocol.data_received(request * 400)  # what was already in flight is kept, not handled
    assert len(handled) == 10 and transport.paused
    protocol.resume_writing()
    assert len(handled) > 10


def test_the_answer_a_gone_client_cannot_read_calls_unsent() -> None:
    given_back: list[bool] = []

    async def run() -> None:
        release = asyncio.Event()

        async def claim(request: Request) -> Response:
            await release.wait()
            return Response(200, b"{}", unsent=lambda: given_back.append(True))

        transport = Transport()
        protocol = HttpProtocol(lambda r: claim(r), set())
        protocol.connection_made(transport)
        protocol.data_received(b"POST /v1/tasks/claim HTTP/1.1\r\nHost: h\r\n\r\n")
        await asyncio.sleep(0)
        protocol.connection_lost(None)  # the client hung up during the long-poll
        release.set()
        await asyncio.sleep(0.01)

    asyncio.run(run())
    assert given_back == [True]


def test_gate_caps_connections_and_rate() -> None:
    refused: list[str] = []
    gate = Gate("tenant:t", 2, rate=1, burst=2, refused=lambda name, why: refused.append(why))
    transports = [Transport() for _ in range(3)]
    protocols = [HttpProtocol(lambda r: json_response(200, {}), gate) for _ in transports]
    for protocol, transport in zip(protocols, transports, strict=True):
        protocol.connection_made(transport)
    assert len(gate.conns) == 2 and transports[2].closed and transports[2].out.startswith(b"HTTP/1.1 503")
    protocols[0].data_received(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n" * 5)  # burst 2: the rest is 429 at once
    assert transports[0].out.count(b"HTTP/1.1 200") == 2 and transports[0].out.count(b"HTTP/1.1 429") == 3
    assert refused == ["connections", "rate", "rate", "rate"]
    protocols[0].connection_lost(None)
    assert len(gate.conns) == 1


def test_slow_and_idle_connections_are_closed_by_the_sweep() -> None:
    limits = Limits(request_timeout=5, idle_timeout=60)
    conns: set[HttpProtocol] = set()
    gate = Gate("t", 10, limits=limits, everyone=conns)
    slow, idle = Transport(), Transport()
    for transport in (slow, idle):
        HttpProtocol(lambda r: json_response(200, {}), gate).connection_made(transport)
    start = time.monotonic()
    next(p for p in conns if p._transport is slow).data_received(b"POST / HTTP/1.1\r\nHost:")
    sweep(conns, start + 4)
    assert not slow.closed and not idle.closed
    sweep(conns, start + 6)
    assert slow.closed and slow.out.startswith(b"HTTP/1.1 408") and not idle.closed
    sweep(conns, start + 61)
    assert idle.closed


def test_a_colibri_error_without_a_status_is_a_logged_500(caplog: pytest.LogCaptureFixture) -> None:
    from colibri.daemon.api import error_for
    from colibri.errors import ExternalError

    with caplog.at_level(logging.ERROR, logger="colibri.daemon"):
        response = error_for(ExternalError("the tool broke"))
    assert response.status == 500
    assert len(caplog.records) == 1 and caplog.records[0].exc_info


def test_head_is_answered_as_get_without_the_body_and_the_connection_goes_on() -> None:
    router = Router()
    router.add("GET", "/h", lambda r: json_response(200, {"long": "x" * 50}))
    router.add("POST", "/h", lambda r: json_response(200, {}))

    def handler(request: Request) -> Response:
        found = router.match(request)
        assert callable(found)
        return found(request)  # type: ignore[no-any-return]

    transport = Transport()
    protocol = HttpProtocol(handler, set())
    protocol.connection_made(transport)
    protocol.data_received(b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\nGET /h HTTP/1.1\r\nHost: h\r\n\r\n")
    head, _, rest = bytes(transport.out).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: 61" in head
    assert rest.startswith(b"HTTP/1.1 200")  # no body bytes between the two answers
    assert rest.endswith(b"x" * 50 + b'"}')
    assert router.allowed("/h") == ["GET", "HEAD", "POST"] and router.allowed("/nowhere") == []


def test_204_has_no_content_headers_and_extra_headers_are_sent() -> None:
    answers = iter([Response(204, b"ignored"), Response(405, b"{}", headers={"Allow": "GET, HEAD"})])
    transport = Transport()
    protocol = HttpProtocol(lambda r: next(answers), set())
    protocol.connection_made(transport)
    protocol.data_received(b"POST /c HTTP/1.1\r\nHost: h\r\n\r\n" * 2)
    first, _, second = bytes(transport.out).partition(b"\r\n\r\n")
    assert first == b"HTTP/1.1 204 No Content"
    assert second.startswith(b"HTTP/1.1 405") and b"\r\nAllow: GET, HEAD\r\n" in second


def test_framing_that_two_readers_could_read_two_ways_is_400_and_closed() -> None:
    smuggled = b"GET /second HTTP/1.1\r\nHost: h\r\n\r\n"
    cases = [
        b"Content-Length: 2\r\nContent-Length: 40",
        b"Content-Length: 2, 2",
        b"Content-Length: 2\r\nTransfer-Encoding: chunked",
        b"Transfer-Encoding: gzip",
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip",  # one list: gzip is last
        b"X: a\r\n folded",
        b"X: a\nContent-Length: 40",
        b"X: a\rb",
        b"Content-Length : 2",
    ]
    for head in cases:
        transport, seen = serve(b"POST /first HTTP/1.1\r\nHost: h\r\n" + head + b"\r\n\r\n{}" + smuggled)
        assert transport.out.startswith(b"HTTP/1.1 400"), head
        assert transport.closed and seen == [] and transport.out.count(b"HTTP/1.1") == 1, head


def test_host_exactly_once_on_http11_and_the_absolute_form() -> None:
    bad = [b"", b"Host: a\r\nHost: b\r\n", b"Host: a b\r\n", b"Host: a/b\r\n", b"Host: a:b\r\n", b"Host: x@y\r\n"]
    for data in (b"GET / HTTP/1.1\r\n" + head + b"\r\n" for head in bad):
        transport, seen = serve(data)
        assert transport.out.startswith(b"HTTP/1.1 400") and b"Host" in transport.out and seen == []
    transport, seen = serve(b"GET /old HTTP/1.0\r\n\r\n")
    assert [r.path for r in seen] == ["/old"]
    for host in (b"colibri", b"localhost:8080", b"[::1]:80", b"127.0.0.1", b""):
        transport, seen = serve(b"GET /ok HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        assert [r.path for r in seen] == ["/ok"], host
    transport, seen = serve(b"GET http://colibri/abs?x=1 HTTP/1.1\r\nHost: colibri\r\n\r\n")
    assert [(r.path, r.query) for r in seen] == [("/abs", {"x": "1"})]


def test_a_repeated_query_parameter_is_400_and_the_connection_stays() -> None:
    transport, seen = serve(b"GET /q?a=1&a=2 HTTP/1.1\r\nHost: h\r\n\r\nGET /q?a=&b=2 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert transport.out.startswith(b"HTTP/1.1 400") and not transport.closed
    assert [r.query for r in seen] == [{"a": "", "b": "2"}]


def test_the_api_logs_a_handlers_bug_with_its_traceback_and_counts_the_500(caplog: pytest.LogCaptureFixture) -> None:
    from types import SimpleNamespace

    from colibri.daemon.api import Api
    from colibri.daemon.metrics import Metrics
    from colibri.services.hive.rules import Scope

    daemon = SimpleNamespace(metrics=Metrics(), stopping=lambda: False)
    api = Api(daemon)  # type: ignore[arg-type]

    def broken(request: Request, scope: Scope) -> Response:
        return {"x": 1}[request.body.decode()]  # type: ignore[return-value]  # a KeyError: a bug

    async def broken_later(request: Request, scope: Scope) -> Response:
        raise TypeError("unhashable type: 'dict'")

    api.admin.add("POST", "/now", broken)
    api.admin.add("POST", "/later", broken_later)
    handle = api.handler(Scope("admin"))

    async def run() -> list[int]:
        now = handle(Request("POST", "/now", {}, {}, b"SECRET-BODY"))
        later = await handle(Request("POST", "/later", {}, {}, b"SECRET-BODY"))  # type: ignore[misc]
        return [now.status, later.status]  # type: ignore[union-attr]

    with caplog.at_level(logging.ERROR, logger="colibri.daemon"):
        assert asyncio.run(run()) == [500, 500]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2 and all(r.exc_info for r in errors)
    assert "SECRET-BODY" not in caplog.text  # not even as the KeyError's message
    assert "in broken" in caplog.text and "KeyError: (its message is not logged" in caplog.text
    assert 'colibri_http_requests_total{socket="admin",status="500"} 2' in daemon.metrics.render({})


def test_a_percent_encoded_slash_is_part_of_a_parameter_not_a_segment() -> None:
    router = Router()
    router.add("DELETE", "/v1/tenants/{tenant}/socket", lambda r: "socket")
    request = Request("DELETE", "/v1/tenants/a%2Fb%20c/socket", {}, {}, b"")
    assert callable(router.match(request)) and request.params == {"tenant": "a/b c"}
    assert router.match(Request("DELETE", "/v1/tenants/a/b/socket", {}, {}, b"")) == 404
