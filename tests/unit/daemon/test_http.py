"""The HTTP/1.1 protocol on a fake transport: parsing, limits, pipelining, keep-alive."""

import asyncio
from typing import Any

from colibri.daemon.http import MAX_BODY, HttpProtocol, Request, Response, Router, json_response


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = b""
        self.closed = False

    def write(self, data: Any) -> None:
        self.out += bytes(data)

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


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
    data = b"POST /a?x=1 HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET /b HTTP/1.1\r\nHost: h\r\n\r\n"
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
        b"GET /" + b"x" * 17000: b"431",
    }
    for data, status in cases.items():
        transport, seen = serve(data)
        assert transport.out.startswith(b"HTTP/1.1 " + status), data[:40]
        assert transport.closed and seen == []


def test_connection_close_and_http10() -> None:
    transport, _ = serve(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
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
