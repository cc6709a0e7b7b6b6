"""The orchestrator's own record is the authority over where secrets go (review R1 and its
siblings): a host that rewrites a shared row (a tenant's placement, another host's pin, a tenant
count) is refused before anything is sent, ``reconcile`` reports the difference and ``--apply``
restores the record's values; the record itself is root-only and refused otherwise."""

import json
import os
from typing import Any

import pytest
from sqlmodel import Session

from colibri.adapters.jail import JailState
from colibri.errors import StateConflict
from colibri.store.hosts import HostRepo
from colibri.store.models import Host, Tenant
from tests.unit.hosts.conftest import SECRET, Hive

FORGED_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE"


def _as_domedog(hive: Hive) -> Session:
    """A session with domedog's own database credentials (every host of a hive has them)."""
    return Session(hive.remotes["domedog"].context.store.engine)


def _place(hive: Hive, tenant_id: str, host: str) -> None:
    with _as_domedog(hive) as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        tenant.host = host
        session.add(tenant)
        session.commit()


def _sent_secret(hive: Hive, host: str) -> bool:
    return any(SECRET in text for _, text in hive.remotes[host].link.transcript)


def _drifts(hive: Hive, *args: str) -> tuple[int, list[tuple[Any, ...]]]:
    code, out, _ = hive.cli("reconcile", "--json", *args)
    return code, [(d["host"], d["kind"], d["tenant"], d["applied"]) for d in json.loads(out)["data"]]


def test_a_tenant_of_the_orchestrator_claimed_by_a_host_is_never_sent_there(hive: Hive) -> None:
    hive.enrol("osa")
    hive.enrol("domedog")
    assert hive.cli("register-tenant", "beta")[0] == 0  # lives on the orchestrator itself
    hive.stage("beta", f"OPENROUTER_API_KEY={SECRET}\n")
    _place(hive, "beta", "domedog")
    code, _, err = hive.cli("spawn-agent", "beta")
    assert code == 5 and err.count("\n") == 1, err
    assert "places it on host domedog" in err and "record of placement on testhost" in err
    assert hive.cli("provision", "beta")[0] != 0
    assert not _sent_secret(hive, "domedog") and hive.remotes["domedog"].link.ops_sent() == []
    assert _drifts(hive) == (0, [("testhost", "placement_diverged", "beta", False)])
    assert _drifts(hive, "--apply") == (0, [("testhost", "placement_diverged", "beta", True)])
    assert hive.show("beta")["host"] == "testhost"
    assert _drifts(hive) == (0, [])


def test_a_forged_pin_is_refused_reported_and_restored(hive: Hive) -> None:
    hive.enrol("osa")
    hive.enrol("domedog")
    assert hive.cli("register-tenant", "acme", "--host", "osa")[0] == 0
    hive.stage("acme", f"OPENROUTER_API_KEY={SECRET}\n")
    assert hive.cli("spawn-agent", "acme")[0] == 0
    with _as_domedog(hive) as session:
        row = session.get(Host, "osa")
        assert row is not None
        row.address, row.host_keys = "192.0.2.66", FORGED_KEY
        session.add(row)
        session.commit()
    hive.reached.clear()
    code, _, err = hive.cli("stop-agent", "acme")
    assert code == 19 and "address, host_keys of host osa differ" in err and err.count("\n") == 1, err
    assert hive.reached == []  # nothing was reached, with either pin
    code, out, _ = hive.cli("hosts", "show", "osa", "--json")
    assert code == 0 and "differ" in json.loads(out)["data"]["diverged"]
    code, found = _drifts(hive)
    assert code == 19 and ("osa", "pin_diverged", None, False) in found
    assert ("osa", "unreachable_host", None, False) in found  # not reached while it disagrees
    code, found = _drifts(hive, "--apply")
    assert code == 0 and found[0] == ("osa", "pin_diverged", None, True), found
    with hive.remotes["osa"].context.store.session() as session:
        restored = HostRepo(session).get("osa")
        assert (
            restored is not None and restored.address == "192.0.2.10" and FORGED_KEY not in (restored.host_keys or "")
        )
    assert hive.cli("provision", "acme")[0] == 0
    assert all(FORGED_KEY not in reach.host_keys for reach in hive.reached)
    assert not _sent_secret(hive, "domedog")


