"""SecretsService with a fake vault injected at the adapter boundary, on a real SQLite store."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import SecretStr

from colibri.adapters.bitwarden_output import Selector, VaultCollection, VaultItem, VaultSnapshot
from colibri.adapters.credentials import OperatorCredentials
from colibri.errors import PermissionDenied, SecretsError, SecretsRefused, TenantNotFound, VaultLocked
from colibri.services.secrets import SecretsConfig, SecretsService
from colibri.services.tenants import TenantService
from colibri.store.db import Store
from colibri.store.models import Tenant

CREDS = OperatorCredentials(SecretStr("id"), SecretStr("secret"), SecretStr("pw"))


@dataclass
class FakeVault:
    """The adapter's contract: ``select`` names the collections whose items are listed."""

    collections: list[VaultCollection] = field(default_factory=list)
    items: list[VaultItem] = field(default_factory=list)
    error: Exception | None = None
    snapshots: int = 0
    selected: list[set[str]] = field(default_factory=list)

    def snapshot(self, credentials: OperatorCredentials, select: Selector | None = None) -> VaultSnapshot:
        self.snapshots += 1
        if self.error is not None:
            raise self.error
        collections = tuple(self.collections)
        if select is None:
            return VaultSnapshot(collections, tuple(self.items))
        wanted = set(select(collections))
        self.selected.append(wanted)
        return VaultSnapshot(collections, tuple(i for i in self.items if wanted.intersection(i.collection_ids)))


class FakeCredentials:
    def load(self) -> OperatorCredentials:
        return CREDS


@dataclass
class World:
    store: Store
    vault: FakeVault
    service: SecretsService
    jails: Path
    staged: Path

    def add(self, tenant: str, collection: str | None = None) -> Path:
        TenantService(self.store, "testhost").register(tenant, collection, None)
        root = self.jails / tenant / "root"
        (root / "home" / "agent").mkdir(parents=True)
        (root / "etc").mkdir()
        (root / "etc" / "passwd").write_text(f"agent:*:{os.geteuid()}:{os.getegid()}::/home/agent:/bin/sh\n")
        with self.store.session() as session:
            row = session.get(Tenant, tenant)
            assert row is not None
            row.backend, row.jail_root = "sandbox", str(root)
        return root / "home" / "agent" / ".env"

    def row(self, tenant: str) -> Tenant:
        with self.store.session() as session:
            row = session.get(Tenant, tenant)
            assert row is not None
            return row


@pytest.fixture(name="world")
def world_fixture(tmp_path: Path) -> World:
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    vault = FakeVault(
        [VaultCollection("c-acme", "acme"), VaultCollection("c-beta", "beta")],
        [
            VaultItem("i1", "env", ("c-acme",), "A=1\n# note\n", (("B", "two"),)),
            VaultItem("i2", "beta", ("c-beta",), None, (("X", "x"),)),
        ],
    )
    config = SecretsConfig("testhost", "agent", tmp_path / "staged", (tmp_path / "jails",), "org-1")
    return World(
        store, vault, SecretsService(store, config, vault, FakeCredentials()), tmp_path / "jails", tmp_path / "staged"
    )


def test_provision_writes_then_changes_nothing(world: World) -> None:
    env = world.add("acme")
    result = world.service.provision("acme")
    assert (result.outcome, result.keys, result.source) == ("written", ("A", "B"), "collection acme")
    assert env.read_text().split("\n")[1:] == ["A='1'", "B='two'", ""]
    row = world.row("acme")
    assert (row.secrets_status, row.collection_id, row.secrets_error) == ("ok", "c-acme", None)
    changed_at = row.secrets_changed_at
    assert world.service.provision("acme").outcome == "unchanged"
    assert world.row("acme").secrets_changed_at == changed_at


def test_vault_error_keeps_old_env_and_marks_stale(world: World) -> None:
    env = world.add("acme")
    world.service.provision("acme")
    before = env.read_bytes()
    world.vault.error = VaultLocked("bw unlock failed: wrong master password")
    with pytest.raises(VaultLocked):
        world.service.provision("acme")
    assert env.read_bytes() == before
    row = world.row("acme")
    assert (row.secrets_status, row.secrets_error) == ("stale", "bw unlock failed: wrong master password")


def test_no_collection_is_a_noop_that_says_so(world: World) -> None:
    env = world.add("plain", collection="")
    result = world.service.provision("plain")
    assert (result.outcome, result.message) == ("skipped", "tenant has no collection: nothing to do")
    assert not env.exists() and world.vault.snapshots == 0
    assert world.row("plain").secrets_status == "none"


