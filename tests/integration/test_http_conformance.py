"""The daemon speaks HTTP/1.1 as clients expect it (RFC 9110, RFC 9112), on its real sockets.

A real daemon process; raw bytes on the admin socket and a tenant's socket, so that what is
checked is what goes over the wire: HEAD, 405 with ``Allow``, 204 without a body's headers, the
framing rules that keep a second request from being smuggled in a first one's body (RFC 9112
§6.3), ``Host`` (RFC 9112 §3.2), query values refused (never clamped) out of their documented
bounds, and a JSON body whose ``action`` is not a string.
"""

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.hive_harness import Hive, Raw

pytestmark = pytest.mark.integration
TENANT = "conform"


@pytest.fixture(name="hive", scope="module")
def hive_fixture() -> Iterator[Hive]:
    hive = Hive()
    hive.tenant(TENANT)
    hive.start()
    try:
        yield hive
    finally:
        assert hive.stop() == 0
        hive.close()


def admin(hive: Hive) -> Path:
    return hive.root / "run" / "admin.sock"


def exchange(path: Path, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` as it is and read until the daemon closes the connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def responses(data: bytes, methods: list[str]) -> list[tuple[int, dict[str, list[str]], bytes]]:
    """Split the bytes of answers to requests sent with ``methods``: a HEAD answer has no body, nor
    does a 204 (RFC 9112 §6.3 rule 1); any other is framed by its Content-Length."""
    found = []
    for method in methods:
        end = data.find(b"\r\n\r\n")
        assert end > 0, f"no complete answer left for {method}: {data[:200]!r}"
        status_line, *lines = data[:end].decode("latin-1").split("\r\n")
        version, status, _ = status_line.split(" ", 2)
        assert version == "HTTP/1.1"
        headers: dict[str, list[str]] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        length = 0
        if method != "HEAD" and int(status) != 204:
            length = int(headers["content-length"][0])
        found.append((int(status), headers, data[end + 4 : end + 4 + length]))
        data = data[end + 4 + length :]
    assert data == b"", f"bytes after the last answer: {data[:200]!r}"
    return found


def request(method: str, target: str, body: bytes | None = None, close: bool = False, host: bool = True) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\n" + ("Host: colibri\r\n" if host else "")
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + (body or b"")


def test_an_action_that_is_not_a_string_is_a_400_not_a_500(hive: Hive) -> None:
    raw = Raw(admin(hive))
    try:
        for action in ({}, [], ["reload-secrets"], {"reload-secrets": 1}, 7, None, True):
            status, answer = raw("POST", f"/v1/tenants/{TENANT}/actions", {"action": action})
            assert status == 400, (action, status, answer)
            assert answer["error"]["type"] == "InvalidInput"
        status, answer = raw("POST", f"/v1/tenants/{TENANT}/actions", {"action": "reload-secrets"})
        assert status == 200 and answer["action"] == "reload-secrets"
    finally:
        raw.close()
    assert "internal error" not in hive.log()


@pytest.mark.parametrize(
    ("socket_kind", "target"),
    [
        ("admin", "/health"),
        ("admin", "/metrics"),
        ("admin", "/v1/agents"),
        ("admin", "/v1/tasks?limit=5"),
        ("admin", "/v1/tasks/999999"),
        ("agent", "/health"),
        ("agent", "/v1/tasks/999999"),
    ],
)
def test_head_answers_as_get_without_a_body(hive: Hive, socket_kind: str, target: str) -> None:
    path = admin(hive) if socket_kind == "admin" else hive.socket(TENANT)
    data = exchange(path, request("HEAD", target) + request("GET", target) + request("HEAD", target, close=True))
    (head_status, head, nothing), (get_status, get, body), (again, _, _) = responses(data, ["HEAD", "GET", "HEAD"])
    assert head_status == get_status == again  # the connection stays usable after a HEAD
    assert nothing == b""
    assert head["content-type"] == get["content-type"]
    # GET /health's uptime may have grown a digit between the two: the length is the GET's, give or take
    assert abs(int(head["content-length"][0]) - len(body)) <= 2 and int(head["content-length"][0]) > 0


@pytest.mark.parametrize(
    ("socket_kind", "method", "target", "allow"),
    [
        ("admin", "DELETE", "/health", "GET, HEAD"),
        ("admin", "POST", "/metrics", "GET, HEAD"),
        ("admin", "PUT", "/v1/tasks", "GET, HEAD, POST"),
        ("admin", "GET", f"/v1/tenants/{TENANT}/socket", "DELETE, POST"),
        ("admin", "PATCH", "/v1/tasks/1", "GET, HEAD"),
        ("agent", "GET", "/v1/tasks", "POST"),
        ("agent", "GET", "/v1/agent/heartbeat", "POST"),
        ("agent", "OPTIONS", "/v1/tasks/1/result", "POST"),
    ],
)
def test_a_known_path_with_another_method_is_405_with_allow(
    hive: Hive, socket_kind: str, method: str, target: str, allow: str
) -> None:
    path = admin(hive) if socket_kind == "admin" else hive.socket(TENANT)
    ((status, headers, body),) = responses(exchange(path, request(method, target, close=True)), [method])
    assert status == 405
    assert headers["allow"] == [allow]
    assert json.loads(body)["error"]["type"] == "InvalidInput"


def test_204_has_neither_content_length_nor_content_type(hive: Hive) -> None:
    path = hive.socket(TENANT)
    register = json.dumps({"agent_id": "conform-204", "capabilities": [{"name": "nothing-here"}]}).encode()
    claim = json.dumps({"agent_id": "conform-204", "wait": 0}).encode()
    data = exchange(path, request("POST", "/v1/agent/register", register) + request("POST", "/v1/tasks/claim", claim)
                    + request("GET", "/health", close=True))  # fmt: skip
    (registered, _, _), (status, headers, body), (after, _, _) = responses(data, ["POST", "POST", "GET"])
    assert registered == 200 and after == 200
    assert status == 204 and body == b""
    assert "content-length" not in headers and "content-type" not in headers


SMUGGLED = request("GET", "/v1/agents", close=True)  # would be answered if the framing were misread


@pytest.mark.parametrize(
    "head",
    [
        b"Content-Length: 2\r\nContent-Length: 60",  # two different lengths
        b"Content-Length: 2, 60",  # a list of them
        b"Content-Length: 2\r\nTransfer-Encoding: chunked",  # both framings (RFC 9112 §6.3 rule 3)
        b"Transfer-Encoding: chunked\r\nContent-Length: 2",
        b"Transfer-Encoding: gzip\r\nContent-Length: 2",  # chunked not final (rule 4)
        b"Transfer-Encoding: chunked, identity",
        b"Content-Length: +2",
        b"Content-Length: 0x2",
        b"Content-Length: 2 2",
        b"Content-Length: -2",
        b"Content-Length:",
        b"Content-Length : 2",  # whitespace before the colon (RFC 9112 §5.1)
        b"X-Folded: a\r\n Content-Length: 60",  # obs-fold (RFC 9112 §5.2)
        b"X-Folded: a\r\n\tb",
        b"X-Bare-LF: a\nContent-Length: 60",  # a bare LF inside a field line
        b"X-Bare-CR: a\rContent-Length: 60",
        b"X-Nul: a\x00b",
    ],
)
def test_ambiguous_framing_is_400_and_closes_the_connection(hive: Hive, head: bytes) -> None:
    for path in (admin(hive), hive.socket(TENANT)):
        data = exchange(path, b"POST /v1/tasks HTTP/1.1\r\nHost: colibri\r\n" + head + b"\r\n\r\n{}" + SMUGGLED)
        assert data.count(b"HTTP/1.1 ") == 1, data  # one answer: nothing after the bad request was read
        ((status, headers, body),) = responses(data, ["POST"])
        assert status in (400, 501), data
        assert headers["connection"] == ["close"]
        assert json.loads(body)["error"]["code"] == 7


def test_chunked_alone_is_501_and_closes(hive: Hive) -> None:
    data = exchange(admin(hive), b"POST /v1/tasks HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n"
                    b"0\r\n\r\n" + SMUGGLED)  # fmt: skip
    ((status, headers, _),) = responses(data, ["POST"])
    assert status == 501 and headers["connection"] == ["close"]


def test_equal_duplicate_content_length_is_one_length(hive: Hive) -> None:
    """RFC 9110 §8.6: identical duplicates may be taken as one value; the request is read once."""
    body = json.dumps({"action": "reload-secrets"}).encode()
    target = f"/v1/tenants/{TENANT}/actions"
    head = f"POST {target} HTTP/1.1\r\nHost: c\r\nContent-Length: {len(body)}\r\nContent-Length: {len(body)}\r\n\r\n"
    data = exchange(admin(hive), head.encode() + body + request("GET", "/health", close=True))
    assert [status for status, _, _ in responses(data, ["POST", "GET"])] == [200, 200]


def test_host_is_required_on_http11_and_only_once(hive: Hive) -> None:
    for path in (admin(hive), hive.socket(TENANT)):
        ((status, headers, body),) = responses(exchange(path, request("GET", "/health", host=False)), ["GET"])
        assert status == 400 and headers["connection"] == ["close"] and b"Host" in body
        twice = b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
        ((status, _, _),) = responses(exchange(path, twice), ["GET"])
        assert status == 400
        ((status, _, _),) = responses(exchange(path, b"GET /health HTTP/1.0\r\n\r\n"), ["GET"])
        assert status == 200  # HTTP/1.0 has no Host requirement


@pytest.mark.parametrize(
    "target",
    [
        "/v1/tasks?limit=0",
        "/v1/tasks?limit=5000",
        "/v1/tasks?limit=-1",
        "/v1/tasks?limit=abc",
        "/v1/tasks?limit=1.5",
        "/v1/tasks?limit=",
        "/v1/tasks?limit=1&limit=2",
        "/v1/tasks?state=queued&state=failed",
        "/v1/tasks?state=nope",
        "/v1/agents?state=nope",
        "/v1/agents?tenant=a&tenant=b",
        "/v1/agents?tenant=ALL",
        "/v1/tasks?tenant=a%2Fb",
        "/v1/tasks?tenant=",
        "/v1/tasks/1?wait=-5",
        "/v1/tasks/1?wait=31",
        "/v1/tasks/1?wait=nan",
        "/v1/tasks/1?wait=inf",
        "/v1/tasks/1?wait=abc",
        "/v1/tasks/1?wait=",
        "/v1/tasks/1?wait=1&wait=2",
        "/v1/tasks/abc",
        "/v1/tasks/1234567890123456789",
    ],
)
def test_query_values_out_of_their_bounds_are_400_never_clamped(hive: Hive, target: str) -> None:
    raw = Raw(admin(hive))
    try:
        status, answer = raw("GET", target)
    finally:
        raw.close()
    assert status == 400, (target, status, answer)
    assert answer["error"]["code"] == 7  # InvalidInput (or InvalidTenantId)


def test_query_values_within_their_bounds_are_taken(hive: Hive) -> None:
    raw = Raw(admin(hive))
    try:
        for target in ("/v1/tasks?limit=1", "/v1/tasks?limit=1000", "/v1/tasks?state=queued", "/v1/agents?state=lost"):
            assert raw("GET", target)[0] == 200, target
        for target in ("/v1/tasks/999999?wait=0", "/v1/tasks/999999?wait=30", "/v1/tasks/999999?wait=0.5"):
            assert raw("GET", target)[0] == 404, target  # the task does not exist; the wait was valid
    finally:
        raw.close()


@pytest.mark.parametrize("wait", [-5, 31, "5", None, True, [1]])
def test_a_claim_wait_out_of_its_bounds_is_400(hive: Hive, wait: object) -> None:
    raw = Raw(hive.socket(TENANT))
    try:
        assert raw("POST", "/v1/agent/register", {"agent_id": "conform-wait"})[0] == 200
        status, answer = raw("POST", "/v1/tasks/claim", {"agent_id": "conform-wait", "wait": wait})
    finally:
        raw.close()
    assert status == 400, (wait, status, answer)


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("POST", "/v1/tenants/all/socket"),
        ("DELETE", "/v1/tenants/12345/socket"),
        ("DELETE", "/v1/tenants/-x/socket"),
        ("POST", "/v1/tenants/" + "a" * 33 + "/actions"),
        ("POST", "/v1/lanes/ALL"),
    ],
)
def test_path_parameters_outside_their_pattern_are_400(hive: Hive, method: str, target: str) -> None:
    raw = Raw(admin(hive))
    try:
        status, answer = raw(method, target, {"action": "reload-secrets"} if "actions" in target else None)
    finally:
        raw.close()
    assert status == 400, (target, status, answer)


def test_an_encoded_slash_in_a_tenant_id_is_a_400_not_another_route(hive: Hive) -> None:
    raw = Raw(admin(hive))
    try:
        status, answer = raw("DELETE", "/v1/tenants/a%2Fb/socket")
    finally:
        raw.close()
    assert status == 400 and "invalid tenant id" in answer["error"]["message"], (status, answer)


def _first_answer(path: Path, data: bytes, timeout: float) -> tuple[float, bytes]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        started = time.monotonic()
        sock.sendall(data)
        try:
            answer = sock.recv(65536)
        except TimeoutError:
            answer = b""
        return time.monotonic() - started, answer


@pytest.mark.parametrize(
    "data",
    [
        b"GET /health HTTP/1.1\nHost: x\n\n",  # a head ended by bare LFs (review 9, F6)
        b"GET /health HTTP/1.1\r\nHost: x\n\n",
        b"GET /health HTTP/1.1\r\nX: a\rb",  # a bare CR, the head not yet complete
        b"GET /health HTTP/1.1\r\nX: a\x00",
        b"GET /health HTTP/1.1\r\n Folded: a\r\n",
        b"GET /health HTTP/1.1\r\nNo colon here\r\n",
        b"GET /health\r\n",  # a malformed request line, the rest of the head never comes
    ],
)
def test_a_bad_head_is_refused_at_once_not_held(hive: Hive, data: bytes) -> None:
    """A head's errors are found as its bytes arrive: a 400 within a second, not the request
    timeout's 408 thirty seconds later (RFC 9112 §2.2: refuse a bare LF, or read it; never hold)."""
    took, answer = _first_answer(hive.socket(TENANT), data, timeout=5.0)
    assert answer.startswith(b"HTTP/1.1 400 "), (round(took, 1), answer[:80])
    assert b"Connection: close" in answer and took < 2.0


@pytest.mark.parametrize("method", ["BREW", "get", "PROPFIND"])
def test_an_unknown_method_is_501(hive: Hive, method: str) -> None:
    """RFC 9110 §9.1, §15.6.2: a method the server does not recognise is 501 (405, with Allow, is
    for a method of RFC 9110 the path lacks; test_a_known_path_with_another_method_is_405_with_allow)."""
    for path in (admin(hive), hive.socket(TENANT)):
        data = exchange(path, request(method, "/health", close=True))
        ((status, headers, body),) = responses(data, [method])
        assert status == 501, data
        assert "allow" not in headers
        assert json.loads(body)["error"] == {
            "type": "InvalidInput", "code": 7, "message": f"method {method} is not implemented"
        }  # fmt: skip
