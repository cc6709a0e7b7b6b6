"""SSH to the hosts of a hive, with paramiko (the only module that imports it).

One long-lived ``paramiko.Transport`` per host, reused by every call and re-established when lost;
at most ``channels`` channels open on it at once (sshd's MaxSessions is 10).  The host key is
pinned: the Transport negotiates only the pinned key types, and the server's key must be one of the
pinned ones BEFORE authentication, so a changed key is refused with nothing sent (no TOFU, no
AutoAddPolicy, no agent, no ``~/.ssh`` keys, no agent forwarding).  The client key is one file,
refused unless it is owned by root (or the current user) and not readable by anyone else.

``HostLink`` speaks the framed JSON of ``colibri.adapters.remote_wire`` to ``<command> remote
serve`` running on a kept channel: a call costs one round trip, not a fresh exec (~50 ms with
paramiko, wave2 §2.2).  Several calls in parallel each hold a channel (each its own ``remote
serve``), up to ``channels``.  A channel taken from the pool that turns out dead (the remote
process or the sshd session was killed while it was idle) is replaced once, on a fresh transport
when the old one is gone; a second failure is a RemoteError.

Nothing sent or received (args may hold a tenant's rendered .env) is logged or put in a message.
"""

import contextlib
import io
import logging
import os
import shlex
import socket
import stat
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from colibri.adapters import remote_wire
from colibri.adapters.ssh_keys import fingerprint, parse_key_line
from colibri.errors import (
    ColibriError,
    CommandTimeout,
    ConfigError,
    HostKeyRefused,
    PermissionDenied,
    RemoteError,
    error_from_api,
)

_NEGOTIATED = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256")}
"""What the Transport offers for a pinned key type (an RSA key is signed with SHA-2)."""
MAX_KEY_FILE = 64 * 1024
_PARAMIKO_LOG = logging.getLogger("paramiko")
_PARAMIKO_LOG.addHandler(logging.NullHandler())
_PARAMIKO_LOG.propagate = False  # its records are tracebacks and the peer's text: colibri raises one clear error
MAX_OUTPUT = 1 << 20
"""The most a one-off exec (run_json) may print."""


@dataclass(frozen=True)
class SshTarget:
    """How to reach one host: ``user@address:port``, its pinned host keys (OpenSSH public key lines
    ``ssh-ed25519 AAAA...``) and the remote colibri command."""

    name: str
    user: str
    address: str
    port: int
    host_keys: tuple[str, ...]
    command: str


# --- the client key -----------------------------------------------------------------------------


def load_client_key(path: Path) -> paramiko.PKey:
    """The private key in ``path``, refused (PermissionDenied, naming the file) unless it is a
    regular file owned by root or the current user with no group or other permission, as ssh(1)
    refuses an unprotected key."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"ssh_key_file {path} does not exist (see runbooks/add-host.md)") from None
    except OSError as exc:
        raise PermissionDenied(f"cannot open ssh_key_file {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PermissionDenied(f"ssh_key_file {path} is not a regular file")
        if info.st_uid not in (0, os.geteuid()):
            raise PermissionDenied(f"ssh_key_file {path} is owned by uid {info.st_uid}, not root; refused")
        if info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            raise PermissionDenied(f"ssh_key_file {path} has mode {mode:04o}; it must be 0600 or 0400; refused")
        raw = os.read(fd, MAX_KEY_FILE + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_KEY_FILE:
        raise ConfigError(f"ssh_key_file {path} is not a private key (over {MAX_KEY_FILE} bytes)")
    text = raw.decode("utf-8", "replace")
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(text))
        except paramiko.PasswordRequiredException:
            raise ConfigError(f"ssh_key_file {path} is encrypted; colibri needs a key without a passphrase") from None
        except (paramiko.SSHException, ValueError, TypeError, IndexError):
            continue
    raise ConfigError(f"ssh_key_file {path} is not an OpenSSH private key (ed25519, ecdsa or rsa)")


# --- connections --------------------------------------------------------------------------------


class _Lost(Exception):
    """A channel died before it answered (internal: the caller may retry once)."""


@dataclass
class _Host:
    """One host's kept transport, its idle ``remote serve`` channels and its channel budget."""

    slots: threading.BoundedSemaphore
    lock: threading.Lock = field(default_factory=threading.Lock)
    transport: paramiko.Transport | None = None
    idle: dict[str, list["_Serve"]] = field(default_factory=dict)  # by the remote command
    busy: int = 0  # calls holding a slot (each has, or is opening, one channel)
    budget: int = 4


