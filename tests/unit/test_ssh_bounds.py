"""Every read from a remote peer is bounded in bytes and in time (review R8 and its siblings): a
remote that floods stderr, trickles its window, streams progress without end or never answers
the exec request still leaves the caller at its deadline with one clear error.  Fakes stand in
for paramiko's Channel and Transport at the adapter's seam."""

import threading
import time
from pathlib import Path

import paramiko
import pytest

from colibri.adapters import remote_wire, ssh, ssh_channel
from colibri.adapters.ssh_transport import SshTarget
from colibri.errors import CommandTimeout, RemoteError

TARGET = SshTarget("osa", "root", "192.0.2.10", 22, ("ssh-ed25519 AAAA",), "colibri")


class Runaway(BaseException):
    """The fake was driven far past any bound: the reader never got back to its deadline (raised
    past every except clause so the test ends)."""


class FakeChannel:
    """A remote process on a channel: ``stdout`` chunks to hand out (then EOF when ``eof``, else a
    timeout per recv), ``stderr`` bytes (``flood``: an endless stream), ``exit`` its status."""

    def __init__(self, stdout: list[bytes] | None = None, stderr: bytes = b"", *, eof: bool = False) -> None:
        self.stdout = list(stdout or [])
        self.stderr = bytearray(stderr)
        self.flood = False
        self.eof = eof
        self.exit: int | None = None
        self.closed = self.eof_received = False
        self.status_event = threading.Event()
        self.sent = bytearray()
        self.window = 1 << 30  # bytes the remote will take, one per send once it is small
        self.sends = self.stderr_reads = 0
        self.exec_answered = threading.Event()
        self.exec_answered.set()

    @property
    def exit_status(self) -> int:
        return -1 if self.exit is None else self.exit

    def settimeout(self, seconds: float) -> None:
        pass

    def exec_command(self, command: str) -> None:
        self.exec_answered.wait()  # paramiko waits for sshd's answer without a bound
        if self.closed:
            raise paramiko.SSHException("Channel closed.")

    def shutdown_write(self) -> None:
        pass

    def exit_status_ready(self) -> bool:
        return self.exit is not None

    def recv_exit_status(self) -> int:
        return self.exit_status

    def send(self, data: bytes) -> int:
        self.sends += 1
        if self.sends > 5000:
            raise Runaway
        if self.window < len(data):
            time.sleep(0.001)  # the remote opens its window a byte at a time
            self.sent += data[:1]
            return 1
        self.sent += data
        return len(data)

    def sendall(self, data: bytes) -> None:  # paramiko's: send until all of it is out
        while data:
            data = data[self.send(data) :]

    def recv_stderr_ready(self) -> bool:
        return self.flood or bool(self.stderr)

    def recv_stderr(self, size: int) -> bytes:
        self.stderr_reads += 1
        if self.stderr_reads > 200_000:
            raise Runaway
        if self.flood:
            return b"x"
        chunk = bytes(self.stderr[:size])
        del self.stderr[:size]
        return chunk

    def recv(self, size: int) -> bytes:
        if self.stdout:
            return self.stdout.pop(0)
        if self.eof:
            if self.exit is not None:
                self.status_event.set()
            return b""
        raise TimeoutError

    def close(self) -> None:
        self.closed = True
        self.exec_answered.set()
        self.status_event.set()


class FakeTransport:
    def __init__(self, channel: FakeChannel) -> None:
        self.channel = channel
        self.closed = False

    def is_active(self) -> bool:
        return not self.closed

    def open_session(self, timeout: float | None = None) -> FakeChannel:
        return self.channel

    def close(self) -> None:
        self.closed = True


def hosts_with(channel: FakeChannel, monkeypatch: pytest.MonkeyPatch) -> ssh.SshHosts:
    hosts = ssh.SshHosts(Path("/nonexistent"), connect_timeout=1.0, op_timeout=5.0)
    monkeypatch.setattr(hosts, "_connect", lambda target: FakeTransport(channel))
    return hosts


def test_a_one_off_exec_flooding_stderr_still_times_out() -> None:
    channel = FakeChannel()
    channel.flood = True
    with pytest.raises(CommandTimeout, match=r"timed out after 0\.3 s: version on host osa"):
        ssh_channel.drain(channel, time.monotonic() + 0.3, "version on host osa", 0.3)  # type: ignore[arg-type]
    assert channel.stderr_reads <= ssh_channel.STDERR_READS


def test_a_remote_that_opens_its_window_a_byte_at_a_time_times_out_the_request() -> None:
    channel = FakeChannel()
    channel.window = 0
    serve = ssh_channel.Serve(channel, "colibri")  # type: ignore[arg-type]
    with pytest.raises(TimeoutError):  # SshHosts.call makes it CommandTimeout (14), not a lost link
        serve.call("write_env", {"env": "A=" + "x" * 20_000}, time.monotonic() + 0.05)
    assert channel.sends < 5000


