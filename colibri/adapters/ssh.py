"""The kept SSH links to the hosts of a hive: a pool of channels over one Transport per host.

One long-lived ``paramiko.Transport`` per host (``colibri.adapters.ssh_transport``: the pinned-key
connection), reused by every call and re-established when lost; at most ``channels`` channels open
on it at once (sshd's MaxSessions is 10).

``HostLink`` speaks the framed JSON of ``colibri.adapters.remote_wire`` to ``<command> remote
serve`` running on a kept channel (``colibri.adapters.ssh_channel``): a call costs one round trip,
not a fresh exec (~50 ms with paramiko, wave2 §2.2).  Several calls in parallel each hold a channel
(each its own ``remote serve``), up to ``channels``.  A channel taken from the pool that turns out
dead (the remote process or the sshd session was killed while it was idle) is replaced once, on a
fresh transport when the old one is gone; a second failure is a RemoteError.

Every call ends by its deadline whatever the remote does: the channel's own reads and writes wait
at most until then (``colibri.adapters.ssh_channel``), and a watchdog (one thread for all calls)
ends what paramiko itself would wait on without a bound (an exec request never answered, a write
blocked on a peer that stopped reading): ``WATCHDOG_GRACE`` after the deadline it closes the
call's channel, and that much later the host's transport (its next call reconnects).

Nothing sent or received (args may hold a tenant's rendered .env) is logged or put in a message.
"""

import contextlib
import heapq
import itertools
import shlex
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from colibri.adapters import remote_wire
from colibri.adapters.ssh_channel import Lost, Progress, Serve, drain, envelope, lost_message
from colibri.adapters.ssh_transport import SshTarget, connect, load_client_key
from colibri.errors import ColibriError, CommandTimeout, RemoteError

WATCHDOG_GRACE = 2.0
"""Seconds past a call's deadline before its watchdog closes its channel (and as many again
before it closes the host's transport)."""

# --- the pool ------------------------------------------------------------------------------------


@dataclass
class _Host:
    """One host's kept transport, its idle ``remote serve`` channels and its channel budget."""

    slots: threading.BoundedSemaphore
    lock: threading.Lock = field(default_factory=threading.Lock)
    transport: paramiko.Transport | None = None
    idle: dict[str, list[Serve]] = field(default_factory=dict)  # by the remote command
    busy: int = 0  # calls holding a slot (each has, or is opening, one channel)
    budget: int = 4


def _make_room(host: _Host) -> None:
    """Close idle channels (of the command with fewest first) until the calls in flight and the idle
    channels fit the host's budget: a new channel never takes it over sshd's MaxSessions."""
    with host.lock:
        while host.idle and host.busy + sum(map(len, host.idle.values())) > host.budget:
            command = min(host.idle, key=lambda c: len(host.idle[c]))
            host.idle[command].pop().close()
            if not host.idle[command]:
                del host.idle[command]


class _Watch:
    """One call's entry with the watchdog: its channel once opened, and whether it fired."""

    __slots__ = ("channel", "done", "fired", "host")

    def __init__(self, host: _Host) -> None:
        self.channel: paramiko.Channel | None = None
        self.host = host
        self.fired = False
        self.done = False


class _Watchdog:
    """One thread for every call of an ``SshHosts``: a call stuck past its deadline in a wait
    paramiko does not bound has its channel closed ``WATCHDOG_GRACE`` later (an exec request, a
    read or a window wait wakes), and the host's transport as much later again (a write blocked on
    the socket wakes).  ``fired`` tells the call that its failure is a timeout.  A call costs a
    heap push and a flag (no thread of its own); finished entries are dropped lazily."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, int, _Watch]] = []  # (when, order, stage, watch)
        self._order = itertools.count()
        self._live = 0
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(self, host: _Host, deadline: float) -> _Watch:
        entry = _Watch(host)
        with self._cond:
            self._live += 1
            self._closed = False
            self._push(deadline + WATCHDOG_GRACE, 1, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="colibri-ssh-watchdog", daemon=True)
                self._thread.start()
        return entry

    def stop(self, entry: _Watch) -> None:
        with self._cond:
            if not entry.done:
                entry.done = True
                self._live -= 1
            if len(self._heap) > 64 and len(self._heap) > 4 * self._live:  # mostly finished calls
                self._heap = [item for item in self._heap if not item[3].done]
                heapq.heapify(self._heap)

    def close(self) -> None:
        """Let the thread end once no call is watched (a later call starts it again)."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _push(self, when: float, stage: int, entry: _Watch) -> None:  # under the condition's lock
        heapq.heappush(self._heap, (when, next(self._order), stage, entry))
        if self._heap[0][3] is entry:
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._heap and self._heap[0][3].done:
                        heapq.heappop(self._heap)
                    if self._closed and self._live == 0:
                        self._thread = None
                        return
                    left = self._heap[0][0] - time.monotonic() if self._heap else None
                    if left is not None and left <= 0:
                        _when, _order, stage, entry = heapq.heappop(self._heap)
                        break
                    self._cond.wait(left)
                if stage == 1:
                    entry.fired = True
                    self._push(time.monotonic() + WATCHDOG_GRACE, 2, entry)
            if stage == 1 and entry.channel is not None:  # its close may block on the transport's writer
                threading.Thread(
                    target=_quiet_close, args=(entry.channel,), name="colibri-ssh-close", daemon=True
                ).start()
            elif stage == 2:
                with entry.host.lock:
                    transport = entry.host.transport
                if transport is not None:
                    _quiet_close(transport)