class _Serve:
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
            raise _Lost from None
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
            self.channel.settimeout(min(left, _STDERR_EVERY))
            try:
                _drain_stderr(self.channel)
                chunk = self.channel.recv(65536)
            except TimeoutError:
                continue  # the deadline is checked above; stderr is drained meanwhile
            except (OSError, EOFError, paramiko.SSHException):
                raise _Lost from None
            if not chunk:
                raise _Lost
            self.buffer += chunk

    def exit_status(self, wait: float = 1.0) -> int | None:
        """The remote process's exit status, if it has ended (waiting at most ``wait``)."""
        if self.channel.status_event.wait(wait):
            return self.channel.exit_status
        return None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.channel.close()


def _make_room(host: _Host) -> None:
    """Close idle channels (of the command with fewest first) until the calls in flight and the idle
    channels fit the host's budget: a new channel never takes it over sshd's MaxSessions."""
    with host.lock:
        while host.idle and host.busy + sum(map(len, host.idle.values())) > host.budget:
            command = min(host.idle, key=lambda c: len(host.idle[c]))
            host.idle[command].pop().close()
            if not host.idle[command]:
                del host.idle[command]


_STDERR_EVERY = 0.2
"""While an answer is awaited, the remote's stderr is drained this often (seconds)."""


def _drain_stderr(channel: paramiko.Channel) -> None:
    """Read and drop what the remote wrote on stderr (its text is never shown): unread, it would
    fill the channel's window and stall its stdout."""
    while channel.recv_stderr_ready():
        channel.recv_stderr(65536)


def _lost(target: SshTarget, op: str, status: int | None) -> str:
    where = f"the SSH link to host {target.name} was lost during {op}"
    if status == 127:
        return f"{where}: the remote command {target.command!r} was not found (exit status 127)"
    if status == 3:
        return f"{where}: its colibri refused its own settings (exit status 3; run colibri config show there)"
    if status is not None and status >= 0:
        return f"{where}: its remote serve exited with status {status}"
    return f"{where} (its remote serve or the connection ended)"


def _reach(target: SshTarget) -> tuple[str, str, int, tuple[str, ...]]:
    """What one kept connection serves: the same user, address, port and pin (whatever the command)."""
    return (target.user, target.address, target.port, target.host_keys)


