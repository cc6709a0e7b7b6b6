"""The audit across hosts (issue 12): a tenant of another host is spawned, provisioned and moved;
the change is in the log of the host that made it, what the orchestrator asked and got back in
its own, and no entry anywhere holds a secret value (names and keyed digests only)."""

import json

from sqlalchemy import text

from tests.unit.hosts.conftest import SECRET, Hive
from tests.unit.hosts.conftest import hive_fixture as hive_fixture  # the three-host hive, one store


def actions(hive: Hive) -> list[tuple[str, str, str, str]]:
    with hive.remotes["osa"].context.store.engine.connect() as conn:
        rows = conn.execute(text("SELECT body FROM audit_entries ORDER BY host, seq")).all()
    found = [json.loads(row[0]) for row in rows]
    return [(e["action"], e["subject"], e["outcome"], json.dumps(e["detail"])) for e in found]


def test_spawn_provision_and_move_of_another_hosts_tenant_are_recorded(hive: Hive) -> None:
    hive.enrol("osa")
    hive.enrol("domedog")
    assert hive.cli("register-tenant", "acme", "--host", "osa")[0] == 0
    hive.stage("acme", f"OPENROUTER_API_KEY={SECRET}\n")
    code, _, err = hive.cli("spawn-agent", "acme")
    assert code == 0, err
    found = actions(hive)
    names = [a for a, _, _, _ in found]
    assert "remote.spawn" in names  # what the orchestrator asked, and the answer
    assert {"spawn.begin", "spawn.step", "spawn.done", "secrets.provision"} <= set(names)  # osa's own changes
    provisioned = [json.loads(d) for a, _, _, d in found if a == "secrets.provision"]
    assert provisioned[-1]["keys"] == ["OPENROUTER_API_KEY"]
    assert str(provisioned[-1]["digest"]).startswith("hmac-sha256:")

    code, _, err = hive.cli("provision", "acme")
    assert code == 0, err
    after = [a for a, _, _, _ in actions(hive)][len(found) :]
    assert "secrets.send" in after and "remote.write_env" in after
    sent = [json.loads(d) for a, _, _, d in actions(hive) if a == "secrets.send"][-1]
    assert sent["keys"] == ["OPENROUTER_API_KEY"] and sent["to_host"] == "osa"
    again = [json.loads(d) for a, _, _, d in actions(hive) if a == "secrets.provision"][-1]  # osa wrote it again
    assert again["digest"] == provisioned[-1]["digest"]  # the same text under osa's key: the same digest
    assert sent["digest"] != again["digest"]  # each host keys its digests with its own key, never shared

    code, _, err = hive.cli("move-tenant", "acme", "--to", "domedog", "--yes")
    assert code == 0, err
    moved = [a for a, _, _, _ in actions(hive)]
    assert {"remote.destroy", "tenant.move", "agent.destroy"} <= set(moved)
    assert moved.count("remote.spawn") == 2
    everything = json.dumps(actions(hive))
    assert SECRET not in everything and SECRET not in hive.stored_text()