def test_missing_renamed_and_deleted_collections(world: World) -> None:
    world.add("ghost")
    with pytest.raises(SecretsError, match="collection 'ghost' not found in organization org-1"):
        world.service.provision("ghost")
    world.add("acme")
    world.service.provision("acme")
    world.vault.collections[0] = VaultCollection("c-acme", "acme-renamed")
    with pytest.raises(SecretsError, match="renamed from 'acme' to 'acme-renamed'"):
        world.service.provision("acme")
    world.vault.collections[0] = VaultCollection("c-new", "acme")
    with pytest.raises(SecretsError, match=r"\(id c-acme\) was deleted; a new collection"):
        world.service.provision("acme")
    world.vault.items[0] = VaultItem("i1", "env", ("c-new",), "A=9", ())
    assert world.service.provision("acme", rebind=True).outcome == "written"
    assert world.row("acme").collection_id == "c-new"


def test_batch_uses_one_snapshot_and_reports_each_tenant(world: World) -> None:
    world.add("acme")
    world.add("beta")
    world.add("ghost")
    TenantService(world.store, "testhost").register("nojail", None, None)
    results = {r.tenant_id: r for r in world.service.provision_all()}
    assert world.vault.snapshots == 1
    assert {k: r.outcome for k, r in results.items()} == {
        "acme": "written",
        "beta": "written",
        "ghost": "failed",
        "nojail": "skipped",
    }
    assert results["nojail"].message == "tenant nojail has no jail yet: spawn it first"


def test_staged_provider_env_wins_and_must_be_root_only(world: World) -> None:
    env = world.add("acme")
    folder = world.staged / "acme"
    folder.mkdir(parents=True, mode=0o700)
    world.staged.chmod(0o700)
    (folder / "provider.env").write_text("OPENROUTER_API_KEY=sk-or-1\n")
    (folder / "provider.env").chmod(0o600)
    result = world.service.provision("acme")
    assert (result.source, result.keys) == ("staged provider.env", ("OPENROUTER_API_KEY",))
    assert env.read_text().endswith("OPENROUTER_API_KEY='sk-or-1'\n")
    assert world.vault.snapshots == 0
    (folder / "provider.env").chmod(0o644)
    with pytest.raises(SecretsError, match=r"provider.env is mode 0644") as info:
        world.service.provision("acme")
    assert info.value.exit_code == 12 and isinstance(info.value.__cause__, PermissionDenied)
    assert world.row("acme").secrets_status == "stale"


def test_unknown_tenant(world: World) -> None:
    with pytest.raises(TenantNotFound):
        world.service.provision("nobody")


