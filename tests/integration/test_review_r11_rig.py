"""Review R (issue 11): a hostile remote host on the rig (real sshd, real paramiko).  R8's worst case
(stderr always ready) is shown with a fake channel in tests/unit/test_review_r11_ssh.py; on the rig a
remote writing /dev/zero to stderr did not keep the reader from its deadline: this guards that."""

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from colibri.adapters.ssh import SshHosts, SshTarget
from colibri.errors import CommandTimeout
from tests.conftest import Invoke
from tests.rig import Rig, write_command

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture(name="ssh")
def ssh_fixture(rig: Rig) -> Iterator[SshHosts]:
    hosts = SshHosts(rig.client_key, connect_timeout=20, op_timeout=30, channels=3)
    yield hosts
    hosts.close()


def test_a_remote_that_never_stops_writing_stderr_still_times_out(rig: Rig, ssh: SshHosts) -> None:
    a = rig.hosts["a"]
    flood = write_command(a.root / "colibri-flood", "exec cat /dev/zero >&2", a.invocations)
    target = SshTarget("rig-a-flood", "root", a.address, 22, (a.host_key_line(),), str(flood))
    got: list[Any] = []

    def call() -> None:
        try:
            ssh.link(target).call("ping", {}, timeout=1)
        except Exception as exc:
            got.append(exc)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    caller.join(30)  # a bound for a hung test, thirty times the op's own timeout
    assert got and isinstance(got[0], CommandTimeout)


@pytest.fixture(name="orchestrator")
def orchestrator_fixture(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    assert rig.postgres is not None
    url = rig.postgres.create_database()
    monkeypatch.setenv("COLIBRI_DATABASE_URL", url)
    monkeypatch.setenv("COLIBRI_SSH_KEY_FILE", str(rig.client_key))
    monkeypatch.setenv("COLIBRI_SSH_CONNECT_TIMEOUT", "20")
    monkeypatch.setenv("COLIBRI_SSH_OP_TIMEOUT", "30")
    yield url


def test_r2_hosts_check_of_a_host_answering_a_failure_with_code_0_does_not_exit_0(
    rig: Rig, invoke: Invoke, orchestrator: str
) -> None:
    a = rig.hosts["a"]
    envelope = '{"ok": false, "error": {"type": "HostIncompatible", "code": 0, "message": "\\u001b[2Jall is well"}}'
    liar = write_command(a.root / "colibri-liar", f"echo '{envelope}'; exit 0", a.invocations)
    code, _, err = invoke("hosts", "add", "liar", "--ssh", f"root@{a.address}", "--command", str(liar),
                          "--host-key", a.host_key_line())  # fmt: skip
    assert code == 0, err
    code, out, err = invoke("hosts", "check", "liar")
    assert "\x1b" not in out + err and "all is well" in err  # the peer's text is made safe
    assert code != 0  # fails: 0


def test_r16_hosts_check_refuses_a_host_whose_colibri_calls_itself_otherwise(
    rig: Rig, invoke: Invoke, orchestrator: str
) -> None:
    a = rig.hosts["a"]  # its colibri.toml says host = "rig-a"
    code, _, err = invoke("hosts", "add", "osa", "--ssh", f"root@{a.address}", "--command", str(a.command),
                          "--host-key", a.host_key_line())  # fmt: skip
    assert code == 0, err
    code, out, err = invoke("hosts", "check", "osa")
    assert code != 0 and "rig-a" in err, (code, out, err)  # fails: 0, "osa" is taken for rig-a
