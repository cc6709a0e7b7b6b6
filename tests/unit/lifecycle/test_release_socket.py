"""review9 F5: release-agent closes the daemon's agent socket of the tenant, and says so."""

import json

import pytest

from tests.fakes.jail import FakeJails
from tests.unit.lifecycle.conftest import Cli


def test_release_closes_the_tenants_agent_socket(cli: Cli, fake: FakeJails, monkeypatch: pytest.MonkeyPatch) -> None:
    from colibri.cli.context import Context

    closed: list[str] = []

    def close(self: Context, tenant_id: str) -> bool:
        closed.append(tenant_id)
        return True

    monkeypatch.setattr(Context, "_close_socket", close)
    assert cli("register-tenant", "demo", "--collection", "")[0] == 0
    root = fake.add_foreign("demo")
    code, _, err = cli("spawn-agent", "demo", "--jail-name", "demo", "--jail-root", str(root))
    assert code == 0, err
    code, out, err = cli("release-agent", "demo", "--json")
    assert code == 0, err
    assert closed == ["demo"]
    assert "the daemon's agent socket" in json.loads(out)["data"]["removed"]