def test_a_bug_in_one_tenant_does_not_stop_provision_all(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception while writing one tenant (a bug, or a jail that found one) is that
    tenant's failure: --all goes on with the others, and the store says what happened."""
    from colibri.adapters import envfile

    real = envfile.staged_jail_env

    @contextmanager
    def flaky(
        root: Path, user: str, content: bytes, allowed: object, *, id_shift: int = 0
    ) -> Iterator[tuple[Path, envfile.Install | None]]:
        if "acme" in str(root):
            raise OverflowError("uid is greater than maximum")
        with real(root, user, content, allowed, id_shift=id_shift) as staged:  # type: ignore[arg-type]
            yield staged

    monkeypatch.setattr(envfile, "staged_jail_env", flaky)
    world.add("acme")
    beta = world.add("beta")
    results = {r.tenant_id: r for r in world.service.provision_all()}
    assert {k: r.outcome for k, r in results.items()} == {"acme": "failed", "beta": "written"}
    assert results["acme"].message == "internal error (OverflowError) while provisioning acme"
    assert world.row("acme").secrets_status == "stale" and beta.read_text().endswith("X='x'\n")


def test_every_provisioning_refusal_is_a_secrets_error_exit_12(world: World, tmp_path: Path) -> None:
    """Issue 9: a symlinked .env or home exited 6 (PermissionDenied) while provision's --help and
    the README say 12; and its siblings: a jail root outside the allowed roots, a loose staged
    file (above), a timed-out bw."""
    from colibri.errors import CommandTimeout

    env = world.add("acme")
    victim = tmp_path / "victim"
    victim.write_text("precious")
    env.symlink_to(victim)
    with pytest.raises(SecretsError, match=r"home/agent/.env: it is a symlink") as info:
        world.service.provision("acme")
    assert info.value.exit_code == 12 and victim.read_text() == "precious"
    beta = world.add("beta")
    home = beta.parent
    home.rmdir()
    home.symlink_to(tmp_path)
    with pytest.raises(SecretsError, match=r"home/agent: it is a symlink") as info:
        world.service.provision("beta")
    assert info.value.exit_code == 12
    world.vault.error = CommandTimeout("bw sync", 60)
    world.add("gamma")
    with pytest.raises(SecretsError, match=r"timed out after 60 s: bw sync") as info:
        world.service.provision("gamma")
    assert info.value.exit_code == 12
    assert {world.row(t).secrets_status for t in ("acme", "beta", "gamma")} == {"stale"}


def test_one_tenant_lists_only_its_own_collection(world: World) -> None:
    """Issue 9: provisioning one tenant kept every tenant's decrypted items in memory."""
    world.add("acme")
    world.add("beta")
    assert world.service.provision("acme").keys == ("A", "B")
    assert world.vault.selected == [{"c-acme"}]
    world.vault.selected.clear()
    world.service.provision_all()
    assert world.vault.selected == [{"c-acme", "c-beta"}]


def test_a_refused_tenant_names_every_bad_value_at_once(world: World) -> None:
    env = world.add("acme")
    env.write_text("OLD='kept'\n")
    world.vault.items[0] = VaultItem(
        "i1", "env", ("c-acme",), "A=1\npasted-secret-alone\nB=dup\n", (("B", "two"), ("C", "x\0y"), ("1X", "v"))
    )
    result = world.service.provision("acme", check=False)
    assert result.outcome == "failed" and isinstance(result.error, SecretsRefused)
    assert result.error.total == 4
    shown = result.public()
    assert shown["problems_total"] == 4 and len(shown["problems"]) == 4
    assert shown["problems"][0] == "item 'env' (i1) notes line 2 is not KEY=VALUE"
    assert "x\0y" not in str(shown) and "pasted-secret" not in str(shown)
    assert env.read_text() == "OLD='kept'\n"
    assert all(p in (world.row("acme").secrets_error or "") for p in shown["problems"])


def test_no_collection_and_nothing_staged_expects_no_secrets(world: World) -> None:
    world.add("plain", collection="")
    assert world.service.provision("plain").secrets_expected is False
    env = world.add("acme")
    assert world.service.provision("acme").secrets_expected is True and env.exists()


def test_ctrl_c_in_provision_all_reports_what_was_done(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C at the 2nd tenant of ``provision --all`` (review 9 F8's sibling): the first is
    reported written, the one in hand interrupted, the rest not run; the CLI ends with exit 130."""
    from colibri.adapters import envfile
    from colibri.services.secrets_report import interruption

    real = envfile.staged_jail_env

    @contextmanager
    def interrupted(
        root: Path, user: str, content: bytes, allowed: object, *, id_shift: int = 0
    ) -> Iterator[tuple[Path, envfile.Install | None]]:
        if "beta" in str(root):
            raise KeyboardInterrupt
        with real(root, user, content, allowed, id_shift=id_shift) as staged:  # type: ignore[arg-type]
            yield staged

    monkeypatch.setattr(envfile, "staged_jail_env", interrupted)
    for tenant in ("acme", "beta", "gamma"):
        world.add(tenant)
    results = world.service.provision_all()
    assert [(r.tenant_id, r.outcome) for r in results] == [
        ("acme", "written"),
        ("beta", "interrupted"),
        ("gamma", "not run"),
    ]
    stopped = interruption(results)
    assert stopped is not None and stopped.exit_code == 130
    assert stopped.message == "provisioning interrupted (Ctrl-C) at tenant beta: 1 done, 1 not run"
    assert results[1].public()["error"] == {"type": "Interrupted", "code": 130}
    with pytest.raises(KeyboardInterrupt):  # one tenant: the Ctrl-C is the command's, as before
        world.service.provision("beta")
    world.vault.error = KeyboardInterrupt()  # during the vault session: nothing was provisioned
    assert {r.outcome for r in world.service.provision_all()} == {"not run"}


def test_a_changed_env_whose_entry_cannot_be_recorded_keeps_the_last_good_one(world: World) -> None:
    from sqlalchemy import text

    from colibri.errors import StoreError

    env = world.add("acme")
    world.service.provision("acme")
    before = env.read_bytes()
    world.vault.items[0] = VaultItem("i1", "env", ("c-acme",), "A=changed\n", (("B", "two"),))
    with world.store.engine.begin() as conn:  # every audit write refused (a full disk, a lost database)
        conn.execute(text("CREATE TRIGGER audit_refuses BEFORE INSERT ON audit_entries "
                          "BEGIN SELECT RAISE(ABORT, 'audit refused'); END"))  # fmt: skip
    with pytest.raises(StoreError):
        world.service.provision("acme")
    assert env.read_bytes() == before  # the last-known-good .env, not the unrecorded one
    assert sorted(p.name for p in env.parent.iterdir()) == [".env"]  # no staged copy of the secrets left
    with world.store.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_refuses"))
    assert world.service.provision("acme").outcome == "written"
    assert b"A='changed'" in env.read_bytes()
