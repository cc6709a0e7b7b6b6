"""The real bw (pinned, tests/tools) through colibri's adapter: a read-only call is ended once its
JSON answer is whole, and that is safe because bw writes no state after its answer.

bw 2026.9.0 idles about 2 s on rxjs cleanup timers after it answers.  colibri ends ``status`` and
``list`` at their answer (adapters/bitwarden.py); this file checks, against the real bw, the two
facts that rests on: data.json is the same at the answer as when bw has exited by itself, and a
provisioning with its reads ended early reads what one without does, leaving no bw lock and no
bw process behind; and bw's data.json after a lock is still the same when the next operation
starts, so that one skips ``bw status``."""

import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from pydantic import SecretStr

from colibri.adapters.bitwarden import BW_LOCK_DIR, Bitwarden, BwConfig
from colibri.adapters.bitwarden_output import json_complete
from colibri.adapters.credentials import OperatorCredentials
from colibri.adapters.runner import ShRunner
from tests.integration.test_vaultwarden_server import ALICE_PW, World, seed
from tests.servers.vaultwarden import fixtures as vw_fixtures
from tests.servers.vaultwarden.server import VaultwardenServer

bw_bin = vw_fixtures.bw_bin
vaultwarden_module = vw_fixtures.vaultwarden_module


class _Runner(ShRunner):
    """ShRunner that copies data.json at the moment a read's answer is whole and again when the
    call returns; with ``run_on`` it lets bw run to its own end instead of ending it there."""

    def __init__(self, data: Path, *, run_on: bool) -> None:
        super().__init__({"PATH": os.environ["PATH"]}, max_output=64 << 20)
        self.data, self.run_on = data, run_on
        self.reads: list[tuple[str, bytes, bytes]] = []  # (call, data.json at answer, at return)
        self.results: list[tuple[str, bool]] = []  # (call, ended at its answer)
        self.login_reads: list[tuple[str, bytes, bytes]] = []

    def __call__(self, argv, *, complete=None, **kwargs):  # type: ignore[no-untyped-def, override]
        at_answer: list[bytes] = []

        def watch(out: bytearray) -> bool:
            whole = bool(complete(out))
            if whole:
                at_answer.append(self.data.read_bytes())
            return whole and not self.run_on

        result = super().__call__(argv, complete=None if complete is None else watch, **kwargs)
        name = " ".join(argv[1:3])
        self.results.append((name, result.stopped))
        if at_answer:
            self.reads.append((name, at_answer[0], self.data.read_bytes()))
        return result


@pytest.fixture(scope="module")
def world(vaultwarden_module: VaultwardenServer) -> World:
    return seed(vaultwarden_module)


@pytest.fixture(scope="module")
def alice(bw_bin: Path, world: World, tmp_path_factory: pytest.TempPathFactory) -> tuple[Bitwarden, _Runner, Path]:
    """alice's ``vault login`` on a fresh data directory, every read run to its own end."""
    appdata = tmp_path_factory.mktemp("bw-answers") / "bw"
    runner = _Runner(appdata / "data.json", run_on=True)
    bw = _bitwarden(runner, bw_bin, appdata, world)
    bw.login(_alice(world))
    runner.login_reads = list(runner.reads)
    return bw, runner, appdata


def _bitwarden(runner: ShRunner, bw: Path, appdata: Path, world: World) -> Bitwarden:
    server = world.server
    return Bitwarden(runner, BwConfig(str(bw), appdata, server.url, world.org.id, server.ca_cert_path, 60.0))


def _alice(world: World) -> OperatorCredentials:
    return OperatorCredentials(
        SecretStr(world.alice.client_id), SecretStr(world.alice.client_secret), SecretStr(ALICE_PW)
    )


def _bw_processes(appdata: Path) -> Iterator[int]:
    for proc in psutil.process_iter(["environ"]):
        try:
            if (proc.info["environ"] or {}).get("BITWARDENCLI_APPDATA_DIR") == str(appdata):
                yield proc.pid
        except psutil.Error:
            continue


def test_bw_writes_no_state_after_the_answer_of_a_read(alice: tuple[Bitwarden, _Runner, Path], world: World) -> None:
    """Run to their own end, status and both lists leave data.json as it was when their answer
    was whole (logged out, locked, unlocked): ending them there loses nothing."""
    bw, runner, appdata = alice
    runner.run_on = True
    runner.reads.clear()
    runner.results.clear()
    snap = bw.snapshot(_alice(world), lambda cols: [c.id for c in cols if c.name == "tenant-a"])
    assert sorted(i.name for i in snap.items) == ["tenant-a/.env", "web"]
    assert bw.status().status == "locked"  # the state colibri leaves between operations
    reads = runner.login_reads + runner.reads
    assert [name for name, *_ in reads] == [
        "status",  # the login's: logged out, then before and after "config server"
        "status",
        "status",
        "list collections",  # unlocked
        "list collections",  # the snapshot's (no status: data.json is what the login's lock left)
        "list items",
        "status",  # locked
    ]
    for name, at_answer, at_end in reads:
        assert at_answer == at_end, f"bw {name} changed data.json after its answer"
    assert not any(stopped for _, stopped in runner.results)
    assert not (appdata / BW_LOCK_DIR).exists()


def test_reads_ended_at_their_answer_read_the_same_and_leave_nothing(
    alice: tuple[Bitwarden, _Runner, Path], world: World
) -> None:
    bw, runner, appdata = alice
    runner.run_on = False
    runner.results.clear()
    snap = bw.snapshot(_alice(world), lambda cols: [c.id for c in cols if c.name == "tenant-a"])
    assert sorted(i.name for i in snap.items) == ["tenant-a/.env", "web"]
    assert dict(runner.results) == {  # no status: data.json is what the last lock left
        "unlock --passwordenv": False,
        "sync": False,
        "list collections": True,
        "list items": True,
        "lock": False,
    }
    assert snap.bw_calls == 5
    assert not (appdata / BW_LOCK_DIR).exists()
    assert list(_bw_processes(appdata)) == []
    assert bw.status().status == "locked"
    assert runner.results[-1] == ("status", True)
    assert json_complete(bytearray((appdata / "data.json").read_bytes()))  # bw's state is whole JSON
