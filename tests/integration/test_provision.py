"""Vault-provision against the REAL bw CLI: ``provision --all`` over every tenant-level fault with
one vault session, and the refusals of one tenant (tests/integration/provision_world.py: the
world; test_provision_single.py, test_provision_local.py: the rest of these tests)."""

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.integration.provision_world import (
    AGENT_GID,
    AGENT_UID,
    NODE_DOTENV,
    OP_PASSWORD,
    TRICKY,
    ProcessScan,
    World,
    _private_dir,
    _write_creds,
    add_tenant,
    files_under,
    make_world,
    read_back,
    set_collection_id,
    tenant_row,
)
from tests.servers.vaultwarden import Collection

pytestmark = pytest.mark.integration


@pytest.fixture(name="world", scope="module")
def world_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from make_world(tmp_path_factory)


# --- the tests ---------------------------------------------------------------------------------


def test_batch_provision_every_fault_one_session_and_no_leak(world: World, tmp_path: Path) -> None:
    require(NODE_DOTENV.is_dir(), "node dotenv in tests/tools (npm ci)")
    vault, org_id = world.server.vault, world.env["COLIBRI_VAULT_ORGANIZATION_ID"]
    org = vault.orgs[org_id]

    def collection(name: str, *items: tuple[str, dict[str, str], str | None]) -> Collection:
        col = vault.add_collection(org, name)
        for item_name, fields, notes in items:
            world.items[f"{name}/{item_name}"] = vault.add_item(col, item_name, fields=fields, notes=notes)
        return col

    collection("acme", ("env", TRICKY, "API_KEY=sk-acme-1\n# a comment\nexport REGION=eu\n"))
    collection("dupkeys", ("one", {"TOKEN": "a"}, None), ("two", {}, "TOKEN=b"))
    collection("badkey", ("env", {"BAD-KEY": "v"}, None))
    collection("nulval", ("env", {"NUL": "a\0b"}, None))
    collection("bigval", ("env", {"BIG": "x" * 10_000_000}, None))
    collection("quotebad", ("env", {"Q": "it's $HOME"}, None))
    for name in ("symlinkenv", "homeetc", "outside", "nouser"):
        collection(name, ("env", {"K": "v"}, None))
    renamed = collection("renamed", ("env", {"K": "v"}, None))
    deleted = collection("deleted", ("env", {"K": "v"}, None))

    envs = {t: add_tenant(world, t) for t in ("acme", "ghost", "dupkeys", "badkey", "nulval", "bigval", "quotebad")}
    envs["nocoll"] = add_tenant(world, "nocoll", "")
    envs["symlinkenv"] = add_tenant(world, "symlinkenv")
    victim = tmp_path / "victim"
    victim.write_text("precious")
    envs["symlinkenv"].symlink_to(victim)
    envs["homeetc"] = add_tenant(world, "homeetc")
    home_dir = envs["homeetc"].parent.parent
    (home_dir / "agent").rmdir()
    home_dir.rmdir()
    home_dir.symlink_to("/etc")
    outside_root = world.base / "elsewhere" / "outside" / "root"
    envs["outside"] = add_tenant(world, "outside", root=outside_root)
    envs["nouser"] = add_tenant(world, "nouser")
    (world.jails / "nouser" / "root" / "etc" / "passwd").write_text("root:*:0:0::/root:/bin/sh\n")
    for name, col in (("renamed", renamed), ("deleted", deleted)):
        envs[name] = add_tenant(world, name)
        set_collection_id(world, name, col.id)
    vault.rename_collection(renamed, "renamed-elsewhere")
    vault.delete_collection(deleted)
    staged = _private_dir(world.base / "staged" / "staged")
    (staged / "provider.env").write_text("OPENROUTER_API_KEY=sk-or-staged\n")
    (staged / "provider.env").chmod(0o600)
    envs["staged"] = add_tenant(world, "staged")
    old = b"OLD='kept'\n"
    for tenant in (
        "ghost",
        "dupkeys",
        "badkey",
        "nulval",
        "bigval",
        "quotebad",
        "nouser",
        "renamed",
        "deleted",
        "outside",
    ):
        envs[tenant].write_bytes(old)
    world.server.clear_requests()

    with ProcessScan(world.base / "state" / "bw") as scan:
        run = world.colibri("provision", "--all", "--json")
    vault.delete_item(world.items["bigval/env"])  # 10 MB would slow every later listing
    assert run.rc == 12, str(run)
    document = run.json()
    # it failed partly, and says so (it said "ok": true), with each tenant's outcome
    assert document["ok"] is False and document["error"]["type"] == "PartialFailure", document.get("error")
    report = {r["tenant_id"]: r for r in document["data"]}
    failed = sum(1 for r in report.values() if r["outcome"] == "failed")
    # the module's world may hold other tests' tenants too: the count must match the outcomes listed
    assert failed >= 12, report
    assert document["error"]["code"] == 12
    assert f"{failed} of {len(report)} tenants failed: " in document["error"]["message"]
    outcome = {t: (r["outcome"], r["message"]) for t, r in report.items()}
    # one code for every refusal: the symlinked .env and home, the root outside were 6
    assert {r["error"]["code"] for r in report.values() if r["outcome"] == "failed"} == {12}

    # one vault session for all: one sync request, one unlock (bw lists serve from data.json)
    assert len(world.server.requests_to("/api/sync")) <= 1
    assert outcome["acme"][0] == "written" and outcome["staged"][0] == "written"
    assert outcome["nocoll"] == ("skipped", "tenant has no collection: nothing to do")
    expected_failures = {
        "ghost": "collection 'ghost' not found in organization",
        "dupkeys": "duplicate key TOKEN: from item 'one'",
        "badkey": "invalid key (item 'env'",
        "nulval": "contains a NUL byte",
        "bigval": "bytes; at most 65536 are allowed",
        "quotebad": "contains a single quote together with one of",
        "symlinkenv": "home/agent/.env: it is a symlink",
        "homeetc": "/home: it is a symlink",
        "outside": "outside the allowed roots",
        "nouser": "user agent is missing from the jail's /etc/passwd",
        "renamed": "was renamed from 'renamed' to 'renamed-elsewhere'",
        "deleted": "was deleted",
    }
    for tenant, needle in expected_failures.items():
        assert outcome[tenant][0] == "failed", (tenant, outcome[tenant])
        assert needle in outcome[tenant][1], (tenant, outcome[tenant])
        row = tenant_row(world, tenant)
        assert row.secrets_status == "stale" and needle in (row.secrets_error or "")
    for tenant in (
        "ghost",
        "dupkeys",
        "badkey",
        "nulval",
        "bigval",
        "quotebad",
        "nouser",
        "renamed",
        "deleted",
        "outside",
    ):
        assert envs[tenant].read_bytes() == old, tenant
    assert victim.read_text() == "precious" and envs["symlinkenv"].is_symlink()
    assert not Path("/etc/agent").exists()

    # the good tenant's file: 0600, owned by the jail's user, exact values through sh/python/node
    info = envs["acme"].stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o600, AGENT_UID, AGENT_GID)
    wanted = {**TRICKY, "API_KEY": "sk-acme-1", "REGION": "eu"}
    py, node, sh = read_back(envs["acme"])
    assert py == wanted and node == wanted and sh == wanted
    assert envs["staged"].read_text().endswith("OPENROUTER_API_KEY='sk-or-staged'\n")
    assert tenant_row(world, "acme").secrets_status == "ok"

    # no operator credential and no session key in any argv, jail, the store or the logs
    assert scan.bw_seen and scan.sessions, "the scan saw no bw process holding a session"
    needles = [*world.secrets(), *scan.sessions]
    for argv in scan.argvs:
        assert not any(n in argv for n in needles), argv
    for path in [*files_under(world.jails), *files_under(world.base / "state", skip=world.base / "state" / "bw")]:
        data = path.read_bytes()
        assert not any(n.encode() in data for n in needles), path
    for text in (run.stdout, run.stderr):
        assert not any(n in text for n in needles)
    assert not any(v in run.stdout + run.stderr for v in ("sk-acme-1", "sk-or-staged", "a\0b"))


