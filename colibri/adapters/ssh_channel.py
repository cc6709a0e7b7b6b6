"""One SSH channel to a host's colibri, over a kept Transport (``colibri.adapters.ssh_transport``).

``Serve`` speaks the framed JSON of ``colibri.adapters.remote_wire`` to ``<command> remote serve``
on a kept channel: a request, then its answer, one at a time (an op that streams sends progress
frames before its answer).  ``drain`` and ``envelope`` read a one-off exec (``colibri ... --json``).
A channel that dies before it answers raises ``Lost`` (the pool in ``colibri.adapters.ssh`` may
retry once).  Nothing sent or received is logged or put in a message.

Everything the remote writes is bounded in bytes and in time: a frame by ``MAX_FRAME``, the frames
of one answer by ``MAX_PROGRESS``, a one-off exec's stdout by ``MAX_OUTPUT``, and its stderr
(``Stderr``) by ``STDERR_MAX`` bytes and ``STDERR_READS`` reads per channel (read a bounded slice at
a time between the waits for stdout), of which the first ``STDERR_KEEP`` bytes are kept for the
error line (sanitised); every read and write waits at most until the call's deadline.
"""

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import paramiko

from colibri.adapters import remote_wire
from colibri.adapters.ssh_transport import SshTarget
from colibri.error_envelope import error_from_api
from colibri.errors import CommandTimeout, RemoteError

MAX_OUTPUT = 1 << 20
"""The most a one-off exec (run_json) may print."""
MAX_PROGRESS = 8192
"""The most progress frames one answer may be preceded by (a spawn of 256 tenants sends ~3,000)."""
STDERR_MAX = 64 << 20
"""The most of the remote's stderr read (and dropped) on one channel; past it, or past
``STDERR_READS`` reads, stderr is left unread: the remote then stalls on its full window, the
call ends at its deadline, and the channel is never reused."""
STDERR_READS = 4096
"""The most reads of the remote's stderr on one channel (each takes what is there, up to 64 KiB:
sshd's packets are 32 KiB, so a real flood meets STDERR_MAX first; a peer that sends a byte a
packet meets this)."""
STDERR_PASS = 64
"""The most stderr reads between two waits for stdout (the deadline is checked between them)."""
STDERR_KEEP = 4096
"""The first bytes of the remote's stderr kept for an error line (the rest is read and dropped)."""
STDERR_EVERY = 0.2
"""While an answer is awaited, the remote's stderr is drained this often (seconds)."""
STDERR_SHOWN = 300
"""The longest stderr excerpt put in an error line (characters)."""

Progress = Callable[[dict[str, Any]], None]


class Lost(Exception):
    """A channel died before it answered (internal: the caller may retry once)."""


