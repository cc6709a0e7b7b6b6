"""Placement through the real CLI: each lifecycle command goes to the tenant's host."""

import json
import stat

from colibri.adapters.jail import JailState
from tests.unit.hosts.conftest import SECRET, Hive


def test_register_tenant_host_must_be_this_host_or_enrolled(hive: Hive) -> None:
    code, out, err = hive.cli("register-tenant", "acme", "--host", "osa")
    assert (code, out) == (4, "")
    assert err.startswith("colibri: host not found: osa (enrol it first: colibri hosts add osa")
    assert hive.cli("list-tenants", "--json")[1].count("tenant_id") == 0
    hive.enrol("osa")
    assert hive.cli("register-tenant", "acme", "--host", "osa")[0] == 0
    assert hive.cli("register-tenant", "local")[0] == 0  # the default: this host, as before
    assert (hive.show("acme")["host"], hive.show("local")["host"]) == ("osa", "testhost")


def test_a_host_not_enrolled_or_without_ssh_reach_is_one_line(hive: Hive) -> None:
    hive.enrol("osa", address=None)  # a host known by its lease only: never driven over SSH
    assert hive.cli("register-tenant", "acme", "--host", "osa", "--collection", "")[0] == 0
    code, out, err = hive.cli("stop-agent", "acme")
    assert (code, out) == (13, "")
    assert err.startswith("colibri: host osa has no SSH address, user or pinned host key enrolled")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert hive.reached == [] and hive.remotes["osa"].link.transcript == []


def test_spawn_on_another_host_then_every_command_goes_there(hive: Hive) -> None:
    hive.enrol("osa")
    assert hive.cli("register-tenant", "acme", "--host", "osa")[0] == 0
    hive.stage("acme", f"OPENROUTER_API_KEY={SECRET}\n")
    code, out, err = hive.cli("spawn-agent", "acme", "--capability", "echo", "--json")
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    done = [e["step"] for e in events if e.get("state") == "done"]
    assert done == ["jail_created", "jail_started", "secrets_provisioned", "mother_installed", "mother_started"]
    assert events[-1] == {"ok": True, "active": ["acme"]}
    osa = hive.remotes["osa"]
    assert osa.fake.info("acme").state is JailState.RUNNING
    assert hive.orchestrator.calls == []  # nothing on the orchestrator's own backend
    env = hive.env_of("osa", "acme")
    info = env.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert (info.st_uid, info.st_gid) == osa.fake.user_ids("acme", "agent")
    assert env.read_text().endswith(f"OPENROUTER_API_KEY='{SECRET}'\n")
    record = hive.show("acme")
    assert (record["status"], record["host"], record["backend"], record["secrets_status"]) == (
        "active", "osa", osa.fake.name, "ok",
    )  # fmt: skip
    assert osa.link.ops_sent() == ["spawn"]

    assert hive.cli("stop-agent", "acme") == (0, "stopped acme\n", "")
    assert osa.fake.info("acme").state is JailState.STOPPED and hive.show("acme")["status"] == "stopped"
    assert hive.cli("start-agent", "acme") == (0, "started acme\n", "")
    assert osa.fake.info("acme").state is JailState.RUNNING
    assert hive.cli("reconcile") == (0, "no drift\n", "")
    assert hive.cli("destroy-agent", "acme", "--yes") == (0, "destroyed the jail of acme\n", "")
    assert osa.fake.info("acme").state is JailState.ABSENT and not osa.fake.root("acme").exists()
    assert hive.show("acme")["status"] == "registered"
    assert osa.link.ops_sent() == ["spawn", "stop", "start", "reconcile", "destroy"]
    assert hive.orchestrator.calls == [] and len(hive.reached) == 5  # one link per command, made when needed


def test_spawn_many_spreads_over_hosts_with_one_render(hive: Hive) -> None:
    hive.enrol("osa")
    hive.enrol("domedog")
    for tenant, host in (("ant", "osa"), ("bee", "domedog"), ("cow", "testhost")):
        assert hive.cli("register-tenant", tenant, "--host", host, "--collection", "")[0] == 0
    code, out, err = hive.cli("spawn-agent", "ant", "bee", "cow")
    assert code == 0, err
    assert out.splitlines()[-1] == "active: ant bee cow"
    assert hive.remotes["osa"].fake.info("ant").state is JailState.RUNNING
    assert hive.remotes["domedog"].fake.info("bee").state is JailState.RUNNING
    assert hive.orchestrator.info("cow").state is JailState.RUNNING
    assert hive.remotes["osa"].fake.calls.count(("create", "bee")) == 0
    assert [hive.show(t)["status"] for t in ("ant", "bee", "cow")] == ["active"] * 3


def test_a_single_host_colibri_never_makes_a_link(hive: Hive) -> None:
    assert hive.cli("register-tenant", "solo", "--collection", "")[0] == 0
    for command in (("spawn-agent", "solo"), ("stop-agent", "solo"), ("start-agent", "solo"), ("reconcile",)):
        assert hive.cli(*command)[0] == 0, command
    assert hive.cli("destroy-agent", "solo", "--yes")[0] == 0
    assert hive.reached == [] and all(r.link.attempts == 0 for r in hive.remotes.values())
    assert ("create", "solo") in hive.orchestrator.calls


def test_spawn_local_is_for_a_tenant_of_this_host_only(hive: Hive) -> None:
    hive.enrol("osa")
    assert hive.cli("register-tenant", "acme", "--host", "osa", "--collection", "")[0] == 0
    home = hive.base / "home-acme"
    home.mkdir()
    code, out, err = hive.cli("spawn-local", "acme", "--home", str(home))
    assert (code, out) == (5, "")
    assert err.startswith("colibri: tenant acme lives on host osa; spawn-local runs an agent on this host (testhost)")
    assert hive.show("acme")["status"] == "registered" and list(home.iterdir()) == []
