"""The Vaultwarden-compatible test server, proven against the real bw CLI (pinned 2026.9.0).

Each bw process costs about 3-5 s, so the happy path shares one logged-in, unlocked appdata
dir per module, and the HTTP-level checks use a tiny Python client instead of bw.
"""

from __future__ import annotations

import json
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers.vaultwarden import (
    Collection,
    Field,
    Item,
    Login,
    Organization,
    Role,
    User,
    VaultwardenServer,
    client,
    crypto,
    start,
)
from tests.servers.vaultwarden import fixtures as vw_fixtures
from tests.servers.vaultwarden.bwcli import BwCli

pytestmark = pytest.mark.integration

# Re-exported by assignment (not import) so pytest finds them and ruff sees no shadowed import.
bw_bin = vw_fixtures.bw_bin
vaultwarden = vw_fixtures.vaultwarden
vaultwarden_module = vw_fixtures.vaultwarden_module

ALICE_PW = "correct horse battery staple"
BOB_PW = "bob's master password"


@dataclass
class World:
    server: VaultwardenServer
    alice: User
    bob: User
    org: Organization
    tenant_a: Collection
    tenant_b: Collection
    env_item: Item


def seed(server: VaultwardenServer) -> World:
    vault = server.vault
    alice = vault.add_user("Alice@Example.com", ALICE_PW)
    bob = vault.add_user("bob@example.com", BOB_PW)
    org = vault.add_org("Acme", owner=alice)
    tenant_a = vault.add_collection(org, "tenant-a")
    tenant_b = vault.add_collection(org, "tenant-b")
    vault.add_member(org, bob, Role.USER, collections=[tenant_b])
    env_item = vault.add_item(
        tenant_a,
        "tenant-a/.env",
        notes="line one\nline two: ünïcödé",
        fields=[Field.text("DB_URL", "postgres://db/a"), Field.hidden("API_TOKEN", "s3cr3t=/+")],
    )
    vault.add_item(tenant_a, "web", login=Login("admin", "hunter2", ["https://a.example"]))
    vault.add_item(tenant_b, "tenant-b/.env", fields={"DB_URL": "postgres://db/b"})
    return World(server, alice, bob, org, tenant_a, tenant_b, env_item)


# --- without bw: crypto and HTTP behaviour ----------------------------------------------------


def test_crypto_round_trip() -> None:
    keys = crypto.make_account_keys("a@example.com", "pw", 5000)
    master = crypto.master_key("pw", "A@Example.com", 5000)  # salt is the lower-cased mail
    assert crypto.decrypt(keys.wrapped_user_key, crypto.stretch(master)) == keys.user_key.raw
    assert keys.auth_hash == crypto.master_password_hash(master, "pw")
    wrong = crypto.stretch(crypto.master_key("wrong", "a@example.com", 5000))
    with pytest.raises(ValueError, match="MAC"):
        crypto.decrypt(keys.wrapped_user_key, wrong)
    with pytest.raises(ValueError, match="5000"):
        crypto.master_key("pw", "a@example.com", 1000)


def _login(server: VaultwardenServer, user: User) -> dict[str, object]:
    reply = client.request(
        server,
        "POST",
        "/identity/connect/token",
        form=client.api_key_form(user.client_id, user.client_secret),
    )
    assert reply.status == 200, reply.body
    return dict(reply.json())


def test_python_client_decrypts_the_seeded_vault(vaultwarden: VaultwardenServer) -> None:
    world = seed(vaultwarden)
    token = _login(vaultwarden, world.bob)
    sync = client.request(vaultwarden, "GET", "/api/sync?excludeDomains=true", token=str(token["access_token"]))
    plain = client.decrypt_vault(token, sync.json(), BOB_PW)
    # bob is a plain member with access to tenant-b only
    assert set(plain["collections"]) == {"tenant-b"}
    assert plain["items"] == {
        "tenant-b/.env": {
            "notes": None,
            "fields": {"DB_URL": "postgres://db/b"},
            "collectionIds": [world.tenant_b.id],
        }
    }
    own = client.request(
        vaultwarden, "GET", f"/api/organizations/{world.org.id}/collections", token=str(token["access_token"])
    )
    assert own.status == 404  # plain members use /api/collections, like in Vaultwarden