def test_a_deleted_host_row_is_refused_and_restored(hive: Hive) -> None:
    hive.enrol("osa")
    assert hive.cli("register-tenant", "acme", "--host", "osa", "--collection", "")[0] == 0
    with _as_domedog(hive) as session:
        row = session.get(Host, "osa")
        session.delete(row)
        session.commit()
    code, _, err = hive.cli("spawn-agent", "acme")
    assert code == 19 and "missing from the shared database" in err, err
    assert hive.remotes["osa"].link.ops_sent() == []
    assert _drifts(hive, "--apply")[1][0] == ("osa", "pin_diverged", None, True)
    assert hive.cli("spawn-agent", "acme")[0] == 0


def test_hosts_remove_counts_the_records_tenants_not_the_shared_count(hive: Hive) -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ4jS2T5Jm3cD3XqoP2i8VnR8nJb3TPO6lS0bYl5Y7+y"
    assert hive.cli("hosts", "add", "osa", "--ssh", "colibri@192.0.2.10", "--host-key", key)[0] == 0
    assert hive.cli("register-tenant", "acme", "--host", "osa", "--collection", "")[0] == 0
    _place(hive, "acme", "domedog")  # the shared count of osa's tenants is now 0
    code, _, err = hive.cli("hosts", "remove", "osa")
    assert code == 5 and "still has 1 tenant" in err, err
    assert hive.record().pin("osa") is not None


def test_a_host_only_the_shared_database_knows_takes_no_tenant(hive: Hive) -> None:
    with _as_domedog(hive) as session:  # a host row no operator enrolled on this orchestrator
        session.add(Host(name="rogue", ssh_user="root", address="192.0.2.77", port=22, host_keys=FORGED_KEY))
        session.commit()
    code, _, err = hive.cli("register-tenant", "acme", "--host", "rogue")
    assert code == 4 and "host not found: rogue" in err, err
    code, out, _ = hive.cli("hosts", "show", "rogue", "--json")
    assert code == 0 and json.loads(out)["data"]["pinned"] is False
    assert "not enrolled on this orchestrator" in json.loads(out)["data"]["diverged"]


def test_the_record_must_be_root_only(hive: Hive) -> None:
    hive.enrol("osa")
    assert hive.cli("register-tenant", "acme", "--host", "osa", "--collection", "")[0] == 0
    path = hive.record().path
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o644)
    code, _, err = hive.cli("spawn-agent", "acme")
    assert code == 3 and "must be owned by uid" in err and err.count("\n") == 1, err
    assert hive.remotes["osa"].link.ops_sent() == []
    path.chmod(0o600)
    real = path.with_name("real.json")
    path.rename(real)
    os.symlink(real, path)
    code, _, err = hive.cli("spawn-agent", "acme")
    assert code == 3 and "symlink" in err, err
    path.unlink()
    real.write_text("{not json")
    real.chmod(0o600)
    real.rename(path)
    code, _, err = hive.cli("spawn-agent", "acme")
    assert code == 3 and "not a record colibri wrote" in err, err
    assert hive.remotes["osa"].link.ops_sent() == []


def test_a_single_host_never_writes_the_record(hive: Hive) -> None:
    assert hive.cli("register-tenant", "solo")[0] == 0
    assert hive.cli("remove-tenant", "solo")[0] == 0
    assert not hive.record().path.exists() and not hive.record().path.with_name("orchestrator.json.lock").exists()


def test_a_stale_copy_owed_is_refused_by_a_host_where_the_tenant_lives(hive: Hive) -> None:
    """A host destroys a stale copy only when its store does not place the tenant there."""
    from colibri.errors import RemoteError

    hive.enrol("osa")
    hive.enrol("domedog")
    assert hive.cli("register-tenant", "acme", "--host", "osa", "--collection", "")[0] == 0
    assert hive.cli("spawn-agent", "acme")[0] == 0
    osa = hive.remotes["osa"]
    osa.link.down = RemoteError("cannot reach host osa (192.0.2.10:22): no route to host")
    assert hive.cli("move-tenant", "acme", "--to", "domedog", "--yes", "--old-host-lost")[0] == 0
    osa.link.down = None
    answer = osa.link.call("destroy_stale", {"tenant": "acme"})
    assert answer == {"destroyed": True}
    assert osa.link.call("destroy_stale", {"tenant": "acme"}) == {"destroyed": False}  # again: nothing left
    with pytest.raises(StateConflict, match="lives here"):  # the host where it lives refuses
        hive.remotes["domedog"].link.call("destroy_stale", {"tenant": "acme"})
    assert hive.remotes["domedog"].fake.info("acme").state is JailState.RUNNING