class Stderr:
    """What one channel's remote wrote on stderr: the first ``STDERR_KEEP`` bytes kept, at most
    ``STDERR_MAX`` read in all (unread, it would fill the channel's window and stall its stdout;
    read without a bound, a remote that floods it would keep the reader past its deadline)."""

    def __init__(self) -> None:
        self.head = bytearray()
        self.read = 0
        self.reads = 0

    @property
    def flooded(self) -> bool:
        return self.read >= STDERR_MAX or self.reads >= STDERR_READS

    def drain(self, channel: paramiko.Channel) -> None:
        for _pass in range(STDERR_PASS):
            if self.flooded or not channel.recv_stderr_ready():
                return
            chunk = channel.recv_stderr(min(65536, STDERR_MAX - self.read))
            self.reads += 1
            if not chunk:
                return
            self.read += len(chunk)
            room = STDERR_KEEP - len(self.head)
            if room > 0:
                self.head += chunk[:room]

    def line(self) -> str | None:
        """The remote's own one-line reason, sanitised (printable ASCII only, at most
        ``STDERR_SHOWN`` characters), or None when it wrote nothing: its last non-empty line
        (a traceback's, a shell's "not found"), or the first when the kept head was cut."""
        text = self.head.decode("utf-8", "replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            return None
        cut = self.read > len(self.head) and not text.endswith("\n")
        chosen = lines[0] if cut and len(lines) > 1 else lines[-1]
        shown = "".join(c if " " <= c <= "~" else "?" for c in chosen)
        return shown[:STDERR_SHOWN]

    def suffix(self) -> str:
        line = self.line()
        return "" if line is None else f"; its stderr said: {line}"


def send_all(channel: paramiko.Channel, data: bytes, deadline: float) -> None:
    """Write ``data`` by ``deadline`` (TimeoutError past it, even when the remote reads a byte at
    a time); a closed channel is Lost."""
    view = memoryview(data)
    while view:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        channel.settimeout(left)
        try:
            sent = channel.send(bytes(view[:65536]))
        except TimeoutError:
            raise
        except (OSError, EOFError, paramiko.SSHException):
            raise Lost from None
        if sent <= 0:
            raise Lost
        view = view[sent:]


class Serve:
    """One channel running ``remote serve``: a request, then its answer, one at a time."""

    def __init__(self, channel: paramiko.Channel, command: str) -> None:
        self.channel = channel
        self.command = command
        self.buffer = bytearray()
        self.next_id = 1
        self.stderr = Stderr()

    def alive(self) -> bool:
        channel = self.channel
        flooded = self.stderr.flooded  # never reused: its window may be full of unread stderr
        return not (flooded or channel.closed or channel.eof_received or channel.exit_status_ready())

    def call(
        self, op: str, args: Mapping[str, Any], deadline: float, on_progress: Progress | None = None
    ) -> dict[str, Any]:
        """The answer to one request, by ``deadline`` (TimeoutError); progress frames before it
        go to ``on_progress`` (at most ``MAX_PROGRESS``; one without a taker is a WireError)."""
        ident, self.next_id = self.next_id, self.next_id + 1
        send_all(self.channel, remote_wire.request(ident, op, args), deadline)
        shown = 0
        while True:
            raw = self._line(deadline)
            frame = remote_wire.decode(raw)
            progress = remote_wire.parse_progress(frame, ident)
            if progress is None:
                break
            if on_progress is None:
                raise remote_wire.WireError("a progress frame no request asked for; the connection is closed")
            if len(raw) > remote_wire.MAX_PROGRESS_FRAME:
                raise remote_wire.WireError("a progress frame over its size limit; the connection is closed")
            shown += 1
            if shown > MAX_PROGRESS:
                raise remote_wire.WireError(f"more than {MAX_PROGRESS} progress frames; the connection is closed")
            on_progress(progress)
        got, result, error = remote_wire.parse_answer(frame)
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
                self.stderr.drain(self.channel)
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
            with contextlib.suppress(Exception):
                self.stderr.drain(self.channel)  # what it said before it ended
            return self.channel.exit_status
        return None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.channel.close()


def lost_message(target: SshTarget, op: str, status: int | None, stderr: Stderr | None = None) -> str:
    """Why a fresh channel ended before it answered ``op``, from the remote's exit ``status`` (and
    the line it left on stderr, sanitised)."""
    where = f"the SSH link to host {target.name} was lost during {op}"
    said = "" if stderr is None else stderr.suffix()
    if status == 127:
        return f"{where}: the remote command {target.command!r} was not found (exit status 127){said}"
    if status == 3:
        return f"{where}: its colibri refused its own settings (exit status 3; run colibri config show there){said}"
    if status is not None and status >= 0:
        return f"{where}: its remote serve exited with status {status}{said}"
    return f"{where} (its remote serve or the connection ended){said}"


def drain(channel: paramiko.Channel, deadline: float, what: str, seconds: float) -> tuple[bytes, int, Stderr]:
    """A one-off exec's stdout (at most MAX_OUTPUT bytes), exit status and stderr (bounded), by
    ``deadline`` (else CommandTimeout naming ``what`` and ``seconds``)."""
    out = bytearray()
    stderr = Stderr()
    channel.shutdown_write()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise CommandTimeout(what, seconds)
        channel.settimeout(min(left, STDERR_EVERY))
        try:
            stderr.drain(channel)
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
    with contextlib.suppress(Exception):
        stderr.drain(channel)
    return bytes(out), channel.recv_exit_status(), stderr


def envelope(target: SshTarget, line: str, out: bytes, status: int, stderr: Stderr | None = None) -> dict[str, Any]:
    """The ``data`` of a one-off exec's JSON envelope; a failure envelope is the ColibriError it names."""
    where = f"host {target.name}"
    said = "" if stderr is None else stderr.suffix()
    if status == 127:
        raise RemoteError(f"{where}: the remote command {target.command!r} was not found (exit status 127){said}")
    try:
        document = remote_wire.decode(out.strip() or b"null")
    except remote_wire.WireError:
        raise RemoteError(
            f"{where}: {line[:200]!r} did not print a JSON document (exit status {status}){said}"
        ) from None
    if document.get("ok") is True and isinstance(document.get("data"), dict):
        data: dict[str, Any] = document["data"]
        return data
    error = document.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        raise error_from_api(error.get("type"), error.get("code"), error["message"][:2000])
    raise RemoteError(f"{where}: {line[:200]!r} printed an unexpected JSON document (exit status {status}){said}")
