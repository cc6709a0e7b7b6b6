"""move-tenant: nothing left on the old host, the secrets rendered again for the new one."""

import json

from colibri.adapters.jail import JailState
from tests.unit.hosts.conftest import SECRET, Hive


def test_move_tenant_leaves_nothing_on_the_old_host(hive: Hive) -> None:
    hive.enrol("osa")
    hive.enrol("domedog")
    assert hive.cli("register-tenant", "acme", "--host", "osa")[0] == 0
    hive.stage("acme", f"OPENROUTER_API_KEY={SECRET}\n")
    assert hive.cli("spawn-agent", "acme", "--capability", "echo")[0] == 0
    osa, domedog = hive.remotes["osa"], hive.remotes["domedog"]
    assert hive.env_of("osa", "acme").exists()

    code, out, err = hive.cli("move-tenant", "acme", "--to", "nowhere", "--yes")
    assert code == 4 and err.startswith("colibri: host not found: nowhere")
    assert osa.fake.info("acme").state is JailState.RUNNING and hive.show("acme")["host"] == "osa"

    code, out, err = hive.cli("move-tenant", "acme", "--to", "domedog", "--yes", "--json")
    assert code == 0, err
    assert json.loads(out.splitlines()[-1]) == {"ok": True, "tenant": "acme", "from": "osa", "to": "domedog"}
    assert osa.fake.info("acme").state is JailState.ABSENT and not osa.fake.root("acme").parent.exists()
    assert not any(SECRET.encode() in p.read_bytes() for p in osa.root.rglob("*") if p.is_file())
    assert domedog.fake.info("acme").state is JailState.RUNNING
    assert hive.env_of("domedog", "acme").read_text().endswith(f"OPENROUTER_API_KEY='{SECRET}'\n")
    record = hive.show("acme")
    assert (record["host"], record["status"], record["capabilities"]) == (
        "domedog", "active", [{"name": "echo", "version": "1"}],
    )  # fmt: skip
    assert osa.link.ops_sent()[-2:] == ["destroy", "destroy_stale"] and domedog.link.ops_sent() == ["spawn"]
    assert hive.record().read().owed == {}  # osa confirmed nothing of acme is left there
    code, out, _ = hive.cli("move-tenant", "acme", "--to", "domedog", "--yes")  # again: converges there
    assert (code, out.splitlines()[-1]) == (0, "moved acme from domedog to domedog: active")
    assert domedog.fake.calls.count(("create", "acme")) == 1


def test_move_to_this_host_and_back(hive: Hive) -> None:
    hive.enrol("osa")
    assert hive.cli("register-tenant", "acme", "--host", "osa", "--collection", "")[0] == 0
    assert hive.cli("spawn-agent", "acme")[0] == 0
    assert hive.cli("move-tenant", "acme", "--to", "testhost", "--yes")[0] == 0
    assert hive.orchestrator.info("acme").state is JailState.RUNNING
    assert hive.remotes["osa"].fake.info("acme").state is JailState.ABSENT
    assert hive.cli("move-tenant", "acme", "--to", "osa", "--yes")[0] == 0
    assert hive.orchestrator.info("acme").state is JailState.ABSENT
    assert hive.remotes["osa"].fake.info("acme").state is JailState.RUNNING


def test_move_off_a_host_lost_for_good(hive: Hive) -> None:
    from colibri.errors import RemoteError

    hive.enrol("osa")
    hive.enrol("domedog")
    assert hive.cli("register-tenant", "acme", "--host", "osa", "--collection", "")[0] == 0
    assert hive.cli("spawn-agent", "acme")[0] == 0
    osa = hive.remotes["osa"]
    osa.link.down = RemoteError("cannot reach host osa (192.0.2.10:22): no route to host")
    code, _, err = hive.cli("move-tenant", "acme", "--to", "domedog", "--yes")
    assert code == 13 and err == "colibri: cannot reach host osa (192.0.2.10:22): no route to host\n"
    assert (hive.show("acme")["host"], hive.show("acme")["status"]) == ("osa", "active")  # nothing changed
    code, out, err = hive.cli("move-tenant", "acme", "--to", "domedog", "--yes", "--old-host-lost")
    assert (code, out.splitlines()[-1]) == (0, "moved acme from osa to domedog: active"), err
    assert hive.remotes["domedog"].fake.info("acme").state is JailState.RUNNING
    osa.link.down = None  # it came back after all: its copy there is owed a destroy (R15), reported
    code, out, _ = hive.cli("reconcile", "--json")
    drifts = [(d["host"], d["kind"], d["jail"], d["tenant"], d["applied"]) for d in json.loads(out)["data"]]
    assert code == 0 and drifts == [
        ("osa", "stale_copy", "acme", "acme", False),
        ("osa", "orphan_jail", "acme", None, False),
    ]
    assert osa.fake.info("acme").state is JailState.RUNNING  # a dry run changes nothing
    code, out, _ = hive.cli("reconcile", "--apply", "--json")
    drifts = [(d["host"], d["kind"], d["jail"], d["applied"]) for d in json.loads(out)["data"]]
    assert code == 0 and drifts == [("osa", "stale_copy", "acme", True)]  # destroyed first: no orphan left
    assert osa.fake.info("acme").state is JailState.ABSENT
    assert hive.remotes["domedog"].fake.info("acme").state is JailState.RUNNING  # the live copy is untouched
    assert hive.cli("reconcile", "--json")[1].count('"kind"') == 0  # settled: nothing more is owed