def test_token_errors_use_vaultwarden_shapes(vaultwarden: VaultwardenServer) -> None:
    world = seed(vaultwarden)
    bad = client.api_key_form(world.alice.client_id, "wrong")
    reply = client.request(vaultwarden, "POST", "/identity/connect/token", form=bad)
    assert reply.status == 400
    assert reply.json()["error"] == "invalid_client"
    assert reply.json()["errorModel"]["message"] == "Incorrect client_secret"
    form = {
        "grant_type": "password",
        "username": world.alice.email,
        "password": "nope",
        "scope": "api offline_access",
    }
    reply = client.request(vaultwarden, "POST", "/identity/connect/token", form=form)
    assert (reply.status, reply.json()["error"]) == (400, "invalid_grant")
    form = {"grant_type": "refresh_token", "refresh_token": "unknown"}
    reply = client.request(vaultwarden, "POST", "/identity/connect/token", form=form)
    assert (reply.status, reply.json()["error"]) == (400, "invalid_grant")


def test_api_checks_jwt_signature_and_expiry() -> None:
    with start(token_ttl=-1) as server:  # every token is born expired
        world = seed(server)
        expired = str(_login(server, world.alice)["access_token"])
        assert client.request(server, "GET", "/api/sync", token=expired).status == 401
    with start() as server:
        world = seed(server)
        good = str(_login(server, world.alice)["access_token"])
        assert client.request(server, "GET", "/api/accounts/revision-date", token=good).status == 200
        forged = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
        assert client.request(server, "GET", "/api/sync", token=forged).status == 401
        assert client.request(server, "GET", "/api/sync").status == 401


def test_revision_date_moves_on_every_change(vaultwarden: VaultwardenServer) -> None:
    world = seed(vaultwarden)
    token = str(_login(vaultwarden, world.alice)["access_token"])

    def revision() -> int:
        return int(client.request(vaultwarden, "GET", "/api/accounts/revision-date", token=token).json())

    before = revision()
    vaultwarden.vault.set_field(world.env_item, "DB_URL", "postgres://db/a2")
    after_field = revision()
    vaultwarden.vault.rename_collection(world.tenant_b, "tenant-b-renamed")
    assert before < after_field < revision()


def test_failure_modes(vaultwarden: VaultwardenServer) -> None:
    vaultwarden.set_mode("garbage")
    reply = client.request(vaultwarden, "GET", "/api/sync")
    assert reply.status == 200
    with pytest.raises(json.JSONDecodeError):
        reply.json()
    vaultwarden.set_mode("down")
    with pytest.raises(urllib.error.URLError):
        client.request(vaultwarden, "GET", "/api/config")
    assert Path(vaultwarden.ca_cert_path).exists()  # kept, so clients fail on the connection


# --- with the real bw CLI ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def alice_bw(
    bw_bin: Path,
    vaultwarden_module: VaultwardenServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[World, BwCli]]:
    """alice (org owner) logged in with her API key and unlocked, shared by the tests below."""
    world = seed(vaultwarden_module)
    bw = BwCli(vaultwarden_module, tmp_path_factory.mktemp("bw-alice"), bw_bin)
    bw.configure().ok()
    bw.login_apikey(world.alice).ok()
    bw.unlock(ALICE_PW).ok()
    assert len(bw.session or "") == 88
    yield world, bw


