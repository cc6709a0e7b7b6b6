"""One SSH channel to a host's colibri, over a kept Transport (``colibri.adapters.ssh_transport``).

``Serve`` speaks the framed JSON of ``colibri.adapters.remote_wire`` to ``<command> remote serve``
on a kept channel: a request, then its answer, one at a time.  ``drain`` and ``envelope`` read a
one-off exec (``colibri ... --json``).  A channel that dies before it answers raises ``Lost`` (the
pool in ``colibri.adapters.ssh`` may retry once).  Nothing sent or received is logged or put in a
message; the remote's stderr is read and dropped.
"""

import contextlib
import time
from collections.abc import Mapping
from typing import Any

import paramiko

from colibri.adapters import remote_wire
from colibri.adapters.ssh_transport import SshTarget
from colibri.errors import CommandTimeout, RemoteError, error_from_api

MAX_OUTPUT = 1 << 20
"""The most a one-off exec (run_json) may print."""


class Lost(Exception):
    """A channel died before it answered (internal: the caller may retry once)."""


class Serve:
    """One channel running ``remote serve``: a request, then its answer, one at a time."""

    def __init__(self, channel: paramiko.Channel, command: str) -> None:
        self.channel = channel
        self.command = command
        self.buffer = bytearray()
        self.next_id = 1

    def alive(self) -> bool:
        channel = self.channel
        return not (channel.closed or channel.eof_received or channel.exit_status_ready())

    def call(self, op: str, args: Mapping[str, Any], deadline: float) -> dict[str, Any]:
        ident, self.next_id = self.next_id, self.next_id + 1
        frame = remote_wire.request(ident, op, args)
        try:
            self.channel.settimeout(max(0.001, deadline - time.monotonic()))
            self.channel.sendall(frame)
        except (OSError, EOFError, paramiko.SSHException):
            raise Lost from None
        answer = remote_wire.decode(self._line(deadline))
        got, result, error = remote_wire.parse_answer(answer)
        if got != ident:
            raise remote_wire.WireError("an answer to another request; the connection is closed")
        if error is not None:
            raise error_from_api(error.get("type"), error.get("code"), str(error["message"])[:2000])
        assert result is not None
        return result

    def _line(self, deadline: float) -> bytes:
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line = bytes(self.buffer[: end + 1])
                del self.buffer[: end + 1]
                return line
            if len(self.buffer) > remote_wire.MAX_FRAME:
                raise remote_wire.WireError("an answer over the frame limit; the connection is closed")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.channel.settimeout(min(left, STDERR_EVERY))
            try:
                drain_stderr(self.channel)
                chunk = self.channel.recv(65536)
            except TimeoutError:
                continue  # the deadline is checked above; stderr is drained meanwhile
            except (OSError, EOFError, paramiko.SSHException):
                raise Lost from None
            if not chunk:
                raise Lost
            self.buffer += chunk

    def exit_status(self, wait: float = 1.0) -> int | None:
        """The remote process's exit status, if it has ended (waiting at most ``wait``)."""
        if self.channel.status_event.wait(wait):
            return self.channel.exit_status
        return None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.channel.close()


STDERR_EVERY = 0.2
"""While an answer is awaited, the remote's stderr is drained this often (seconds)."""


def drain_stderr(channel: paramiko.Channel) -> None:
    """Read and drop what the remote wrote on stderr (its text is never shown): unread, it would
    fill the channel's window and stall its stdout."""
    while channel.recv_stderr_ready():
        channel.recv_stderr(65536)


def lost_message(target: SshTarget, op: str, status: int | None) -> str:
    """Why a fresh channel ended before it answered ``op``, from the remote's exit ``status``."""
    where = f"the SSH link to host {target.name} was lost during {op}"
    if status == 127:
        return f"{where}: the remote command {target.command!r} was not found (exit status 127)"
    if status == 3:
        return f"{where}: its colibri refused its own settings (exit status 3; run colibri config show there)"
    if status is not None and status >= 0:
        return f"{where}: its remote serve exited with status {status}"
    return f"{where} (its remote serve or the connection ended)"


def drain(channel: paramiko.Channel, deadline: float, what: str, seconds: float) -> tuple[bytes, int]:
    """A one-off exec's stdout (at most MAX_OUTPUT bytes) and exit status, by ``deadline``
    (else CommandTimeout naming ``what`` and ``seconds``); its stderr is dropped."""
    out = bytearray()
    channel.shutdown_write()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise CommandTimeout(what, seconds)
        channel.settimeout(min(left, STDERR_EVERY))
        try:
            drain_stderr(channel)
            chunk = channel.recv(65536)
        except TimeoutError:
            continue
        except (OSError, EOFError, paramiko.SSHException):
            raise RemoteError(f"the SSH link was lost during {what}") from None
        if not chunk:
            break
        out += chunk
        if len(out) > MAX_OUTPUT:
            raise RemoteError(f"{what} printed more than {MAX_OUTPUT} bytes; refused")
    left = max(0.001, deadline - time.monotonic())
    if not channel.status_event.wait(left):
        raise CommandTimeout(what, seconds)
    return bytes(out), channel.recv_exit_status()


def envelope(target: SshTarget, line: str, out: bytes, status: int) -> dict[str, Any]:
    """The ``data`` of a one-off exec's JSON envelope; a failure envelope is the ColibriError it names."""
    where = f"host {target.name}"
    if status == 127:
        raise RemoteError(f"{where}: the remote command {target.command!r} was not found (exit status 127)")
    try:
        document = remote_wire.decode(out.strip() or b"null")
    except remote_wire.WireError:
        raise RemoteError(f"{where}: {line[:200]!r} did not print a JSON document (exit status {status})") from None
    if document.get("ok") is True and isinstance(document.get("data"), dict):
        data: dict[str, Any] = document["data"]
        return data
    error = document.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        raise error_from_api(error.get("type"), error.get("code"), error["message"][:2000])
    raise RemoteError(f"{where}: {line[:200]!r} printed an unexpected JSON document (exit status {status})")