def test_a_move_leaves_nothing_on_the_old_host_whatever_the_shared_row_says_of_its_jail(hive: Hive) -> None:
    hive.enrol("osa")
    hive.enrol("domedog")
    assert hive.cli("register-tenant", "acme", "--host", "osa")[0] == 0
    hive.stage("acme", f"OPENROUTER_API_KEY={SECRET}\n")
    assert hive.cli("spawn-agent", "acme")[0] == 0
    with _as_domedog(hive) as session:  # "acme has no jail": the move would skip the destroy on osa
        tenant = session.get(Tenant, "acme")
        assert tenant is not None
        tenant.status, tenant.jail_root, tenant.backend, tenant.spawn_step = "registered", None, None, None
        session.add(tenant)
        session.commit()
    code, _, err = hive.cli("move-tenant", "acme", "--to", "domedog", "--yes")
    assert code == 0, err
    osa = hive.remotes["osa"]
    left = [p for p in osa.root.rglob("*") if p.is_file() and not p.is_symlink() and SECRET.encode() in p.read_bytes()]
    assert left == [] and osa.fake.info("acme").state is JailState.ABSENT
    assert hive.record().read().owed == {}


def test_a_stale_copy_stays_owed_while_its_host_does_not_answer(hive: Hive) -> None:
    from colibri.errors import RemoteError

    hive.enrol("osa")
    hive.enrol("domedog")
    assert hive.cli("register-tenant", "acme", "--host", "osa", "--collection", "")[0] == 0
    assert hive.cli("spawn-agent", "acme")[0] == 0
    osa = hive.remotes["osa"]
    osa.link.down = RemoteError("cannot reach host osa (192.0.2.10:22): no route to host")
    assert hive.cli("move-tenant", "acme", "--to", "domedog", "--yes", "--old-host-lost")[0] == 0
    code, found = _drifts(hive, "--apply")
    assert (
        code == 13
        and ("osa", "stale_copy", "acme", False) in found
        and ("osa", "unreachable_host", None, False) in found
    )
    assert hive.record().read().owed == {"osa": ["acme"]}
    assert hive.cli("move-tenant", "acme", "--to", "osa", "--yes")[0] != 0  # osa still down: nothing moved there
    osa.link.down = None
    assert hive.cli("move-tenant", "acme", "--to", "osa", "--yes")[0] == 0  # back where its copy was
    assert hive.record().read().owed == {}  # osa lives it again; domedog confirmed its copy gone
    assert osa.fake.info("acme").state is JailState.RUNNING  # the live copy, never destroyed as stale


def test_a_host_cannot_pull_another_tenants_secrets_into_a_jail_of_the_orchestrator(hive: Hive) -> None:
    hive.enrol("osa")
    hive.enrol("domedog")
    assert hive.cli("register-tenant", "beta", "--collection", "")[0] == 0  # on the orchestrator
    assert hive.cli("spawn-agent", "beta")[0] == 0
    assert hive.cli("register-tenant", "acme", "--host", "osa")[0] == 0
    hive.stage("acme", f"OPENROUTER_API_KEY={SECRET}\n")
    assert hive.cli("spawn-agent", "acme")[0] == 0
    beta = hive.show("beta")
    with _as_domedog(hive) as session:  # "acme lives on the orchestrator, in beta's jail"
        tenant = session.get(Tenant, "acme")
        assert tenant is not None
        tenant.host, tenant.jail_root, tenant.backend = "testhost", str(beta["jail_root"]), str(beta["backend"])
        session.add(tenant)
        session.commit()
    code, _, err = hive.cli("provision", "acme")
    assert code != 0 and "record of placement on osa" in err, err
    jail = hive.orchestrator.root("beta")
    assert not any(SECRET.encode() in p.read_bytes() for p in jail.rglob("*") if p.is_file() and not p.is_symlink())


def test_r1_sibling_a_forged_jail_root_never_puts_a_tenants_env_in_another_tenants_jail(hive: Hive) -> None:
    """Found while fixing R1: the host that writes a tenant's .env (here the orchestrator, for its
    own tenants; a remote host for its own) took the jail's root from the shared row, which any
    host can write.  Now the root must be where the host's own backend keeps the tenant's jail."""
    assert hive.cli("register-tenant", "beta", "--collection", "")[0] == 0
    assert hive.cli("spawn-agent", "beta")[0] == 0
    assert hive.cli("register-tenant", "acme")[0] == 0
    hive.stage("acme", f"OPENROUTER_API_KEY={SECRET}\n")
    assert hive.cli("spawn-agent", "acme")[0] == 0
    beta = hive.show("beta")
    _place(hive, "acme", "testhost")  # the placement is not forged: only the jail root is
    with _as_domedog(hive) as session:
        tenant = session.get(Tenant, "acme")
        assert tenant is not None
        tenant.jail_root = str(beta["jail_root"])
        session.add(tenant)
        session.commit()
    code, _, err = hive.cli("provision", "acme")
    assert code == 12 and "not where this host's backend keeps its jail" in err, err
    jail = hive.orchestrator.root("beta")
    assert not any(SECRET.encode() in p.read_bytes() for p in jail.rglob("*") if p.is_file() and not p.is_symlink())


