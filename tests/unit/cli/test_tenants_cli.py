"""CLI tests through typer's CliRunner: exit codes and exact output."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from colibri.cli.app import app
from colibri.errors import TenantNotFound

runner = CliRunner()
from tests.conftest import Invoke  # noqa: E402


def test_cli_runner_sees_the_colibri_error() -> None:
    result = runner.invoke(app, ["show-tenant", "ghost"])
    assert isinstance(result.exception, TenantNotFound)
    assert result.exception.exit_code == 4


def test_register_then_list_exact_output(invoke: Invoke) -> None:
    assert invoke("register-tenant", "acme") == (0, "registered tenant acme\n", "")
    assert invoke("register-tenant", "acme") == (0, "tenant acme is already registered (no change)\n", "")
    code, out, _ = invoke("list-tenants")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["TENANT", "STATUS", "HOST", "TIER", "SKILLS", "COLLECTION", "UPDATED"]
    assert lines[1].split()[:6] == ["acme", "registered", "testhost", "paid", "-", "acme"]


def test_json_envelopes(invoke: Invoke) -> None:
    code, out, _ = invoke("register-tenant", "acme", "--collection", "", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["ok"] is True
    assert doc["data"]["created"] is True
    assert doc["data"]["collection_name"] is None
    code, out, _ = invoke("list-tenants", "--json")
    assert [t["tenant_id"] for t in json.loads(out)["data"]] == ["acme"]
    code, out, err = invoke("show-tenant", "ghost", "--json")
    assert code == 4
    assert json.loads(out) == {
        "ok": False,
        "error": {"type": "TenantNotFound", "code": 4, "message": "tenant not found: ghost"},
    }
    assert err == ""


@pytest.mark.parametrize(
    ("tenant", "message"),
    [
        ("ALL", "colibri: invalid tenant id 'ALL': reserved, bastille reads it as every jail\n"),
        ("123", "colibri: invalid tenant id '123': all digits would be read as a jail id (JID)\n"),
        ("../x", "colibri: invalid tenant id '../x': use ASCII letters, digits, '-' and '_', "
                 "starting with a letter or digit\n"),
    ],
)  # fmt: skip
def test_bad_tenant_ids_exit_7_and_change_nothing(invoke: Invoke, tenant: str, message: str) -> None:
    assert invoke("register-tenant", tenant) == (7, "", message)
    assert invoke("list-tenants", "--json")[1].count("tenant_id") == 0


def test_conflict_exit_5(invoke: Invoke) -> None:
    invoke("register-tenant", "acme")
    code, _, err = invoke("register-tenant", "acme", "--host", "other")
    assert code == 5
    assert err == "colibri: tenant acme is already registered with host 'testhost' (asked 'other')\n"


def test_remove_and_status_filter(invoke: Invoke) -> None:
    invoke("register-tenant", "acme")
    assert invoke("remove-tenant", "acme") == (0, "removed tenant acme\n", "")
    assert invoke("list-tenants", "--json")[1].count("tenant_id") == 0
    _, out, _ = invoke("list-tenants", "--status", "removed", "--json")
    assert [t["status"] for t in json.loads(out)["data"]] == ["removed"]
    assert invoke("remove-tenant", "acme")[0] == 4


def test_bad_status_is_a_usage_error(invoke: Invoke) -> None:
    code, _, err = invoke("list-tenants", "--status", "sleeping")
    assert code == 2
    assert "Invalid value for '--status'" in err


def test_malformed_config_exit_3(invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[[")
    code, _, err = invoke("--config", str(bad), "list-tenants")
    assert code == 3
    assert err.startswith(f"colibri: config file {bad} is not valid TOML")
    assert err.count("\n") == 1
    monkeypatch.setenv("COLIBRI_CONFIG", str(tmp_path / "missing.toml"))
    assert invoke("list-tenants") == (3, "", f"colibri: config file not found: {tmp_path / 'missing.toml'}\n")


def test_unwritable_database_exit_15(invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("COLIBRI_STATE_DIR", str(blocker / "db"))
    code, _, err = invoke("list-tenants")
    assert code == 15
    assert err == f"colibri: cannot create the database directory {blocker / 'db'}: Not a directory\n"


def test_version_and_config_show(invoke: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    from colibri import __version__

    assert invoke("version") == (0, f"colibri {__version__}\n", "")
    monkeypatch.setenv("COLIBRI_DATABASE_URL", "postgresql+psycopg://u:hunter2@db/colibri")
    code, out, _ = invoke("config", "show", "--json")
    assert code == 0
    data = json.loads(out)["data"]
    assert data["database_url"] == {"value": "postgresql+psycopg://u:***@db/colibri",
                                    "source": "env:COLIBRI_DATABASE_URL"}  # fmt: skip
    assert data["host"] == {"value": "testhost", "source": "env:COLIBRI_HOST"}
    assert "hunter2" not in out


def test_help_lists_exit_codes() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "Exit codes: 0 success" in result.stdout
    assert "15 the" in result.stdout


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "colibri", "version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert done.stdout.startswith("colibri ")


def test_remove_waits_for_no_spawn(invoke: Invoke) -> None:
    """remove-tenant refuses while a spawn (or start/stop/destroy) of the tenant holds its lock."""
    import os
    from pathlib import Path

    from colibri.services.lifecycle.layout import agent_lock

    invoke("register-tenant", "acme")
    with agent_lock(Path(os.environ["COLIBRI_RUN_DIR"]) / "locks", "acme"):
        code, _, err = invoke("remove-tenant", "acme")
    assert code == 5
    assert err.startswith("colibri: spawn-acme is busy: another colibri process (pid ")
    assert invoke("remove-tenant", "acme") == (0, "removed tenant acme\n", "")
