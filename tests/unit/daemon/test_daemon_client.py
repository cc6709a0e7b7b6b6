"""The admin client against a scripted Unix-socket server: a lost answer is retried idempotently."""

import json
import socket
import threading
from pathlib import Path

import pytest

from colibri.adapters.daemon_client import AnswerLost, DaemonClient
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