class SshHosts:
    """Every host's kept SSH connection.  Thread-safe; ``close()`` ends them all."""

    def __init__(self, key_file: Path, connect_timeout: float, op_timeout: float, channels: int = 4) -> None:
        self._key_file = key_file
        self._key: paramiko.PKey | None = None
        self.connect_timeout = connect_timeout
        self.op_timeout = op_timeout
        self._channels = channels
        self._hosts: dict[tuple[str, str, int, tuple[str, ...]], _Host] = {}
        self._lock = threading.Lock()

    def link(self, target: SshTarget) -> "HostLink":
        return HostLink(self, target)

    def _host(self, target: SshTarget) -> _Host:
        with self._lock:
            host = self._hosts.get(_reach(target))
            if host is None:
                host = self._hosts[_reach(target)] = _Host(threading.BoundedSemaphore(self._channels))
                host.budget = self._channels
            return host

    @contextlib.contextmanager
    def _slot(self, target: SshTarget, timeout: float) -> Iterator[_Host]:
        host = self._host(target)
        if not host.slots.acquire(timeout=timeout):
            raise CommandTimeout(f"waiting for a free SSH channel to host {target.name}", timeout)
        with host.lock:
            host.busy += 1
        try:
            yield host
        finally:
            with host.lock:
                host.busy -= 1
            host.slots.release()

    def _transport(self, target: SshTarget, host: _Host, fresh: bool = False) -> paramiko.Transport:
        with host.lock:
            current = host.transport
            if current is not None and (fresh or not current.is_active()):
                with contextlib.suppress(Exception):
                    current.close()
                host.transport, host.idle = None, {}
            if host.transport is None:
                host.transport = self._connect(target)
            return host.transport

    def _client_key(self) -> paramiko.PKey:
        if self._key is None:
            self._key = load_client_key(self._key_file)
        return self._key

    def _connect(self, target: SshTarget) -> paramiko.Transport:
        """A new authenticated Transport, the host key checked against the pin before auth."""
        pinned = [parse_key_line(line) for line in target.host_keys]
        if not pinned:
            raise HostKeyRefused(f"host {target.name} has no pinned host key; nothing was sent")
        key = self._client_key()
        where = f"host {target.name} ({target.user}@{target.address}:{target.port})"
        timeout = self.connect_timeout
        try:
            sock = socket.create_connection((target.address, target.port), timeout=timeout)
        except TimeoutError:
            raise RemoteError(f"{where} did not answer within {timeout:g} s") from None
        except OSError as exc:
            raise RemoteError(f"cannot connect to {where}: {exc.strerror or type(exc).__name__}") from None
        transport = paramiko.Transport(sock)
        try:
            transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = timeout
            offered = [t for kind, _ in pinned for t in _NEGOTIATED.get(kind, (kind,))]
            transport.get_security_options().key_types = tuple(dict.fromkeys(offered))
            transport.set_keepalive(max(1, int(self.op_timeout)))
            transport.start_client(timeout=timeout)  # returns quietly when its timeout passes
            if not transport.is_active() or not transport.initial_kex_done:
                raise TimeoutError
            server = transport.get_remote_server_key()
            blob = server.asbytes()
            if not any(blob == pin_blob for _, pin_blob in pinned):
                raise HostKeyRefused(
                    f"{where} presented the {server.get_name()} key "
                    f"{fingerprint(f'{server.get_name()} {server.get_base64()}')}, which is not the pinned one; "
                    "refused before authentication, nothing was sent (if the host was reinstalled, "
                    "re-enrol it: colibri hosts remove, then hosts add with the new key)"
                )
            transport.auth_publickey(target.user, key)
            if not transport.is_authenticated():
                raise paramiko.AuthenticationException
        except HostKeyRefused:
            transport.close()
            raise
        except paramiko.ssh_exception.IncompatiblePeer:
            transport.close()
            kinds = ", ".join(dict.fromkeys(kind for kind, _ in pinned))
            raise HostKeyRefused(
                f"{where} offers no host key of the pinned type ({kinds}); refused before authentication, "
                "nothing was sent"
            ) from None
        except paramiko.AuthenticationException:
            transport.close()
            raise RemoteError(
                f"{where} refused the key in {self._key_file} for user {target.user} "
                "(is its public key in that user's authorized_keys?)"
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            transport.close()
            text = str(exc).lower()
            if isinstance(exc, TimeoutError) or "timeout" in text or "banner" in text or "timed out" in text:
                raise RemoteError(
                    f"{where}: no SSH handshake (no SSH banner within {timeout:g} s, or the connection closed)"
                ) from None
            raise RemoteError(f"{where}: SSH failed ({type(exc).__name__})") from None
        except BaseException:
            transport.close()
            raise
        return transport

    def _open(self, target: SshTarget, host: _Host, argv: str, fresh: bool) -> paramiko.Channel:
        transport = self._transport(target, host, fresh)
        _make_room(host)
        try:
            channel = transport.open_session(timeout=self.connect_timeout)
            channel.settimeout(self.connect_timeout)
            channel.exec_command(argv)
        except (paramiko.SSHException, OSError, EOFError):
            raise _Lost from None
        return channel

    def _serve_command(self, target: SshTarget) -> str:
        return f"{shlex.quote(target.command)} remote serve"

    def call(self, target: SshTarget, op: str, args: Mapping[str, Any], timeout: float | None) -> dict[str, Any]:
        """One request on a kept ``remote serve`` channel.  Retried once, on a new channel (and a
        new transport when the old one is gone), only when the request cannot have run: the
        channel could not be opened, or it came from the pool and turned out dead.  A fresh
        channel lost after the request was sent is a RemoteError (the op may have run: the
        control plane's ops converge when re-run)."""
        seconds = self.op_timeout if timeout is None else timeout
        deadline = time.monotonic() + seconds
        with self._slot(target, seconds) as host:
            serve, pooled = self._take(host, target.command)
            reopen = False
            for _attempt in (1, 2):
                if serve is None:
                    try:
                        channel = self._open(target, host, self._serve_command(target), fresh=reopen)
                    except _Lost:
                        reopen = True
                        continue
                    serve, pooled = _Serve(channel, target.command), False
                current = serve
                try:
                    result = current.call(op, args, deadline)
                except _Lost:
                    if not pooled:
                        ended = current.exit_status()
                        current.close()
                        raise RemoteError(_lost(target, op, ended)) from None
                    current.close()
                    serve, reopen = None, not self._transport_alive(host)
                    continue
                except TimeoutError:
                    current.close()
                    raise CommandTimeout(f"{op} on host {target.name}", seconds) from None
                except ColibriError as exc:
                    if isinstance(exc, remote_wire.WireError):
                        current.close()  # out of step with the peer: never reused
                    else:
                        self._give_back(host, current)  # the remote's own answer: the channel is fine
                    raise
                self._give_back(host, current)
                return result
        raise RemoteError(f"the SSH link to host {target.name} was lost during {op} (its remote serve ended)")

    @staticmethod
    def _transport_alive(host: _Host) -> bool:
        with host.lock:
            return host.transport is not None and host.transport.is_active()

    @staticmethod
    def _give_back(host: _Host, serve: _Serve) -> None:
        with host.lock:
            host.idle.setdefault(serve.command, []).append(serve)

    @staticmethod
    def _take(host: _Host, command: str) -> tuple[_Serve | None, bool]:
        with host.lock:
            idle = host.idle.get(command, [])
            while idle:
                serve = idle.pop()
                if serve.alive():
                    return serve, True
                serve.close()
        return None, False

    def run_json(self, target: SshTarget, argv: Sequence[str], timeout: float | None = None) -> dict[str, Any]:
        """Run ``<command> *argv`` once (a fresh exec) and return the ``data`` of its JSON envelope
        (``colibri ... --json``); a failure envelope is the ColibriError it names."""
        seconds = self.op_timeout if timeout is None else timeout
        deadline = time.monotonic() + seconds
        line = shlex.join([target.command, *argv])
        with self._slot(target, seconds) as host:
            try:
                channel = self._open(target, host, line, fresh=False)
            except _Lost:
                channel = self._retry_open(target, host, line)
            try:
                what = f"{argv[0] if argv else 'command'} on host {target.name}"
                out, status = self._drain(channel, deadline, what, seconds)
            finally:
                channel.close()
        return _envelope(target, line, out, status)

    def _retry_open(self, target: SshTarget, host: _Host, line: str) -> paramiko.Channel:
        try:
            return self._open(target, host, line, fresh=True)
        except _Lost:
            raise RemoteError(f"the SSH link to host {target.name} was lost") from None

    def _drain(self, channel: paramiko.Channel, deadline: float, what: str, seconds: float) -> tuple[bytes, int]:
        out = bytearray()
        channel.shutdown_write()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CommandTimeout(what, seconds)
            channel.settimeout(min(left, _STDERR_EVERY))
            try:
                _drain_stderr(channel)
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

    def drop(self, target: SshTarget) -> None:
        """Close one host's connection (the next call reconnects)."""
        with self._lock:
            host = self._hosts.pop(_reach(target), None)
        if host is not None:
            _close_host(host)

    def close(self) -> None:
        with self._lock:
            hosts, self._hosts = list(self._hosts.values()), {}
        for host in hosts:
            _close_host(host)


def _close_host(host: _Host) -> None:
    with host.lock:
        for serves in host.idle.values():
            for serve in serves:
                serve.close()
        host.idle = {}
        if host.transport is not None:
            with contextlib.suppress(Exception):
                host.transport.close()
            host.transport = None


def _envelope(target: SshTarget, line: str, out: bytes, status: int) -> dict[str, Any]:
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


class HostLink:
    """A kept link to one host's ``remote serve``: ``call(op, args)`` is one framed request and
    its answer.  An error answer is raised as the ColibriError it names (a remote TenantNotFound
    is a TenantNotFound here)."""

    def __init__(self, hosts: SshHosts, target: SshTarget) -> None:
        self._hosts = hosts
        self.target = target

    def call(self, op: str, args: Mapping[str, Any], timeout: float | None = None) -> dict[str, Any]:
        return self._hosts.call(self.target, op, args, timeout)
