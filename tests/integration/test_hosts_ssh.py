"""Hosts over SSH on the three-host rig (tests/rig): real sshd in network namespaces, real
paramiko, the real remote colibri, one real PostgreSQL.  Nothing here is faked."""

import base64
import contextlib
import json
import os
import re
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from colibri import __version__
from colibri.adapters.remote_wire import WireError
from colibri.adapters.ssh import SshHosts
from colibri.adapters.ssh_transport import SshTarget
from colibri.errors import CommandTimeout, InvalidInput, RemoteError, TenantNotFound
from tests.conftest import Invoke
from tests.integration.hive_harness import wait_until
from tests.rig import COLIBRI, Rig, RigHost, write_command

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
AUTH_LINE = re.compile(r"Accepted publickey|Failed publickey|Postponed publickey|userauth|Authentication", re.I)


@pytest.fixture(autouse=True)
def orchestrator(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The test process is the orchestrator: a fresh database on the rig's server, the rig's key."""
    assert rig.postgres is not None
    url = rig.postgres.create_database()
    monkeypatch.setenv("COLIBRI_DATABASE_URL", url)
    monkeypatch.setenv("COLIBRI_SSH_KEY_FILE", str(rig.client_key))
    monkeypatch.setenv("COLIBRI_SSH_CONNECT_TIMEOUT", "20")  # a bound for a loaded machine, not a figure
    monkeypatch.setenv("COLIBRI_SSH_OP_TIMEOUT", "30")
    yield url


def _add(invoke: Invoke, name: str, host: RigHost, *extra: str) -> None:
    """Enrol rig host ``host`` as ``name``; unless the test gives its own --command, the colibri there
    calls itself ``name`` (COLIBRI_HOST), as a host enrolled under its own name does."""
    command = host.command
    if "--command" not in extra:
        command = write_command(host.root / f"colibri-as-{name}", f'COLIBRI_HOST={name} exec {COLIBRI} "$@"',
                                host.invocations)  # fmt: skip
    args = ("hosts", "add", name, "--ssh", f"root@{host.address}", "--command", str(command))
    if "--known-hosts" not in extra and "--host-key" not in extra:
        extra = ("--host-key", host.host_key_line(), *extra)
    code, _, err = invoke(*args, *extra)
    assert code == 0, err


def _json(out: str) -> dict:  # type: ignore[type-arg]
    return json.loads(out)


def _target(name: str, host: RigHost, command: Path | None = None) -> SshTarget:
    return SshTarget(name, "root", host.address, 22, (host.host_key_line(),), str(command or host.command))


def _accepted(host: RigHost) -> int:
    return host.log_text().count("Accepted publickey")


def _serves(host: RigHost) -> list[int]:
    return [pid for pid, argv in host.ran() if argv == "remote serve"]


def test_enrol_three_hosts_and_check_them(rig: Rig, invoke: Invoke) -> None:
    a, b, c = rig.hosts["a"], rig.hosts["b"], rig.hosts["c"]
    _add(invoke, "osa", a)
    _add(invoke, "domedog", b)
    pub = c.host_key.with_name(c.host_key.name + ".pub")
    _add(invoke, "builder", c, "--known-hosts", str(pub))
    for name, host in (("osa", a), ("domedog", b), ("builder", c)):
        code, out, err = invoke("hosts", "check", name, "--json")
        assert code == 0, err
        found = _json(out)["data"]["found"]
        assert found == {**found, "version": __version__, "backend": "sandbox", "backend_ready": True}
        assert found["programs"]["bwrap"]
        assert host.ran()[-1][1] == "version --json"
    code, out, _ = invoke("hosts", "--json")
    listed = {h["name"]: h for h in _json(out)["data"]}
    assert set(listed) == {"osa", "domedog", "builder"}
    for view in listed.values():
        assert (view["version"], view["backend"], view["last_error"]) == (__version__, "sandbox", None)
        assert view["checked_at"] and view["liveness"] == "unknown"  # no daemon has taken a lease
    code, out, _ = invoke("hosts")
    assert code == 0 and "domedog" in out and f"root@{b.address}" in out


def test_changed_host_key_is_refused_before_anything_is_sent(rig: Rig, invoke: Invoke) -> None:
    b = rig.hosts["b"]
    _add(invoke, "rekeyed", b)
    old = b.host_key_line()
    new = b.new_host_key()  # the host "reinstalled": sshd restarted with another key
    assert new != old
    log_before, ran_before = len(b.log_text()), len(b.ran())
    code, _, err = invoke("hosts", "check", "rekeyed")
    assert code == 19, err
    assert "not the pinned one" in err and "nothing was sent" in err
    tail = b.log_text()[log_before:]
    assert "Connection from" in tail  # it did reach this sshd ...
    assert not AUTH_LINE.search(tail), tail  # ... and never tried to authenticate
    assert len(b.ran()) == ran_before  # nothing ran there
    code, out, _ = invoke("hosts", "show", "rekeyed", "--json")
    assert "not the pinned one" in _json(out)["data"]["last_error"]
    # re-enrolled with the new key (read out of band), the host is accepted again
    assert invoke("hosts", "remove", "rekeyed")[0] == 0
    _add(invoke, "rekeyed", b)
    assert invoke("hosts", "check", "rekeyed")[0] == 0


def test_wrong_client_key_is_an_auth_failure(rig: Rig, invoke: Invoke, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import subprocess

    a = rig.hosts["a"]
    _add(invoke, "stranger", a)
    other = tmp_path / "id_other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    monkeypatch.setenv("COLIBRI_SSH_KEY_FILE", str(other))
    ran_before = len(a.ran())
    code, _, err = invoke("hosts", "check", "stranger")
    assert code == 13, err
    assert "refused the key" in err and str(other) in err
    assert len(a.ran()) == ran_before


def test_client_key_readable_by_others_is_refused(rig: Rig, invoke: Invoke, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    a = rig.hosts["a"]
    _add(invoke, "loose", a)
    loose = tmp_path / "id_loose"
    loose.write_bytes(rig.client_key.read_bytes())
    loose.chmod(0o644)
    monkeypatch.setenv("COLIBRI_SSH_KEY_FILE", str(loose))
    code, _, err = invoke("hosts", "check", "loose")
    assert code == 6, err
    assert str(loose) in err and "0644" in err


def test_unreachable_host_fails_within_the_connect_timeout(rig: Rig, invoke: Invoke,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("COLIBRI_SSH_CONNECT_TIMEOUT", "1")
    a = rig.hosts["a"]
    code, _, err = invoke("hosts", "add", "ghost", "--ssh", f"root@{rig.unused_address}", "--host-key",
                          a.host_key_line())  # fmt: skip
    assert code == 0, err
    code, _, err = invoke("hosts", "check", "ghost")
    assert code == 13, err
    assert "did not answer within 1 s" in err or "cannot connect" in err


def test_remote_colibri_of_another_major_version_is_refused(rig: Rig, invoke: Invoke) -> None:
    a = rig.hosts["a"]
    future = write_command(
        a.root / "colibri-9",
        """printf '{"ok": true, "data": {"version": "9.0.0", "python": "3.13.0", "backend": "sandbox", '"""
        """'"programs": {"bwrap": "/usr/bin/bwrap"}, "missing": [], "backend_ready": true}}\\n'""",
        a.invocations,
    )
    _add(invoke, "future", a, "--command", str(future))
    code, out, _ = invoke("hosts", "check", "future", "--json")
    assert code == 20
    document = _json(out)
    assert document["error"]["type"] == "HostIncompatible" and "9.0.0" in document["error"]["message"]
    assert document["data"]["version"] == "9.0.0"  # recorded: `colibri hosts` shows what is there
    code, _, err = invoke("hosts", "check", "future")
    assert code == 20 and "another major version" in err


def test_host_without_its_backend_programs_is_reported(rig: Rig, invoke: Invoke) -> None:
    c = rig.hosts["c"]
    bastille_host = write_command(
        c.root / "colibri-bastille",
        f'COLIBRI_HOST=nojails COLIBRI_JAIL_BACKEND=bastille exec {c.command.with_name("colibri-real")} "$@"',
        c.invocations,
    )  # fmt: skip
    real = c.command.with_name("colibri-real")
    real.symlink_to(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "colibri")
    _add(invoke, "nojails", c, "--command", str(bastille_host))
    code, out, _ = invoke("hosts", "check", "nojails", "--json")
    assert code == 20
    document = _json(out)
    found = document["data"]["found"]
    assert found["backend"] == "bastille" and found["backend_ready"] is False
    assert found["programs"]["bastille"] is None
    assert "bastille" in document["error"]["message"] and "missing" in document["error"]["message"]
    assert document["data"]["backend"] == "bastille"


def test_unknown_host(invoke: Invoke) -> None:
    code, _, err = invoke("hosts", "check", "nowhere")
    assert code == 4 and "host not found: nowhere" in err
    assert invoke("hosts", "remove", "nowhere")[0] == 4


def test_remove_is_refused_while_a_tenant_lives_there(rig: Rig, invoke: Invoke) -> None:
    _add(invoke, "home", rig.hosts["a"])
    assert invoke("register-tenant", "lodger", "--host", "home")[0] == 0
    code, out, err = invoke("hosts", "show", "home", "--json")
    assert _json(out)["data"]["tenants"] == 1
    code, _, err = invoke("hosts", "remove", "home")
    assert code == 5 and "still has 1 tenant" in err
    assert invoke("remove-tenant", "lodger")[0] == 0
    assert invoke("hosts", "remove", "home")[0] == 0
    assert invoke("hosts", "show", "home")[0] == 4


@pytest.fixture(name="ssh")
def ssh_fixture(rig: Rig) -> Iterator[SshHosts]:
    hosts = SshHosts(rig.client_key, connect_timeout=20, op_timeout=30, channels=3)
    yield hosts
    hosts.close()


def test_kept_channel_serves_many_calls_on_one_connection(rig: Rig, ssh: SshHosts) -> None:
    a = rig.hosts["a"]
    link = ssh.link(_target("rig-a", a))
    accepted, serves = _accepted(a), len(_serves(a))
    for _ in range(200):
        assert link.call("ping", {}) == {"pong": True}
    version = link.call("version", {})
    assert (version["version"], version["host"], version["backend"]) == (__version__, "rig-a", "sandbox")
    assert len(_serves(a)) == serves + 1  # one remote serve answered all 201
    wait_until(lambda: _accepted(a) >= accepted + 1)
    assert _accepted(a) == accepted + 1  # on one SSH connection
    with pytest.raises(InvalidInput, match="no op 'nope'"):
        link.call("nope", {})  # the remote's error, raised here as the class it names
    assert link.call("ping", {}) == {"pong": True}  # and the channel stays usable


def test_parallel_calls_use_at_most_the_channel_budget(rig: Rig, ssh: SshHosts) -> None:
    b = rig.hosts["b"]
    link = ssh.link(_target("rig-b", b))
    serves = len(_serves(b))
    results: list[dict] = []  # type: ignore[type-arg]
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.extend(link.call("ping", {}) for _ in range(20))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and len(results) == 200
    assert 1 <= len(_serves(b)) - serves <= 3  # channels=3: never more remote serve processes


def test_killed_remote_serve_is_replaced_on_the_next_call(rig: Rig, ssh: SshHosts) -> None:
    c = rig.hosts["c"]
    link = ssh.link(_target("rig-c", c))
    assert link.call("ping", {}) == {"pong": True}
    accepted = _accepted(c)
    pid = _serves(c)[-1]
    os.kill(pid, signal.SIGKILL)
    assert link.call("ping", {}) == {"pong": True}
    assert _serves(c)[-1] != pid  # a new remote serve ...
    assert _accepted(c) == accepted  # ... on the same connection


def test_killed_ssh_session_is_reestablished_on_the_next_call(rig: Rig, ssh: SshHosts) -> None:
    c = rig.hosts["c"]
    link = ssh.link(_target("rig-c2", c))
    assert link.call("ping", {}) == {"pong": True}
    wait_until(lambda: _accepted(c) >= 1)
    accepted = _accepted(c)
    pid = _serves(c)[-1]
    session = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])  # its parent: sshd's
    os.kill(session, signal.SIGKILL)
    assert link.call("ping", {}) == {"pong": True}
    wait_until(lambda: _accepted(c) == accepted + 1)  # a new connection, authenticated again


def test_remote_host_reaches_the_shared_database(rig: Rig, invoke: Invoke, monkeypatch: pytest.MonkeyPatch,
                                                 ssh: SshHosts) -> None:  # fmt: skip
    monkeypatch.setenv("COLIBRI_DATABASE_URL", rig.database_url())
    _add(invoke, "rig-b", rig.hosts["b"], "--host-key", rig.hosts["b"].host_key_line())  # enrolled in this database
    assert invoke("register-tenant", "shared1", "--host", "rig-b")[0] == 0
    target = _target("rig-b", rig.hosts["b"])
    seen = ssh.run_json(target, ["show-tenant", "shared1", "--json"])
    assert (seen["tenant_id"], seen["host"]) == ("shared1", "rig-b")
    with pytest.raises(TenantNotFound):  # the remote's failure envelope, as the class it names
        ssh.run_json(target, ["show-tenant", "nobody", "--json"])
    assert invoke("remove-tenant", "shared1")[0] == 0
    assert invoke("hosts", "remove", "rig-b")[0] == 0


def test_host_offering_none_of_the_pinned_key_types_is_refused(rig: Rig, invoke: Invoke) -> None:
    a = rig.hosts["a"]
    kind = b"ecdsa-sha2-nistp256"
    blob = len(kind).to_bytes(4, "big") + kind + b"\x00\x00\x00\x08nistp256" + b"\x00\x00\x00\x41\x04" + b"\x01" * 64
    ecdsa = "ecdsa-sha2-nistp256 " + base64.b64encode(blob).decode()
    log_before, ran_before = len(a.log_text()), len(a.ran())
    _add(invoke, "wrongtype", a, "--host-key", ecdsa)
    code, _, err = invoke("hosts", "check", "wrongtype")
    assert code == 19, err
    assert "no host key of the pinned type (ecdsa-sha2-nistp256)" in err
    assert not AUTH_LINE.search(a.log_text()[log_before:]) and len(a.ran()) == ran_before


def test_silent_peer_fails_within_the_connect_timeout(rig: Rig, invoke: Invoke,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("COLIBRI_SSH_CONNECT_TIMEOUT", "1")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # accepts (the kernel does), never says a word
    try:
        port = silent.getsockname()[1]
        code, _, err = invoke("hosts", "add", "mute", "--ssh", f"root@127.0.0.1:{port}", "--host-key",
                              rig.hosts["a"].host_key_line())  # fmt: skip
        assert code == 0, err
        code, _, err = invoke("hosts", "check", "mute")
        assert code == 13, err
        assert "no SSH handshake (no SSH banner within 1 s" in err
    finally:
        silent.close()


def test_operation_timeout_and_a_garbled_peer(rig: Rig, ssh: SshHosts) -> None:
    a = rig.hosts["a"]
    accepted = _accepted(a)
    hung = write_command(a.root / "colibri-hung", "exec sleep 30", a.invocations)
    link = ssh.link(_target("rig-a-hung", a, hung))
    with pytest.raises(CommandTimeout) as caught:
        link.call("ping", {}, timeout=1)
    assert caught.value.exit_code == 14 and "ping on host rig-a-hung" in str(caught.value)
    chatty = write_command(a.root / "colibri-chatty", "echo 'Welcome to osa!'; exec sleep 30", a.invocations)
    with pytest.raises(WireError) as wire:
        ssh.link(_target("rig-a-chatty", a, chatty)).call("ping", {"env": "TOKEN=s3cret"}, timeout=10)
    assert wire.value.exit_code == 13 and "Welcome" not in str(wire.value) and "s3cret" not in str(wire.value)
    with pytest.raises(CommandTimeout):
        ssh.run_json(_target("rig-a-hung", a, hung), ["version", "--json"], timeout=1)
    assert ssh.link(_target("rig-a", a)).call("ping", {}) == {"pong": True}
    wait_until(lambda: _accepted(a) >= accepted + 1)
    assert _accepted(a) == accepted + 1  # one connection to the host, whichever remote command


def test_each_host_runs_its_own_daemon_on_the_shared_database(rig: Rig, ssh: SshHosts) -> None:
    a = rig.hosts["a"]
    a.start_daemon()
    try:
        status = ssh.run_json(_target("rig-a", a), ["daemon", "status", "--json"])
        assert (status["status"], status["store"]) == ("ok", "ok")  # its store: the shared PostgreSQL, via the bridge
    finally:
        assert a.stop_daemon() == 0


def test_missing_remote_command_is_named(rig: Rig, invoke: Invoke, ssh: SshHosts) -> None:
    a = rig.hosts["a"]
    with pytest.raises(RemoteError, match=r"remote command '/nonexistent/colibri' was not found \(exit status 127\)"):
        ssh.link(_target("rig-a-none", a, Path("/nonexistent/colibri"))).call("ping", {})
    _add(invoke, "nocolibri", a, "--command", "/nonexistent/colibri")
    code, _, err = invoke("hosts", "check", "nocolibri")
    assert code == 13 and "'/nonexistent/colibri' was not found" in err


def test_a_remote_that_floods_stderr_does_not_stall_its_answers(rig: Rig, ssh: SshHosts) -> None:
    b = rig.hosts["b"]
    real = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "colibri"
    noisy = write_command(b.root / "colibri-noisy", f'head -c 4000000 /dev/zero >&2; exec {real} "$@"', b.invocations)
    target = _target("rig-b-noisy", b, noisy)
    assert ssh.link(target).call("ping", {}, timeout=60) == {"pong": True}  # 4 MB > the 2 MiB window
    assert ssh.run_json(target, ["version", "--json"], timeout=60)["version"] == __version__


def test_idle_channels_count_against_the_budget(rig: Rig) -> None:
    c = rig.hosts["c"]
    one = SshHosts(rig.client_key, connect_timeout=20, op_timeout=30, channels=1)
    try:
        link = one.link(_target("rig-c", c))
        assert link.call("ping", {}) == {"pong": True}
        serves = len(_serves(c))
        assert link.call("ping", {}) == {"pong": True} and len(_serves(c)) == serves  # the idle one, reused
        assert one.run_json(_target("rig-c", c), ["version", "--json"])["version"] == __version__
        assert link.call("ping", {}) == {"pong": True}
        assert len(_serves(c)) == serves + 1  # the idle serve was closed to make room for the exec
    finally:
        one.close()


def test_a_host_that_repoints_another_hosts_row_at_itself_is_never_reached(
    rig: Rig, invoke: Invoke, monkeypatch: pytest.MonkeyPatch, ssh: SshHosts
) -> None:
    """Review R1 on real parts: host c, with its own database credentials and its own colibri,
    re-enrols host a's name at its own address and key in the shared database.  The orchestrator
    keeps a's pin in its own record: it connects to a only, refuses (19) while the row disagrees,
    and ``reconcile --apply`` writes its pin back."""
    monkeypatch.setenv("COLIBRI_DATABASE_URL", rig.database_url())
    a, c = rig.hosts["a"], rig.hosts["c"]
    attacker = _target("c", c)

    def forget() -> None:  # the shared database's row and c's own record of its attack
        with contextlib.suppress(Exception):
            ssh.run_json(attacker, ["hosts", "remove", "pin-a", "--json"])
        (c.root / "state" / "orchestrator.json").unlink(missing_ok=True)

    forget()
    try:
        _add(invoke, "pin-a", a)
        assert invoke("hosts", "check", "pin-a")[0] == 0
        ssh.run_json(attacker, ["hosts", "remove", "pin-a", "--json"])  # c's own colibri, on the shared database
        ssh.run_json(attacker, ["hosts", "add", "pin-a", "--ssh", f"root@{c.address}",
                                "--host-key", c.host_key_line(), "--json"])  # fmt: skip
        c_log, a_log = len(c.log_text()), len(a.log_text())
        code, out, err = invoke("hosts", "check", "pin-a", "--json")
        assert code == 19, err
        error = _json(out)["error"]["message"]
        assert "address, host_keys, command of host pin-a differ from this orchestrator's pin" in error, error
        assert "Accepted publickey" in a.log_text()[a_log:]  # it reached a, with a's pin ...
        assert "Connection from" not in c.log_text()[c_log:]  # ... and never c
        code, out, _ = invoke("reconcile", "--apply", "--json")
        found = [(d["host"], d["kind"], d["applied"]) for d in _json(out)["data"]]
        assert code == 0 and ("pin-a", "pin_diverged", True) in found, out
        assert invoke("hosts", "check", "pin-a")[0] == 0
        assert invoke("hosts", "remove", "pin-a")[0] == 0
    finally:
        forget()
