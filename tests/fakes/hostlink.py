"""FakeHostLink: a HostLink (colibri/adapters/ssh.py's seam) that serves a host's op table in
process, through real JSON encoding and decoding both ways, so what crosses is only what JSON
carries, as on the SSH channel.

Every frame is kept, as sent, in ``transcript`` (a secret may appear only inside the request
frames of ``spawn`` and ``write_env``).  Faults:

- ``down = RemoteError(...)``: the host cannot be reached; nothing is sent.
- ``cut_after = N``: the channel is lost after N request frames went out: the (N+1)th request
  reaches nothing, RemoteError.  The ``version`` handshake the orchestrator sends first on a new
  link (is the colibri there the host it was enrolled as?) is not counted.
- ``lose_answer = {"spawn"}``: the op runs to its end on the host, then the channel is lost
  before its answer comes back (RemoteError).
- ``old_ops = {"spawn_many"}``: the host's colibri predates these ops (answered as remote serve
  answers an op it does not know).
- a BaseException raised by the host while it serves (a fault switch of its fake backend, say)
  is the remote process dying with the connection: RemoteError, whatever the host had done
  until then stays done.
"""

import json
from collections.abc import Callable, Mapping
from typing import Any

from colibri.error_envelope import error_from_api
from colibri.errors import ColibriError, InvalidInput, RemoteError
from colibri.services.hosts.serve import NO_OP, progress_to

Op = Callable[[Mapping[str, Any]], dict[str, Any]]


class HostDied(BaseException):
    """Raised inside a host's op (e.g. from its fake backend) to stand for the remote colibri
    killed with its SSH session: not a ColibriError, so nothing on the host catches it."""


class FakeHostLink:
    def __init__(self, name: str, ops: Mapping[str, Op]) -> None:
        self.name = name
        self._ops = ops
        self.transcript: list[tuple[str, str]] = []  # ("request" | "answer", the JSON text)
        self.requests = 0
        self.attempts = 0  # calls, including those that never left (down, cut) and the version handshake
        self.down: ColibriError | None = None
        self.cut_after: int | None = None
        self.lose_answer: set[str] = set()
        self.old_ops: set[str] = set()
        self.progress = 0  # progress frames streamed back

    def ops_sent(self) -> list[str]:
        """The ops sent, but the ``version`` handshake."""
        ops = (json.loads(text)["op"] for kind, text in self.transcript if kind == "request")
        return [op for op in ops if op != "version"]

    def call(
        self,
        op: str,
        args: Mapping[str, Any],
        timeout: float | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        self.attempts += 1
        if self.down is not None:
            raise error_from_api(type(self.down).__name__, self.down.exit_code, str(self.down))
        if self.cut_after is not None and self.requests >= self.cut_after:
            raise RemoteError(f"host {self.name}: the SSH channel was lost")
        frame = json.dumps({"op": op, "args": args}, ensure_ascii=True, allow_nan=False)
        self.transcript.append(("request", frame))
        self.requests += op != "version"
        request = json.loads(frame)
        handler = self._ops.get(request["op"])

        def sink(item: Mapping[str, Any]) -> None:  # a progress frame, through JSON, as on the channel
            text = json.dumps({"progress": dict(item)}, ensure_ascii=True, allow_nan=False)
            self.transcript.append(("progress", text))
            self.progress += 1
            if on_progress is not None:
                on_progress(json.loads(text)["progress"])

        try:
            if request["op"] in self.old_ops:
                raise InvalidInput(f"{NO_OP} {request['op']!r} (is it older than the orchestrator's?)")
            if handler is None:
                raise RemoteError(f"host {self.name} has no op {request['op']!r}")
            with progress_to(sink):
                reply: dict[str, Any] = {"ok": True, "data": handler(request["args"])}
        except ColibriError as exc:
            reply = {"ok": False, "error": {"type": type(exc).__name__, "code": exc.exit_code, "message": exc.message}}
        except HostDied:
            raise RemoteError(f"host {self.name}: the SSH channel was lost") from None
        if request["op"] in self.lose_answer:
            raise RemoteError(f"host {self.name}: the SSH channel was lost")
        answer = json.dumps(reply, ensure_ascii=True, allow_nan=False)
        self.transcript.append(("answer", answer))
        decoded = json.loads(answer)
        if not decoded["ok"]:
            error = decoded["error"]
            raise error_from_api(error["type"], error["code"], error["message"])
        data: dict[str, Any] = decoded["data"]
        return data
