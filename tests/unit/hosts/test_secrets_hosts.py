"""Secrets with many hosts: rendered on the orchestrator, only the .env text sent, to the
tenant's host only; provision --all with one vault session for every host; fail-closed."""

import logging
from pathlib import Path

import pytest

from colibri.cli.context import Adapters, Context
from colibri.errors import RemoteError
from colibri.services.secrets import SecretsConfig, SecretsService
from tests.unit.hosts.conftest import SECRET, Hive
from tests.unit.test_secrets_service import FakeCredentials, FakeVault


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def test_the_secret_goes_only_to_its_host_and_only_inside_the_write_frames(
    hive: Hive, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hive.enrol("osa")
    hive.enrol("domedog")
    assert hive.cli("register-tenant", "acme", "--host", "osa")[0] == 0
    assert hive.cli("register-tenant", "dome", "--host", "domedog", "--collection", "")[0] == 0
    hive.stage("acme", f"OPENROUTER_API_KEY={SECRET}\n")
    shown = [hive.cli("spawn-agent", "acme", "dome"), hive.cli("provision", "acme"), hive.cli("show-tenant", "acme")]
    rotated = SECRET + "-rotated"
    hive.stage("acme", f"OPENROUTER_API_KEY={rotated}\n")
    shown.append(hive.cli("provision", "--all", "--json"))
    assert [s[0] for s in shown] == [0, 0, 0, 0], shown
    osa = hive.remotes["osa"]
    home = hive.env_of("osa", "acme").parent
    (home / ".env").unlink()
    (home / ".env").symlink_to("/etc/hostname")  # the jail's root tries a symlink: refused there
    shown.append(hive.cli("provision", "acme"))
    assert shown[-1][0] == 12 and "symlink" in shown[-1][2]

    carriers = [(kind, text) for kind, text in osa.link.transcript if SECRET in text]
    assert carriers and all(kind == "request" for kind, _ in carriers)
    assert {text.split('"op": "', 1)[1].split('"', 1)[0] for _, text in carriers} == {"spawn_many", "write_env"}
    assert hive.remotes["domedog"].link.transcript and not any(
        SECRET in text for _, text in hive.remotes["domedog"].link.transcript
    )
    assert not any(SECRET in out or SECRET in err for _, out, err in shown)
    assert not any(SECRET in record.getMessage() or SECRET in str(record.args) for record in caplog.records)
    assert "acme" in hive.stored_text() and SECRET not in hive.stored_text()
    for db in hive.base.glob("store.db*"):  # SQLite's file and journal, free pages included
        assert SECRET.encode() not in db.read_bytes()
    for path in _files_under(hive.remotes["domedog"].root) + _files_under(hive.base / "testhost-jails"):
        assert SECRET.encode() not in path.read_bytes(), path
    assert hive.show("acme")["secrets_status"] == "stale"


def test_spawn_fails_closed_when_the_secrets_cannot_be_rendered_nothing_is_sent(hive: Hive) -> None:
    hive.enrol("osa")
    assert hive.cli("register-tenant", "acme", "--host", "osa")[0] == 0
    hive.stage("acme", f"OPENROUTER_API_KEY={SECRET}\n")
    (hive.base / "colibri-home/db/staged/acme/provider.env").chmod(0o644)  # readable by all: refused
    code, out, err = hive.cli("spawn-agent", "acme")
    assert code == 12 and "provider.env is mode 0644" in err and SECRET not in err + out
    osa = hive.remotes["osa"]
    assert osa.link.ops_sent() == [] and osa.fake.calls == []  # at most the version handshake went out
    record = hive.show("acme")
    assert (record["status"], record["secrets_status"]) == ("registered", "stale")


def test_provision_all_is_one_vault_session_for_every_host_and_a_down_host_fails_alone(hive: Hive) -> None:
    from colibri.adapters.bitwarden_output import VaultCollection, VaultItem

    hive.enrol("osa")
    hive.enrol("domedog")
    placed = {"ant": "osa", "bee": "domedog", "cow": "testhost", "dog": "osa", "eel": "domedog"}
    for tenant, host in placed.items():
        assert hive.cli("register-tenant", tenant, "--host", host)[0] == 0
        hive.stage(tenant, "FIRST=1\n")
    assert hive.cli("spawn-agent", *placed)[0] == 0
    for tenant in placed:  # from now on the vault is the source
        (hive.base / "colibri-home/db/staged" / tenant / "provider.env").unlink()
    vault = FakeVault(
        [VaultCollection(f"c-{t}", t) for t in placed],
        [VaultItem(f"i-{t}", "env", (f"c-{t}",), None, (("KEY", f"value-of-{t}"),)) for t in placed],
    )
    context = Context(adapters=Adapters(jail_backend=hive.orchestrator, host_links=hive.link))
    settings = context.settings
    config = SecretsConfig(settings.host, "agent", settings.staged_dir, tuple(settings.allowed_secret_roots), "org-1")
    lifecycle = context.lifecycle()
    service = SecretsService(context.store, config, vault, FakeCredentials(), send_env=lifecycle.send_env)
    domedog = hive.remotes["domedog"].link
    before = domedog.attempts
    domedog.down = RemoteError("cannot reach host domedog (192.0.2.10:22): connection refused")
    results = {r.tenant_id: r for r in service.provision_all()}
    assert vault.snapshots == 1 and vault.selected == [{f"c-{t}" for t in placed}]
    assert {t: r.outcome for t, r in results.items()} == {
        "ant": "written", "bee": "failed", "cow": "written", "dog": "written", "eel": "failed",
    }  # fmt: skip
    assert results["bee"].error is not None and results["bee"].error.exit_code == 13
    assert domedog.attempts == before + 1  # the host that failed is not asked again for its next tenant
    assert results["ant"].path == f"osa:{hive.env_of('osa', 'ant')}"
    for tenant in ("ant", "dog"):
        assert hive.env_of("osa", tenant).read_text().endswith(f"KEY='value-of-{tenant}'\n")
    assert (hive.orchestrator.root("cow") / "home/agent/.env").read_text().endswith("KEY='value-of-cow'\n")
    assert hive.remotes["domedog"].fake.root("bee").joinpath("home/agent/.env").read_text().endswith("FIRST='1'\n")
    assert hive.show("bee")["secrets_status"] == "stale" and hive.show("ant")["secrets_status"] == "ok"
    context.close()