def test_a_remote_streaming_progress_without_end_is_cut_off() -> None:
    frame = remote_wire.progress(1, {"tenant": "acme", "step": "jail_created", "state": "running", "detail": ""})
    channel = FakeChannel([frame * 64] * (ssh_channel.MAX_PROGRESS // 64 + 2))
    seen: list[dict[str, object]] = []
    serve = ssh_channel.Serve(channel, "colibri")  # type: ignore[arg-type]
    with pytest.raises(remote_wire.WireError, match=f"more than {ssh_channel.MAX_PROGRESS} progress frames"):
        serve.call("spawn_many", {}, time.monotonic() + 30, seen.append)
    assert len(seen) == ssh_channel.MAX_PROGRESS


def test_progress_nobody_asked_for_or_too_long_or_of_another_request_is_refused() -> None:
    ok = remote_wire.progress(1, {"step": "x"})
    for stream, on_progress, message in (
        ([ok], None, "a progress frame no request asked for"),
        ([remote_wire.encode({"id": 1, "progress": {"x": "y" * 20_000}})], print, "over its size limit"),
        ([remote_wire.progress(2, {"step": "x"})], print, "not this request's"),
    ):
        serve = ssh_channel.Serve(FakeChannel(list(stream)), "colibri")  # type: ignore[arg-type]
        with pytest.raises(remote_wire.WireError, match=message):
            serve.call("spawn_many", {}, time.monotonic() + 30, on_progress)


def test_progress_frames_come_before_the_answer() -> None:
    frames = [remote_wire.progress(1, {"n": 1}), remote_wire.progress(1, {"n": 2}), remote_wire.answer(1, {"ok": 1})]
    seen: list[dict[str, object]] = []
    serve = ssh_channel.Serve(FakeChannel([b"".join(frames)]), "colibri")  # type: ignore[arg-type]
    assert serve.call("spawn_many", {}, time.monotonic() + 30, seen.append) == {"ok": 1}
    assert seen == [{"n": 1}, {"n": 2}]


def test_an_exec_request_sshd_never_answers_ends_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssh, "WATCHDOG_GRACE", 0.05)
    channel = FakeChannel()
    channel.exec_answered.clear()
    hosts = hosts_with(channel, monkeypatch)
    failed: list[BaseException] = []

    def call() -> None:
        try:
            hosts.call(TARGET, "ping", {}, timeout=0.1)
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the call still waits for the exec request's answer"
    assert len(failed) == 1 and isinstance(failed[0], CommandTimeout), failed
    assert str(failed[0]) == "timed out after 0.1 s: ping on host osa"
    hosts.close()


def test_a_remote_serve_that_dies_names_its_last_stderr_line_sanitised(monkeypatch: pytest.MonkeyPatch) -> None:
    said = b"Traceback (most recent call last):\n  File 'x'\n"
    said += b"\x1b[31mModuleNotFoundError: No module named 'colibri'\x07\n"
    channel = FakeChannel(stderr=said, eof=True)
    channel.exit = 1
    hosts = hosts_with(channel, monkeypatch)
    with pytest.raises(RemoteError) as caught:
        hosts.call(TARGET, "ping", {}, timeout=5)
    message = str(caught.value)
    assert message == (
        "the SSH link to host osa was lost during ping: its remote serve exited with status 1; "
        "its stderr said: ?[31mModuleNotFoundError: No module named 'colibri'?"
    )
    hosts.close()


def test_only_the_head_of_a_long_stderr_is_kept_and_the_line_is_short() -> None:
    stderr = ssh_channel.Stderr()
    channel = FakeChannel(stderr=b"first line " + b"y" * 50_000 + b"\n" + b"z" * 200_000)
    stderr.drain(channel)  # type: ignore[arg-type]
    assert len(stderr.head) == ssh_channel.STDERR_KEEP and stderr.read == 250_012 and not channel.stderr
    line = stderr.line()
    assert line is not None and line.startswith("first line yyy") and len(line) == ssh_channel.STDERR_SHOWN
    assert not stderr.flooded


def test_stderr_is_read_a_bounded_slice_at_a_time_and_a_bounded_amount_in_all() -> None:
    stderr, channel = ssh_channel.Stderr(), FakeChannel()
    channel.flood = True  # a byte a read, without end
    stderr.drain(channel)  # type: ignore[arg-type]
    assert channel.stderr_reads == ssh_channel.STDERR_PASS  # back to the deadline after one slice
    while not stderr.flooded:
        stderr.drain(channel)  # type: ignore[arg-type]
    stderr.drain(channel)  # type: ignore[arg-type]
    assert channel.stderr_reads == ssh_channel.STDERR_READS  # then left unread: the channel is not reused


def test_a_call_stuck_where_closing_its_channel_does_not_wake_it_has_the_transport_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A write blocked on a peer that stopped reading wakes only when the socket closes."""
    monkeypatch.setattr(ssh, "WATCHDOG_GRACE", 0.05)
    channel = FakeChannel()
    channel.exec_answered.clear()
    transport = FakeTransport(channel)
    woken = threading.Event()

    def close_transport() -> None:  # the socket closes: the blocked write (here, the exec) wakes
        transport.closed = True
        woken.set()
        channel.exec_answered.set()

    channel.close = lambda: None  # type: ignore[method-assign]  # closing the channel wakes nothing
    transport.close = close_transport  # type: ignore[method-assign]
    hosts = ssh.SshHosts(Path("/nonexistent"), connect_timeout=1.0, op_timeout=5.0)
    monkeypatch.setattr(hosts, "_connect", lambda target: transport)
    failed: list[BaseException] = []

    def call() -> None:
        try:
            hosts.run_json(TARGET, ["version", "--json"], timeout=0.1)
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive() and woken.is_set() and transport.closed
    assert len(failed) == 1 and isinstance(failed[0], CommandTimeout), failed
    hosts.close()


def test_the_watchdog_keeps_no_entry_of_finished_calls_for_long() -> None:
    watchdog = ssh._Watchdog()
    host = ssh._Host(threading.BoundedSemaphore(1))
    long_call = watchdog.watch(host, time.monotonic() + 3600)  # a long spawn, at the heap's top
    for _ in range(10_000):
        watchdog.stop(watchdog.watch(host, time.monotonic() + 3700))
    assert len(watchdog._heap) <= 4 * 1 + 64 and not long_call.fired
    watchdog.stop(long_call)
    watchdog.close()
