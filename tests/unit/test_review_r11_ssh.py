"""Review R (issue 11): the SSH adapter and host keys attacked by a hostile (or broken) remote host
and a careless known_hosts file.  Each test is a finding: strict xfail until it is fixed."""

import base64
import contextlib
import struct
import threading
import time

import pytest

from colibri.adapters import ssh_channel
from colibri.adapters.ssh_keys import keys_from_known_hosts


class Flooded(BaseException):
    """The fake channel's stderr was read this many times in one answer's wait: the reader never
    got back to its deadline (raised past every except clause so the test ends)."""


class StderrFlood:
    """A remote whose stderr always has more to read (``yes >&2`` in a wrapper --command, or a
    hostile host) and whose stdout never answers."""

    closed = eof_received = False

    def __init__(self) -> None:
        self.stderr_reads = 0

    def settimeout(self, seconds: float) -> None:
        pass

    def send(self, data: bytes) -> int:
        return len(data)

    def exit_status_ready(self) -> bool:
        return False

    def recv_stderr_ready(self) -> bool:
        return True

    def recv_stderr(self, size: int) -> bytes:
        self.stderr_reads += 1
        if self.stderr_reads > 100_000:
            raise Flooded
        return b"x"

    def recv(self, size: int) -> bytes:
        raise TimeoutError  # no answer on stdout


def test_r8_a_remote_flooding_stderr_still_times_out() -> None:
    serve = ssh_channel.Serve(StderrFlood(), "colibri")  # type: ignore[arg-type]
    with pytest.raises(TimeoutError):  # SshHosts.call makes it CommandTimeout (14)
        serve.call("ping", {}, time.monotonic() + 0.3)


def _ed25519(seed: int) -> str:
    kind = b"ssh-ed25519"
    blob = struct.pack(">I", len(kind)) + kind + struct.pack(">I", 32) + bytes([seed]) * 32
    return "ssh-ed25519 " + base64.b64encode(blob).decode()


def test_r6_a_revoked_key_in_known_hosts_is_never_pinned() -> None:
    revoked, good = _ed25519(1), _ed25519(2)
    text = f"@revoked * {revoked}\n10.0.0.2 {revoked}\n10.0.0.2 {good}\n"
    assert revoked not in keys_from_known_hosts(text, "10.0.0.2", 22)


def test_r9_register_tenant_racing_hosts_remove_leaves_no_tenant_on_a_removed_host(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from colibri.errors import ColibriError
    from colibri.services.hosts.enrol import HostService
    from colibri.services.tenants import TenantService
    from colibri.store.db import Store
    from colibri.store.hosts import HostRepo
    from colibri.store.repos import TenantRepo

    store = Store(db_url)
    hosts = HostService(store)
    hosts.add("osa", "root@192.0.2.10", [_ed25519(3)], None)
    counted, registered = HostRepo.tenant_count, threading.Event()

    def register() -> None:
        with contextlib.suppress(ColibriError):
            TenantService(store, "testhost").register("acme", "", "osa")
        registered.set()

    def count_then_race(repo: HostRepo, name: str) -> int:
        found = counted(repo, name)
        threading.Thread(target=register).start()  # an operator's register-tenant --host osa
        registered.wait(3)  # it commits meanwhile (with a lock on the host row it would wait for us)
        return found

    monkeypatch.setattr(HostRepo, "tenant_count", count_then_race)
    with contextlib.suppress(ColibriError):
        hosts.remove("osa")
    monkeypatch.undo()
    registered.wait(10)
    with store.session() as session:
        tenant, host = TenantRepo(session).get("acme"), HostRepo(session).get("osa")
    store.close()
    assert tenant is None or host is not None  # fails: acme lives on osa, which is no longer enrolled