def test_bw_sees_decrypted_org_collections_and_items(alice_bw: tuple[World, BwCli]) -> None:
    world, bw = alice_bw
    assert world.alice.user_key_id is not None  # bw backfilled its key id during unlock
    bw.run("sync", "--force").ok()

    [org] = bw.run("list", "organizations").json()
    assert (org["id"], org["name"], org["type"]) == (world.org.id, "Acme", 0)
    cols = bw.run("list", "org-collections", "--organizationid", world.org.id).json()
    assert sorted(c["name"] for c in cols) == ["tenant-a", "tenant-b"]
    assert world.server.requests_to(f"/api/organizations/{world.org.id}/collections")  # owner endpoint

    items = {i["name"]: i for i in bw.run("list", "items", "--collectionid", world.tenant_a.id).json()}
    assert set(items) == {"tenant-a/.env", "web"}
    env = items["tenant-a/.env"]
    assert env["notes"] == "line one\nline two: ünïcödé"
    assert [(f["name"], f["value"], f["type"]) for f in env["fields"]] == [
        ("DB_URL", "postgres://db/a", 0),
        ("API_TOKEN", "s3cr3t=/+", 1),
    ]
    assert (items["web"]["login"]["username"], items["web"]["login"]["password"]) == ("admin", "hunter2")


def test_bw_sees_changes_after_sync_force(alice_bw: tuple[World, BwCli]) -> None:
    world, bw = alice_bw
    vault = world.server.vault
    vault.set_field(world.env_item, "DB_URL", "postgres://db/a-moved")
    vault.update_item(world.env_item, notes="rotated")
    vault.add_item(world.tenant_a, "added", notes="new")
    vault.delete_item(next(i for i in vault.items.values() if i.name == "web"))
    bw.run("sync", "--force").ok()
    items = {i["name"]: i for i in bw.run("list", "items", "--collectionid", world.tenant_a.id).json()}
    assert set(items) == {"tenant-a/.env", "added"}
    assert items["tenant-a/.env"]["notes"] == "rotated"
    assert items["tenant-a/.env"]["fields"][0]["value"] == "postgres://db/a-moved"


def test_bw_wrong_master_password_fails(alice_bw: tuple[World, BwCli]) -> None:
    _, bw = alice_bw
    result = bw.run("unlock", "--passwordenv", "PW", "--raw", env={"PW": "not it"})
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert "decryption operation failed" in result.stderr, result


def test_bw_wrong_client_secret_fails(bw_bin: Path, vaultwarden: VaultwardenServer, tmp_path: Path) -> None:
    world = seed(vaultwarden)
    bw = BwCli(vaultwarden, tmp_path, bw_bin)
    bw.configure().ok()
    result = bw.login_apikey(world.alice, client_secret="wrong")
    assert result.returncode == 1, result
    assert "client_id or client_secret is incorrect" in result.stderr, result


def test_bw_plain_member_password_login(bw_bin: Path, vaultwarden: VaultwardenServer, tmp_path: Path) -> None:
    world = seed(vaultwarden)
    bw = BwCli(vaultwarden, tmp_path, bw_bin)
    bw.configure().ok()
    bw.login_password(world.bob).ok()
    cols = bw.run("list", "org-collections", "--organizationid", world.org.id).json()
    assert [c["name"] for c in cols] == ["tenant-b"]
    assert vaultwarden.requests_to("/api/collections")  # the plain-member endpoint
    assert [r.grant_type for r in vaultwarden.requests_to("/identity/connect/token")][:1] == ["password"]


def test_bw_without_user_key_id_route_fails_first_unlock_only(bw_bin: Path, tmp_path: Path) -> None:
    # Real Vaultwarden releases have no user-key-id route; bw 2026.9.0 then crashes once
    # and stores a 24 h cooldown, so the retry succeeds.
    with start(user_key_id_route=False) as server:
        world = seed(server)
        bw = BwCli(server, tmp_path, bw_bin)
        bw.configure().ok()
        bw.login_apikey(world.alice).ok()
        first = bw.unlock(ALICE_PW)
        assert first.returncode == 1, first
        assert "KeyIdBackfillError" in first.stderr, first
        assert [r.status for r in server.requests_to("/api/accounts/key-management/user-key-id")] == [404]
        bw.unlock(ALICE_PW).ok()
        assert len(bw.session or "") == 88
        assert world.alice.user_key_id is None