def test_a_remote_host_writes_a_tenants_env_only_in_that_tenants_jail(hive: Hive) -> None:
    hive.enrol("osa")
    hive.enrol("domedog")
    for tenant in ("acme", "beta"):
        assert hive.cli("register-tenant", tenant, "--host", "osa", "--collection", "")[0] == 0
        assert hive.cli("spawn-agent", tenant)[0] == 0
    hive.stage("acme", f"OPENROUTER_API_KEY={SECRET}\n")
    beta = hive.show("beta")
    with _as_domedog(hive) as session:  # acme's row on osa now names beta's jail
        tenant = session.get(Tenant, "acme")
        assert tenant is not None
        tenant.jail_root = str(beta["jail_root"])
        session.add(tenant)
        session.commit()
    code, _, err = hive.cli("provision", "acme")
    assert code == 12 and "not where this host's backend keeps its jail" in err, err
    jail = hive.remotes["osa"].fake.root("beta")
    assert not any(SECRET.encode() in p.read_bytes() for p in jail.rglob("*") if p.is_file() and not p.is_symlink())


def test_r1_sibling_a_row_forged_to_a_local_home_never_puts_a_tenants_env_in_another_tenants_jail(hive: Hive) -> None:
    """A row that says backend ``local`` (spawn-local) names a home: the host writes a .env only in
    the home spawn-local recorded in its own state_dir, never in one the shared row names."""
    assert hive.cli("register-tenant", "beta", "--collection", "")[0] == 0
    assert hive.cli("spawn-agent", "beta")[0] == 0
    assert hive.cli("register-tenant", "acme")[0] == 0
    hive.stage("acme", f"OPENROUTER_API_KEY={SECRET}\n")
    assert hive.cli("spawn-agent", "acme")[0] == 0
    home = hive.orchestrator.root("beta") / "home/agent"
    with _as_domedog(hive) as session:
        tenant = session.get(Tenant, "acme")
        assert tenant is not None
        tenant.jail_root, tenant.backend = str(home), "local"
        session.add(tenant)
        session.commit()
    code, _, err = hive.cli("provision", "acme")
    assert code == 12 and "recorded no spawn-local home" in err, err
    jail = hive.orchestrator.root("beta")
    assert not any(SECRET.encode() in p.read_bytes() for p in jail.rglob("*") if p.is_file() and not p.is_symlink())


def test_a_host_that_is_no_orchestrator_judges_no_placement(hive: Hive) -> None:
    """Without a record (no host enrolled here), reconcile --apply never rewrites where another
    host's tenants live: this host placed none of them."""
    from colibri.services.tenants import TenantService

    osa = hive.remotes["osa"]
    TenantService(osa.context.store, "osa").register("oscar", "", None)  # osa's own colibri
    code, found = _drifts(hive, "--apply")
    assert code == 0 and [f for f in found if f[1] == "placement_diverged"] == []
    assert hive.show("oscar")["host"] == "osa" and not hive.record().exists()


def test_a_tenant_another_host_registered_is_reported_never_moved_and_recorded_when_the_operator_says(
    hive: Hive,
) -> None:
    from colibri.services.tenants import TenantService

    hive.enrol("osa")
    osa = hive.remotes["osa"]
    TenantService(osa.context.store, "osa").register("oscar", "", None)  # osa's own colibri registered it
    code, found = _drifts(hive, "--apply")
    assert code == 0 and found == [("testhost", "placement_diverged", "oscar", False)]  # reported, not applied
    assert hive.show("oscar")["host"] == "osa"
    assert hive.cli("spawn-agent", "oscar")[0] == 5 and osa.link.ops_sent() == ["reconcile"]  # no spawn sent
    assert hive.cli("register-tenant", "oscar", "--host", "osa", "--collection", "")[0] == 0  # the operator says
    assert hive.record().read().placed("oscar") == "osa"
    assert _drifts(hive) == (0, [])
    assert hive.cli("spawn-agent", "oscar")[0] == 0
