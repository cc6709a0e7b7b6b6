"""The framing of ``colibri remote serve`` (colibri/adapters/remote_wire.py) and its serve loop."""

import io
import json
from collections.abc import Mapping
from typing import Any

import pytest

from colibri.adapters import remote_wire
from colibri.adapters.remote_wire import MAX_FRAME, WireError
from colibri.error_envelope import error_from_api
from colibri.errors import ColibriError, TenantNotFound
from colibri.services.hosts.serve import serve


def test_request_and_answer_round_trip() -> None:
    frame = remote_wire.request(3, "spawn", {"env": "A=1\nB=\u00e9"})
    assert frame.endswith(b"\n") and frame.count(b"\n") == 1 and frame.isascii()
    assert remote_wire.parse_request(remote_wire.read_frame(io.BytesIO(frame)) or {}) == (
        3, "spawn", {"env": "A=1\nB=\u00e9"},
    )  # fmt: skip
    ident, result, error = remote_wire.parse_answer(remote_wire.decode(remote_wire.answer(3, {"ok": 1})))
    assert (ident, result, error) == (3, {"ok": 1}, None)


def test_error_answer_is_the_daemon_envelope() -> None:
    raw = remote_wire.error_answer(9, TenantNotFound("t1"))
    ident, result, error = remote_wire.parse_answer(remote_wire.decode(raw))
    assert (ident, result) == (9, None)
    assert error == {"type": "TenantNotFound", "code": 4, "message": "tenant not found: t1"}
    assert isinstance(error_from_api(error["type"], error["code"], error["message"]), TenantNotFound)


def test_oversized_frame_is_refused_both_ways() -> None:
    with pytest.raises(WireError, match="limit"):
        remote_wire.request(1, "x", {"blob": "a" * MAX_FRAME})
    stream = io.BytesIO(b"{" + b" " * MAX_FRAME + b"}\n")
    with pytest.raises(WireError, match="limit"):
        remote_wire.read_frame(stream)


@pytest.mark.parametrize(
    "raw",
    [b"not json\n", b"[1, 2]\n", b"\xff\xfe\n", b'{"id": 1, "op": "ping", "args": {"x": NaN}}\n',
     b"[" * 100_000 + b"\n"],
)  # fmt: skip
def test_bad_frames_are_refused_without_their_content(raw: bytes) -> None:
    with pytest.raises(WireError) as caught:
        remote_wire.read_frame(io.BytesIO(raw))
    assert "not json" not in str(caught.value) and "NaN" not in str(caught.value)


def test_stream_ending_inside_a_frame() -> None:
    with pytest.raises(WireError, match="inside a frame"):
        remote_wire.read_frame(io.BytesIO(b'{"id": 1'))
    assert remote_wire.read_frame(io.BytesIO(b"")) is None


@pytest.mark.parametrize(
    "frame",
    [{"op": "ping"}, {"id": -1, "op": "ping"}, {"id": True, "op": "ping"}, {"id": 2**60, "op": "ping"},
     {"id": 1, "op": "Ping!"}, {"id": 1, "op": "ping", "args": []}, {"id": 1, "op": "ping", "extra": 1},
     {"id": 1, "op": "../x"}],
)  # fmt: skip
def test_malformed_requests(frame: dict[str, Any]) -> None:
    with pytest.raises(WireError):
        remote_wire.parse_request(frame)


@pytest.mark.parametrize(
    "frame",
    [{"id": 1}, {"id": 1, "result": {}, "error": {"message": "x"}}, {"id": 1, "result": [1]},
     {"id": 1, "error": "boom"}, {"id": 1, "error": {"type": "X"}}],
)  # fmt: skip
def test_malformed_answers(frame: dict[str, Any]) -> None:
    with pytest.raises(WireError):
        remote_wire.parse_answer(frame)


def _serve(data: bytes, handlers: Mapping[str, Any]) -> tuple[list[dict[str, Any]], BaseException | None]:
    out = io.BytesIO()
    error: BaseException | None = None
    try:
        serve(io.BytesIO(data), out, handlers)
    except WireError as exc:
        error = exc
    return [json.loads(line) for line in out.getvalue().splitlines()], error


def test_serve_answers_each_request_in_order_until_eof() -> None:
    def boom(args: Mapping[str, Any]) -> dict[str, Any]:
        raise TenantNotFound(str(args["t"]))

    def bug(args: Mapping[str, Any]) -> dict[str, Any]:
        raise KeyError("SECRET=value")

    handlers = {"ping": lambda args: {"pong": True}, "boom": boom, "bug": bug, "bad": lambda args: {"x": {1}}}
    data = b"".join(
        remote_wire.request(n, op, {"t": "t9"}) for n, op in enumerate(("ping", "boom", "bug", "nope", "bad"), 1)
    )
    answers, error = _serve(data, handlers)
    assert error is None
    assert answers[0] == {"id": 1, "result": {"pong": True}}
    assert answers[1]["error"] == {"type": "TenantNotFound", "code": 4, "message": "tenant not found: t9"}
    assert answers[2]["error"]["message"] == "internal error (KeyError) in op bug"  # never the exception's text
    assert "SECRET" not in json.dumps(answers)
    assert answers[3]["error"]["type"] == "InvalidInput" and "no op 'nope'" in answers[3]["error"]["message"]
    assert answers[4]["error"]["type"] == "WireError" and answers[4]["id"] == 5


def test_serve_answers_a_bad_frame_then_stops() -> None:
    data = remote_wire.request(1, "ping", {}) + b"garbage\n" + remote_wire.request(2, "ping", {})
    answers, error = _serve(data, {"ping": lambda args: {"pong": True}})
    assert isinstance(error, WireError) and isinstance(error, ColibriError) and error.exit_code == 13
    assert [a["id"] for a in answers] == [1, None]  # nothing after the bad frame is read


def test_an_op_streams_progress_from_its_threads_before_its_answer_and_only_its_own() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from colibri.services.hosts.serve import progress_sink

    def streams(args: Mapping[str, Any]) -> dict[str, Any]:
        sink = progress_sink()  # taken in the op's own thread
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda n: sink({"n": n}), range(8)))
        sink({"detail": {1}})  # not JSON: dropped, the op goes on
        return {"done": True}

    def quiet(args: Mapping[str, Any]) -> dict[str, Any]:
        progress_sink()({"n": 99})  # an op run without a sink: nothing is written
        return {"quiet": True}

    data = remote_wire.request(1, "streams", {}) + remote_wire.request(2, "ping", {})
    frames, error = _serve(data, {"streams": streams, "ping": lambda args: {"pong": True}})
    assert error is None
    assert sorted(f["progress"]["n"] for f in frames[:8]) == list(range(8)) and {f["id"] for f in frames[:8]} == {1}
    assert frames[8:] == [{"id": 1, "result": {"done": True}}, {"id": 2, "result": {"pong": True}}]
    assert quiet({}) == {"quiet": True}
