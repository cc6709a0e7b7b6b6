"""Operator credentials: root-only files or the keyring (an in-memory backend injected), and the
``vault`` and ``provision`` commands that need no vault."""

import io
import json
import os
from pathlib import Path

import keyring.backend
import pytest
from pydantic import SecretStr

from colibri.adapters.credentials import CredentialStore, OperatorCredentials, read_staged
from colibri.cli.app import run
from colibri.errors import PermissionDenied, SecretsError

CREDS = OperatorCredentials(SecretStr("user.1"), SecretStr("s3cret"), SecretStr("m4ster-pw-xyz"))


class MemoryKeyring(keyring.backend.KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.values.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.values[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.values.pop((service, username), None)


def test_keyring_round_trip_when_no_credentials_dir(tmp_path: Path) -> None:
    backend = MemoryKeyring()
    store = CredentialStore(tmp_path / "absent", backend)
    assert store.source() == "keyring"
    assert store.present() == {"client_id": False, "client_secret": False, "master_password": False}
    with pytest.raises(SecretsError, match="missing client_id, client_secret, master_password"):
        store.load()
    assert store.save(CREDS, "keyring") == "keyring service 'colibri'"
    assert store.load().values() == CREDS.values()
    assert backend.values[("colibri", "vault_client_secret")] == "s3cret"


def test_files_are_written_root_only_and_read_back(tmp_path: Path) -> None:
    folder = tmp_path / "creds"
    store = CredentialStore(folder)
    store.save(CREDS, "files")
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in folder.iterdir()} == {
        "client_id": "0o600",
        "client_secret": "0o600",
        "master_password": "0o600",
    }
    assert store.source() == "files" and store.load().values() == CREDS.values()


@pytest.mark.parametrize("target", ["dir", "file"])
def test_looser_modes_are_refused_naming_the_path(tmp_path: Path, target: str) -> None:
    folder = tmp_path / "creds"
    store = CredentialStore(folder)
    store.save(CREDS, "files")
    path = folder if target == "dir" else folder / "master_password"
    path.chmod(0o750 if target == "dir" else 0o644)
    with pytest.raises(PermissionDenied, match=f"{path} is mode 0"):
        store.load()


def test_symlinked_secret_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "creds"
    store = CredentialStore(folder)
    store.save(CREDS, "files")
    (folder / "client_secret").unlink()
    (folder / "client_secret").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PermissionDenied, match="is a symlink"):
        store.load()


def test_staged_provider_env_needs_root_only_dirs(tmp_path: Path) -> None:
    staged = tmp_path / "staged"
    assert read_staged(staged, "acme") is None
    (staged / "acme").mkdir(parents=True)
    (staged / "acme" / "provider.env").write_text("K=v\n")
    os.chmod(staged / "acme" / "provider.env", 0o600)
    os.chmod(staged / "acme", 0o700)
    os.chmod(staged, 0o755)
    with pytest.raises(PermissionDenied, match=f"{staged} is mode 0755"):
        read_staged(staged, "acme")
    os.chmod(staged, 0o700)
    assert read_staged(staged, "acme") == "K=v"


def test_vault_status_without_a_vault_shows_no_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    CredentialStore(tmp_path / "creds").save(CREDS, "files")
    monkeypatch.setenv("COLIBRI_VAULT_CREDENTIALS_DIR", str(tmp_path / "creds"))
    assert run(["vault", "status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)["data"]
    assert data["credentials"] == {"client_id": True, "client_secret": True, "master_password": True}
    assert data["problems"] == ["vault_url and vault_organization_id must both be set"]
    assert not any(v in json.dumps(data) for v in ("s3cret", "m4ster-pw-xyz"))


def test_provision_needs_a_tenant_or_all(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["provision"]) == 2
    assert "give a TENANT or --all" in capsys.readouterr().err


def test_vault_login_without_a_vault_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLIBRI_VAULT_CREDENTIALS_DIR", str(tmp_path / "creds"))
    monkeypatch.setattr("sys.stdin", io.StringIO("user.1\ns3cret\nm4ster-pw-xyz\n"))
    assert run(["vault", "login", "--files", "--stdin"]) == 12
    assert "the vault is not configured" in capsys.readouterr().err
    assert not (tmp_path / "creds").exists()