def test_symlinked_env_or_home_exits_12_as_documented(world: World, tmp_path: Path) -> None:
    """Issue 9: these exited 6 while provision --help and the README say 12 (staged secrets: no bw)."""
    for tenant in ("symenv", "symhome"):
        folder = _private_dir(world.base / "staged" / tenant)
        (folder / "provider.env").write_text("K=v\n")
        (folder / "provider.env").chmod(0o600)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    add_tenant(world, "symenv").symlink_to(victim)
    home = add_tenant(world, "symhome").parent
    home.rmdir()
    home.symlink_to(tmp_path)
    for tenant, needle in (("symenv", "home/agent/.env: it is a symlink"), ("symhome", "home/agent: it is a symlink")):
        run = world.colibri("provision", tenant)
        assert run.rc == 12 and needle in run.stderr and run.stderr.count("\n") == 1, str(run)
    assert victim.read_text() == "precious"
    help_text = world.colibri("provision", "--help").stdout
    assert "exit code is 12" in " ".join(help_text.split())


def test_vault_status_reports_bw_logged_in_to_another_server(world: World) -> None:
    """Issue 9: it showed server_matches False and no problem (bw status is local: no request)."""
    run = world.colibri("vault", "status", "--json", extra={"COLIBRI_VAULT_URL": "https://vault.invalid"})
    assert run.rc == 0, str(run)
    data = run.json()["data"]
    assert data["server_matches"] is False
    assert any(
        f"is logged in to {world.server.url}" in p
        and "not to vault_url https://vault.invalid" in p
        and "run 'colibri vault login'" in p
        for p in data["problems"]
    ), data["problems"]
    run = world.colibri("vault", "status")
    assert run.rc == 0 and "problems" in run.stdout and "logged in to" not in run.stdout, str(run)


