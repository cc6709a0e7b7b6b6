"""The lifecycle ops a host serves: hostile arguments refused, a tenant of another host refused."""

import pytest

from colibri.errors import InvalidInput, StateConflict, TenantNotFound
from colibri.services.hosts.remote_ops import MAX_ENV_BYTES
from tests.unit.hosts.conftest import Hive


def test_a_host_refuses_a_tenant_of_another_host(hive: Hive) -> None:
    hive.enrol("osa")
    hive.enrol("domedog")
    assert hive.cli("register-tenant", "here", "--collection", "")[0] == 0  # the orchestrator's
    assert hive.cli("register-tenant", "dome", "--host", "domedog", "--collection", "")[0] == 0
    osa = hive.remotes["osa"]
    for op, args in (
        ("spawn", {"tenant": "here", "env": None}),
        ("stop", {"tenant": "dome"}),
        ("destroy", {"tenant": "here"}),
        ("write_env", {"tenant": "dome", "env": "A='1'\n"}),
        ("show", {"tenant": "here"}),
    ):
        with pytest.raises(StateConflict, match=r"host osa refuses: tenant (here|dome) lives on host"):
            osa.link.call(op, args)
    assert osa.fake.calls == [] and hive.orchestrator.calls == []
    assert hive.show("here")["status"] == "registered" and hive.show("dome")["status"] == "registered"


def test_the_ops_arguments_are_bounded_and_checked(hive: Hive) -> None:
    hive.enrol("osa")
    assert hive.cli("register-tenant", "acme", "--host", "osa", "--collection", "")[0] == 0
    link = hive.remotes["osa"].link
    with pytest.raises(InvalidInput, match="env is more than 65536 bytes"):
        link.call("write_env", {"tenant": "acme", "env": "A=" + "x" * MAX_ENV_BYTES})
    with pytest.raises(InvalidInput, match="unknown argument"):
        link.call("stop", {"tenant": "acme", "path": "/etc"})
    with pytest.raises(InvalidInput, match="invalid tenant"):
        link.call("stop", {"tenant": "../../etc"})
    with pytest.raises(InvalidInput, match="tenant must be a tenant id"):
        link.call("stop", {"tenant": ["acme"]})
    with pytest.raises(InvalidInput, match="apply must be true or false"):
        link.call("reconcile", {"apply": "yes"})
    with pytest.raises(InvalidInput, match="capabilities must be a list"):
        link.call("spawn", {"tenant": "acme", "capabilities": ["x"] * 1000})
    with pytest.raises(TenantNotFound):
        link.call("stop", {"tenant": "ghost"})
    assert hive.remotes["osa"].fake.calls == []


def test_a_rendered_env_never_shows_its_text() -> None:
    from colibri.services.secrets_render import Rendered

    rendered = Rendered("acme", b"OPENROUTER_API_KEY='sk-hidden-1'\n", "collection acme", ("OPENROUTER_API_KEY",))
    assert "sk-hidden-1" not in repr(rendered) and "sk-hidden-1" not in str(rendered)
