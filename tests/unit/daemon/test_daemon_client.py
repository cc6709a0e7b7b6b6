"""The admin client against a scripted Unix-socket server: a lost answer is retried idempotently."""

import json
import socket
import threading
from pathlib import Path

import pytest

from colibri import errors
from colibri.adapters.daemon_client import AnswerLost, DaemonClient, _error_from
from colibri.daemon.api import error_for
from colibri.errors import Conflict


def serve(path: Path, answers: list[bytes | None], seen: list[dict[str, object]]) -> threading.Thread:
    """Accept one connection per answer; read a request; answer it, or (None) hang up unanswered."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)

    def run() -> None:
        with listener:
            for answer in answers:
                conn, _ = listener.accept()
                with conn:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += conn.recv(65536)
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                      if line.lower().startswith(b"content-length")))  # fmt: skip
                    while len(body) < length:
                        body += conn.recv(65536)
                    seen.append(json.loads(body))
                    if answer is not None:
                        conn.sendall(answer)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def http(status: int, body: object) -> bytes:
    data = json.dumps(body).encode()
    return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (status, len(data), data)


def test_a_lost_submit_answer_is_retried_with_the_same_key(tmp_path: Path) -> None:
    seen: list[dict[str, object]] = []
    task = {"id": 7, "state": "queued", "created": False}
    thread = serve(tmp_path / "s", [None, None, http(200, task)], seen)
    result = DaemonClient(tmp_path / "s", timeout=5).submit("echo", {"a": 1}, "acme")
    thread.join(5)
    assert result == task and len(seen) == 3
    keys = {str(body["idempotency_key"]) for body in seen}
    assert len(keys) == 1 and len(keys.pop()) >= 16  # one key, made up by the client, sent each time


def test_a_given_key_is_sent_and_a_conflict_is_not_retried(tmp_path: Path) -> None:
    seen: list[dict[str, object]] = []
    conflict = {"error": {"type": "Conflict", "code": 5, "message": "used with another body"}}
    thread = serve(tmp_path / "s", [http(409, conflict)], seen)
    with pytest.raises(Conflict, match="another body"):
        DaemonClient(tmp_path / "s", timeout=5).submit("echo", 1, idempotency_key="order-17")
    thread.join(5)
    assert [body["idempotency_key"] for body in seen] == ["order-17"]


def test_retries_end(tmp_path: Path) -> None:
    seen: list[dict[str, object]] = []
    thread = serve(tmp_path / "s", [None, None, None], seen)
    with pytest.raises(AnswerLost):
        DaemonClient(tmp_path / "s", timeout=5).submit("echo", 1)
    thread.join(5)
    assert len(seen) == 3


def _every_error() -> list[type[errors.ColibriError]]:
    found, todo = [], [errors.ColibriError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


def test_every_error_the_daemon_sends_comes_back_as_itself_with_its_code_and_message() -> None:
    classes = _every_error()
    assert errors.ResultTooLarge in classes and AnswerLost in classes  # defined in errors.py and elsewhere
    for cls in classes:
        sent: errors.ColibriError = cls.__new__(cls)
        errors.ColibriError.__init__(sent, f"a {cls.__name__} happened")
        envelope = json.loads(error_for(sent).body)
        back = _error_from(envelope, 400)
        assert type(back) is cls, cls
        assert back.exit_code == sent.exit_code and str(back) == f"a {cls.__name__} happened"


def test_an_envelope_keeps_its_code_and_an_unknown_type_is_a_daemon_error() -> None:
    worst = _error_from({"error": {"type": "PartialFailure", "code": 12, "message": "2 failed"}}, 400)
    assert isinstance(worst, errors.PartialFailure) and worst.exit_code == 12
    unknown = _error_from({"error": {"type": "Bogus", "code": 4, "message": "?"}}, 404)
    assert type(unknown) is errors.DaemonError and unknown.exit_code == errors.DaemonError.exit_code
    assert (
        type(_error_from({"error": {"type": "ColibriError", "code": True, "message": "m"}}, 500)) is errors.ColibriError
    )
    assert _error_from({"error": {"type": "ColibriError", "code": True, "message": "m"}}, 500).exit_code == 1
    assert type(_error_from("not an envelope", 502)) is errors.DaemonError
