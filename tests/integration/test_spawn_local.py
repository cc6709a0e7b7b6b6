"""spawn-local: the chain without a jail, into a home directory, with the real mother skill."""

import json
import os
import stat
from pathlib import Path

import pytest

from colibri.cli.app import run
from tests.conftest import require


def test_spawn_local_writes_the_env_and_runs_the_mother(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    require(os.geteuid() == 0, "root (staged secrets and the run dir are root-only)")
    home = tmp_path / "homes" / "solo"
    home.mkdir(parents=True)
    monkeypatch.setenv("COLIBRI_SECRETS_ALLOWED_ROOTS", json.dumps([str(tmp_path / "homes")]))
    staged = Path(os.environ["COLIBRI_STATE_DIR"]) / "staged" / "solo"
    staged.mkdir(parents=True, mode=0o700)
    staged.parent.chmod(0o700)
    (staged / "provider.env").write_text("API_KEY=local-key\n")
    (staged / "provider.env").chmod(0o600)
    assert run(["register-tenant", "solo"]) == 0
    assert run(["spawn-local", "solo", "--home", str(home), "--capability", "echo"]) == 0, capsys.readouterr()
    env = home / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert "local-key" in env.read_text()
    log = (home / ".colibri/mother.log").read_text()
    assert "ready: identity read and .env checked" in log
    capsys.readouterr()
    assert run(["show-tenant", "solo", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)["data"]
    assert (record["status"], record["backend"], record["jail_root"]) == ("active", "local", str(home))
    assert run(["stop-agent", "solo"]) == 0
    assert not (home / ".colibri/mother.pid").exists()
    assert run(["destroy-agent", "solo", "--yes"]) == 0


def test_spawn_local_refuses_a_symlinked_home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert run(["register-tenant", "solo", "--collection", ""]) == 0
    capsys.readouterr()
    assert run(["spawn-local", "solo", "--home", str(tmp_path / "link")]) == 7
    assert "must be an existing directory, given as an absolute path, not a symlink" in capsys.readouterr().err


def test_a_tenant_without_secrets_runs_without_a_env(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 9: no collection and nothing staged: provisioning is a no-op, and the real mother
    then refused for want of a .env, so the tenant could never become active."""
    require(os.geteuid() == 0, "root (the run dir is root-only)")
    home = tmp_path / "homes" / "plain"
    home.mkdir(parents=True)
    assert run(["register-tenant", "plain", "--collection", ""]) == 0
    assert run(["spawn-local", "plain", "--home", str(home)]) == 0, capsys.readouterr()
    assert not (home / ".env").exists()
    identity = json.loads((home / ".colibri/agent.json").read_text())
    assert identity["secrets_expected"] is False
    log = (home / ".colibri/mother.log").read_text()
    assert "no secrets expected for tenant plain" in log and "ready: identity read" in log
    capsys.readouterr()
    assert run(["show-tenant", "plain", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["status"] == "active"
    assert run(["destroy-agent", "plain", "--yes"]) == 0


def test_spawn_local_is_active_only_after_the_ready_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mother that is still up half a second after its start is not yet ready: one that then
    refuses fails the spawn with its reason (exit 17), and the tenant is not active."""
    require(os.geteuid() == 0, "root (the run dir is root-only)")
    skills = tmp_path / "skills"
    (skills / "mother/handlers").mkdir(parents=True)
    (skills / "mother/mother.py").write_text(
        "import os, sys, time\ntime.sleep(1.5)\n"
        "print(f'mother[{os.getpid()}]: refusing to start: the secrets file is not ours', file=sys.stderr)\n"
        "sys.exit(6)\n"
    )
    monkeypatch.setenv("COLIBRI_SKILLS_DIR", str(skills))
    home = tmp_path / "homes" / "solo"
    home.mkdir(parents=True)
    monkeypatch.setenv("COLIBRI_SECRETS_ALLOWED_ROOTS", json.dumps([str(tmp_path / "homes")]))
    assert run(["register-tenant", "solo", "--collection", ""]) == 0
    capsys.readouterr()
    assert run(["spawn-local", "solo", "--home", str(home)]) == 17
    assert "the mother skill refused to start: the secrets file is not ours" in capsys.readouterr().err
    assert run(["show-tenant", "solo", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["status"] == "failed"
