"""Review R (issue 11): the control plane attacked by a hostile remote host (its root holds the
hive's database URL, and it answers the orchestrator's ops).  Each test is a finding: strict xfail
until it is fixed."""

from collections.abc import Mapping
from typing import Any

from sqlmodel import Session

from colibri.store.models import Tenant
from tests.fakes.hostlink import FakeHostLink
from tests.unit.hosts.conftest import SECRET, Hive


def test_r1_a_host_that_rewrites_a_tenants_placement_never_receives_its_secrets(hive: Hive) -> None:
    hive.enrol("osa")
    hive.enrol("domedog")
    assert hive.cli("register-tenant", "acme", "--host", "osa")[0] == 0
    hive.stage("acme", f"OPENROUTER_API_KEY={SECRET}\n")
    assert hive.cli("spawn-agent", "acme")[0] == 0
    domedog = hive.remotes["domedog"]
    with Session(domedog.context.store.engine) as session:  # domedog's own database credentials
        tenant = session.get(Tenant, "acme")
        assert tenant is not None
        tenant.host = "domedog"
        session.add(tenant)
        session.commit()
    hive.cli("provision", "acme")  # the operator's routine rotation, run on the orchestrator
    assert not any(SECRET in text for _, text in domedog.link.transcript)  # fails: acme's key went to domedog


def test_r2_a_remote_error_never_makes_the_command_exit_0(hive: Hive) -> None:
    hive.enrol("osa")
    assert hive.cli("register-tenant", "acme", "--host", "osa", "--collection", "")[0] == 0

    def spawn(args: Mapping[str, Any]) -> dict[str, Any]:  # a hostile (or buggy) host's answer
        return {"steps": [], "error": {"type": "JailError", "code": 0, "message": "nothing was created"}}

    hive.remotes["osa"].link = FakeHostLink("osa", {"spawn": spawn, "version": lambda _args: {"host": "osa"}})
    code, _, err = hive.cli("spawn-agent", "acme")
    assert "nothing was created" in err
    assert code != 0  # fails: 0, the operator's script takes the failed spawn for a success


def test_r15_a_lost_host_that_comes_back_keeps_no_secret_of_a_moved_tenant(hive: Hive) -> None:
    from colibri.errors import RemoteError

    hive.enrol("osa")
    hive.enrol("domedog")
    assert hive.cli("register-tenant", "acme", "--host", "osa")[0] == 0
    hive.stage("acme", f"OPENROUTER_API_KEY={SECRET}\n")
    assert hive.cli("spawn-agent", "acme")[0] == 0
    osa = hive.remotes["osa"]
    osa.link.down = RemoteError("cannot reach host osa (192.0.2.10:22): no route to host")
    assert hive.cli("move-tenant", "acme", "--to", "domedog", "--yes", "--old-host-lost")[0] == 0
    osa.link.down = None  # it came back after all
    hive.cli("reconcile", "--apply")  # the operator's routine repair on the orchestrator
    left = [p for p in osa.root.rglob("*") if p.is_file() and not p.is_symlink() and SECRET.encode() in p.read_bytes()]
    assert left == []  # fails: acme's .env (its provider key) is still on osa, its jail running


def test_r16_two_hosts_enrolled_crosswise_never_get_each_others_secrets(hive: Hive) -> None:
    hive.enrol("osa")
    assert hive.cli("register-tenant", "acme", "--host", "osa")[0] == 0
    hive.stage("acme", f"OPENROUTER_API_KEY={SECRET}\n")
    domedog = hive.remotes["domedog"]
    hive.remotes["osa"].link = domedog.link  # the operator enrolled osa with domedog's address and key
    code, _, err = hive.cli("spawn-agent", "acme")
    assert code != 0 and "domedog" in err  # refused there: acme lives on osa
    assert not any(SECRET in text for _, text in domedog.link.transcript)  # fails: it crossed to domedog first


def test_r1_a_host_that_rewrites_another_hosts_pin_is_never_trusted_with_its_tenants(hive: Hive) -> None:
    from colibri.store.models import Host

    hive.enrol("osa")
    hive.enrol("domedog")
    assert hive.cli("register-tenant", "acme", "--host", "osa")[0] == 0
    hive.stage("acme", f"OPENROUTER_API_KEY={SECRET}\n")
    assert hive.cli("spawn-agent", "acme")[0] == 0
    forged = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE"
    with Session(hive.remotes["domedog"].context.store.engine) as session:  # domedog's database credentials
        row = session.get(Host, "osa")
        assert row is not None
        row.address, row.host_keys = "192.0.2.66", forged  # domedog's own address and key, under osa's name
        session.add(row)
        session.commit()
    hive.reached.clear()
    hive.cli("provision", "acme")
    assert all(reach.host_keys != (forged,) for reach in hive.reached)  # fails: the forged pin is used
