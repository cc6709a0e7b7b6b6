"""Vault-provision of one tenant against the REAL bw CLI: two at once, a change in the vault, every
bad value named (a file of its own, with its own world, so xdist runs it beside test_provision.py)."""

import time
from collections.abc import Iterator

import pytest

from tests.integration.provision_world import (
    ProcessScan,
    Run,
    World,
    add_tenant,
    make_world,
    tenant_row,
)

pytestmark = pytest.mark.integration


@pytest.fixture(name="world", scope="module")
def world_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from make_world(tmp_path_factory)


# --- the tests ---------------------------------------------------------------------------------


def test_two_at_once_idempotent_and_a_vault_change_is_picked_up(world: World) -> None:
    vault = world.server.vault
    col = vault.add_collection(vault.orgs[world.env["COLIBRI_VAULT_ORGANIZATION_ID"]], "solo")
    item = vault.add_item(col, "env", fields={"TOKEN": "v1"})
    env = add_tenant(world, "solo")
    runs = [Run.start(world, ("provision", "solo", "--json")) for _ in range(2)]
    results = [r.wait() for r in runs]
    assert [r.rc for r in results] == [0, 0], [str(r) for r in results]
    outcomes = sorted(r.json()["data"]["outcome"] for r in results)
    assert outcomes == ["unchanged", "written"], [str(r) for r in results]
    assert env.read_text().endswith("TOKEN='v1'\n")
    first = tenant_row(world, "solo").secrets_changed_at
    inode = env.stat().st_ino

    time.sleep(1.1)  # secrets_changed_at has a resolution of one second
    vault.set_field(item, "TOKEN", "v2")
    run = world.colibri("provision", "solo", "--json")
    assert run.rc == 0 and run.json()["data"]["outcome"] == "written", str(run)
    assert env.read_text().endswith("TOKEN='v2'\n") and env.stat().st_ino != inode
    assert tenant_row(world, "solo").secrets_changed_at != first


def test_one_tenant_names_every_bad_value_and_lists_only_its_own_collection(world: World) -> None:
    """Issue 9: a refused tenant named only its first bad value (one fix per 20-30 s run), and
    provisioning one tenant listed (decrypted, kept) every item of the organization."""
    vault = world.server.vault
    org = vault.orgs[world.env["COLIBRI_VAULT_ORGANIZATION_ID"]]
    col = vault.add_collection(org, "multi")
    vault.add_item(col, "env", fields={"NUL": "nul\0val", "1BAD": "v1bad", "OK": "okval"}, notes="free text\nOK=dupval")
    other = vault.add_collection(org, "bystander")
    vault.add_item(other, "env", fields={"K": "v"})
    env = add_tenant(world, "multi")
    env.write_bytes(b"OLD='kept'\n")
    with ProcessScan(world.base / "state" / "bw") as scan:
        run = world.colibri("provision", "multi")
    assert run.rc == 12, str(run)
    lines = run.stderr.splitlines()
    assert (
        lines[0]
        == "colibri: secrets of tenant multi from collection multi: 4 problems, nothing written; the old .env is kept:"
    )
    assert len(lines) == 5, run.stderr
    assert "'NUL' (item 'env'" in run.stderr and "contains a NUL byte" in run.stderr
    assert "invalid key (item 'env'" in run.stderr and "notes line 1 is not KEY=VALUE" in run.stderr
    assert "duplicate key OK: from item 'env'" in run.stderr
    assert not any(v in run.stdout + run.stderr for v in ("nul\0val", "v1bad", "okval", "free text", "dupval"))
    assert env.read_bytes() == b"OLD='kept'\n"
    listings = [a for a in scan.bw_calls if "list items" in a]  # this colibri's bw only (ProcessScan)
    assert listings and all(a.endswith(f"list items --collectionid {col.id}") for a in listings), listings
    run = world.colibri("provision", "multi", "--json")
    document = run.json()
    assert (run.rc, document["ok"], document["error"]["code"]) == (12, False, 12)
    assert document["data"]["outcome"] == "failed" and document["data"]["problems_total"] == 4