def test_wrong_master_password_keeps_old_env_and_marks_stale(world: World, tmp_path: Path) -> None:
    env = add_tenant(world, "wrongpw")
    env.write_bytes(b"OLD='kept'\n")
    creds = tmp_path / "creds"
    _write_creds(creds, (world.client_id, world.client_secret, "not the master password"))
    run = world.colibri("provision", "wrongpw", extra={"COLIBRI_VAULT_CREDENTIALS_DIR": str(creds)})
    assert run.rc == 12, str(run)
    assert run.stderr == "colibri: bw unlock failed: wrong master password: bw could not decrypt the vault key\n"
    assert env.read_bytes() == b"OLD='kept'\n"
    assert tenant_row(world, "wrongpw").secrets_status == "stale"


def test_wrong_server_url_is_refused_before_any_credential_is_sent(world: World) -> None:
    add_tenant(world, "wrongurl")
    world.server.clear_requests()
    run = world.colibri("provision", "wrongurl", extra={"COLIBRI_VAULT_URL": "https://vault.invalid"})
    assert run.rc == 12, str(run)
    assert "not to vault_url https://vault.invalid: refusing to send credentials" in run.stderr
    assert world.server.requests == []


def test_loose_credentials_dir_is_refused(world: World, tmp_path: Path) -> None:
    add_tenant(world, "loose")
    creds = tmp_path / "loose-creds"
    _write_creds(creds, (world.client_id, world.client_secret, OP_PASSWORD))
    (creds / "client_secret").chmod(0o640)
    run = world.colibri("provision", "loose", extra={"COLIBRI_VAULT_CREDENTIALS_DIR": str(creds)})
    assert run.rc == 12, str(run)  # every provisioning refusal is 12 (was 6, PermissionDenied)
    assert f"{creds / 'client_secret'} is mode 0640: refusing it" in run.stderr