def _quiet_close(thing: paramiko.Channel | paramiko.Transport) -> None:
    with contextlib.suppress(Exception):
        thing.close()


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
        self._watchdog = _Watchdog()

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
        return connect(target, self._client_key, self._key_file, self.connect_timeout, self.op_timeout)

    @contextlib.contextmanager
    def _watch(self, host: _Host, deadline: float, what: str, seconds: float) -> Iterator[_Watch]:
        """The watchdog over one call; whatever the call fails with once it fired is CommandTimeout."""
        watch = self._watchdog.watch(host, deadline)
        try:
            yield watch
        except (Lost, ColibriError, OSError, EOFError, paramiko.SSHException):
            if watch.fired:
                raise CommandTimeout(what, seconds) from None
            raise
        finally:
            self._watchdog.stop(watch)

    def _open(self, target: SshTarget, host: _Host, argv: str, fresh: bool, watch: _Watch) -> paramiko.Channel:
        if watch.fired:
            raise Lost
        transport = self._transport(target, host, fresh)
        _make_room(host)
        try:
            channel = transport.open_session(timeout=self.connect_timeout)
            watch.channel = channel
            channel.settimeout(self.connect_timeout)
            channel.exec_command(argv)  # waits for sshd's answer without a bound: the watchdog's
        except (paramiko.SSHException, OSError, EOFError):
            raise Lost from None
        return channel

    def _serve_command(self, target: SshTarget) -> str:
        return f"{shlex.quote(target.command)} remote serve"

    def call(
        self,
        target: SshTarget,
        op: str,
        args: Mapping[str, Any],
        timeout: float | None,
        on_progress: Progress | None = None,
    ) -> dict[str, Any]:
        """One request on a kept ``remote serve`` channel, its answer by ``timeout`` seconds
        (CommandTimeout), whatever the remote writes meanwhile; the progress frames of an op
        that streams go to ``on_progress``.  Retried once, on a new channel (and a new transport
        when the old one is gone), only when the request cannot have run: the channel could not
        be opened, or it came from the pool and turned out dead.  A fresh channel lost after the
        request was sent is a RemoteError (the op may have run: the control plane's ops converge
        when re-run)."""
        seconds = self.op_timeout if timeout is None else timeout
        deadline = time.monotonic() + seconds
        what = f"{op} on host {target.name}"
        with self._slot(target, seconds) as host, self._watch(host, deadline, what, seconds) as watch:
            serve, pooled = self._take(host, target.command)
            reopen = False
            for _attempt in (1, 2):
                if serve is None:
                    try:
                        channel = self._open(target, host, self._serve_command(target), reopen, watch)
                    except Lost:
                        reopen = True
                        continue
                    serve, pooled = Serve(channel, target.command), False
                current = serve
                watch.channel = current.channel
                try:
                    result = current.call(op, args, deadline, on_progress)
                except Lost:
                    if watch.fired:
                        current.close()
                        raise CommandTimeout(what, seconds) from None
                    if not pooled:
                        ended = current.exit_status()
                        current.close()
                        raise RemoteError(lost_message(target, op, ended, current.stderr)) from None
                    current.close()
                    serve, reopen = None, not self._transport_alive(host)
                    continue
                except TimeoutError:
                    current.close()
                    raise CommandTimeout(what, seconds) from None
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
    def _give_back(host: _Host, serve: Serve) -> None:
        with host.lock:
            host.idle.setdefault(serve.command, []).append(serve)

    @staticmethod
    def _take(host: _Host, command: str) -> tuple[Serve | None, bool]:
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
        what = f"{argv[0] if argv else 'command'} on host {target.name}"
        with self._slot(target, seconds) as host, self._watch(host, deadline, what, seconds) as watch:
            try:
                channel = self._open(target, host, line, False, watch)
            except Lost:
                channel = self._retry_open(target, host, line, watch)
            try:
                out, status, stderr = drain(channel, deadline, what, seconds)
            finally:
                channel.close()
        return envelope(target, line, out, status, stderr)

    def _retry_open(self, target: SshTarget, host: _Host, line: str, watch: _Watch) -> paramiko.Channel:
        try:
            return self._open(target, host, line, True, watch)
        except Lost:
            raise RemoteError(f"the SSH link to host {target.name} was lost") from None

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
        self._watchdog.close()


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


class HostLink:
    """A kept link to one host's ``remote serve``: ``call(op, args)`` is one framed request and
    its answer.  An error answer is raised as the ColibriError it names (a remote TenantNotFound
    is a TenantNotFound here)."""

    def __init__(self, hosts: SshHosts, target: SshTarget) -> None:
        self._hosts = hosts
        self.target = target

    def call(
        self, op: str, args: Mapping[str, Any], timeout: float | None = None, on_progress: Progress | None = None
    ) -> dict[str, Any]:
        return self._hosts.call(self.target, op, args, timeout, on_progress)
