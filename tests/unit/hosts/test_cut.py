"""The SSH connection cut in the middle of a spawn or a provision: re-running converges, no
partial .env, no forgotten jail (on the fake link: tests/fakes/hostlink.py)."""

import os

import pytest

from colibri.adapters import envfile
from colibri.adapters.jail import JailState
from tests.fakes.hostlink import HostDied
from tests.unit.hosts.conftest import SECRET, Hive


def _spawnable(hive: Hive, tenant: str = "acme") -> None:
    hive.enrol("osa")
    assert hive.cli("register-tenant", tenant, "--host", "osa")[0] == 0
    hive.stage(tenant, f"OPENROUTER_API_KEY={SECRET}\n")


@pytest.mark.parametrize("at", ["mount", "start"])  # right after the create; at the jail's start
def test_the_host_dies_mid_spawn_and_a_rerun_converges(hive: Hive, monkeypatch: pytest.MonkeyPatch, at: str) -> None:
    _spawnable(hive)
    osa = hive.remotes["osa"].fake
    real = getattr(osa, at)

    def dies(*args: object, **kwargs: object) -> object:
        monkeypatch.setattr(osa, at, real)  # once: the host comes back for the re-run
        raise HostDied

    monkeypatch.setattr(osa, at, dies)
    code, out, err = hive.cli("spawn-agent", "acme")
    assert (code, err) == (13, "colibri: host osa: the SSH channel was lost\n")
    record = hive.show("acme")
    assert record["status"] == "spawning" and record["spawn_step"] in (None, "jail_created")
    assert osa.info("acme").state is not JailState.ABSENT  # the jail made before the cut stays known
    code, out, err = hive.cli("spawn-agent", "acme")  # the re-run finds it
    assert (code, out.splitlines()[-1], err) == (0, "active: acme", "")
    assert osa.calls.count(("create", "acme")) == 1
    assert hive.show("acme")["status"] == "active"
    assert hive.env_of("osa", "acme").read_text().endswith(f"OPENROUTER_API_KEY='{SECRET}'\n")
    assert hive.cli("reconcile") == (0, "no drift\n", "")


def test_an_answer_lost_after_the_host_finished_converges(hive: Hive) -> None:
    _spawnable(hive)
    link = hive.remotes["osa"].link
    link.lose_answer = {"spawn"}
    assert hive.cli("spawn-agent", "acme")[0] == 13
    assert hive.show("acme")["status"] == "active"  # it did finish there
    link.lose_answer = set()
    code, out, err = hive.cli("spawn-agent", "acme")
    assert (code, out.splitlines()[-1], err) == (0, "active: acme", "")
    assert hive.remotes["osa"].fake.calls.count(("create", "acme")) == 1


def test_a_cut_before_the_write_keeps_the_old_env_and_a_rerun_writes_the_new(hive: Hive) -> None:
    _spawnable(hive)
    assert hive.cli("spawn-agent", "acme")[0] == 0
    env = hive.env_of("osa", "acme")
    before = env.read_bytes()
    hive.stage("acme", "OPENROUTER_API_KEY=sk-rotated-2\n")
    link = hive.remotes["osa"].link
    link.cut_after = link.requests  # the channel is gone: the next request reaches nothing
    code, _, err = hive.cli("provision", "acme")
    assert code == 13 and err == "colibri: host osa: the SSH channel was lost\n"
    assert env.read_bytes() == before
    assert hive.show("acme")["secrets_status"] == "stale"
    link.cut_after = None
    assert hive.cli("provision", "acme")[0] == 0
    assert env.read_text().endswith("OPENROUTER_API_KEY='sk-rotated-2'\n")
    assert hive.show("acme")["secrets_status"] == "ok"


def test_the_host_dies_inside_the_write_no_partial_env(hive: Hive, monkeypatch: pytest.MonkeyPatch) -> None:
    _spawnable(hive)
    assert hive.cli("spawn-agent", "acme")[0] == 0
    env = hive.env_of("osa", "acme")
    before = env.read_bytes()
    hive.stage("acme", "OPENROUTER_API_KEY=sk-rotated-2\n")
    real = os.rename

    def dies(*args: object, **kwargs: object) -> None:
        raise HostDied  # killed with its session between the temporary file and the rename

    monkeypatch.setattr(envfile.os, "rename", dies)
    assert hive.cli("provision", "acme")[0] == 13
    monkeypatch.setattr(envfile.os, "rename", real)
    assert env.read_bytes() == before  # the old file whole, never a part of the new one
    home = env.parent
    assert [p.name for p in home.iterdir() if p.name.startswith(".env.colibri.")] != []  # the killed writer's
    assert hive.cli("provision", "acme")[0] == 0
    assert env.read_text().endswith("OPENROUTER_API_KEY='sk-rotated-2'\n")
    assert sorted(p.name for p in home.iterdir()) == [".env"]  # its leftover removed


def test_an_unreachable_host_is_one_failed_reconcile_item(hive: Hive) -> None:
    hive.enrol("osa")
    hive.enrol("domedog")
    assert hive.cli("register-tenant", "ant", "--host", "osa", "--collection", "")[0] == 0
    assert hive.cli("spawn-agent", "ant")[0] == 0
    hive.remotes["osa"].fake.stop("ant")  # behind colibri's back
    from colibri.errors import RemoteError

    hive.remotes["domedog"].link.down = RemoteError("cannot reach host domedog (192.0.2.10:22): timed out")
    code, out, err = hive.cli("reconcile")
    assert code == 13, err
    rows = [line.split()[:3] for line in out.splitlines()[1:]]
    assert rows == [["domedog", "unreachable_host", "-"], ["osa", "stopped_jail", "ant"]] or rows == [
        ["osa", "stopped_jail", "ant"],
        ["domedog", "unreachable_host", "-"],
    ]
    assert err.startswith("colibri: 1 host(s) could not be reconciled: host domedog: cannot reach host domedog")
    assert "Traceback" not in err and err.count("\n") == 1
    code, out, err = hive.cli("reconcile", "--apply", "--json")
    import json

    document = json.loads(out)
    assert code == 13 and document["ok"] is False and document["error"]["code"] == 13
    items = {(d["host"], d["kind"]): d for d in document["data"]}
    assert items[("osa", "stopped_jail")]["applied"] is True
    assert items[("domedog", "unreachable_host")]["error"].startswith("cannot reach host domedog")
    assert hive.remotes["osa"].fake.info("ant").state is JailState.RUNNING
