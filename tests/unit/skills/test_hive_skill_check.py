"""The daemon refuses what a tenant's host did not install (issue 13), at the hive service: a
capability no installed skill provides, a loaded skill not installed (or another manifest of it);
the refusal keeps its agent.refuse entry and registers nothing."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from colibri.errors import InvalidInput, PermissionDenied
from colibri.services.hive.rules import Policy, Scope
from colibri.services.hive.service import HiveService
from colibri.services.hive.skillcheck import parse_loaded
from colibri.store.db import Store
from colibri.store.skills import Installed, SkillRepo
from tests.unit.daemon.hive_world import Clock, active_tenants

MOTHER = Installed("mother", "1.0.0", "sha256:" + "a" * 64, "first-party", ("echo",), "sha256:" + "b" * 64)
MAIL = Installed("mail", "1.0.0", "sha256:" + "c" * 64, "first-party", ("mail.send",), "sha256:" + "d" * 64)
ACME = Scope("tenant", "acme")


def loaded(*skills: Installed, manifest: str | None = None) -> list[dict[str, str | None]]:
    return [{"name": s.name, "version": s.version, "manifest": manifest or s.manifest_digest} for s in skills]


@pytest.fixture(name="store")
def store_fixture(tmp_path: Path) -> Iterator[Store]:
    store = active_tenants(f"sqlite:///{tmp_path / 'hive.db'}", {"acme": "h", "zed": "h"})
    store.clock = Clock()
    with store.session() as session:
        SkillRepo(session).put("acme", MOTHER)
        SkillRepo(session).put("acme", MAIL)
    yield store
    store.close()


@pytest.fixture(name="hive")
def hive_fixture(store: Store) -> HiveService:
    return HiveService(store, Policy(lease_seconds=60, max_attempts=2), clock=Clock())


def caps(*names: str) -> list[dict[str, str]]:
    return [{"name": n, "version": "1"} for n in names]


def refusals(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT body FROM audit_entries WHERE action = 'agent.refuse' ORDER BY seq"))
        return [r[0] for r in rows]


def test_an_agent_offering_only_installed_capabilities_registers(hive: HiveService) -> None:
    record, _ = hive.register(ACME, "acme-1", caps("echo", "mail.send"), "1", loaded(MOTHER, MAIL))
    assert record["state"] == "active"


@pytest.mark.parametrize(
    ("capabilities", "skills", "why"),
    [
        (caps("echo", "web.fetch"), loaded(MOTHER, MAIL), "capability web.fetch is provided by no installed skill"),
        (
            caps("echo"),
            loaded(MOTHER, Installed("webtool", "1.0.0", "", "", (), "x")),
            "skill webtool is not installed",
        ),
        (caps("echo"), loaded(MOTHER, manifest="sha256:" + "e" * 64), "skill mother 1.0.0 with manifest sha256:eee"),
        (caps("mail.send"), loaded(MOTHER), "capability mail.send is provided by no installed skill it loaded"),
        (caps("echo"), None, "it did not say which skills it loaded"),
    ],
)
def test_what_was_not_installed_is_refused_recorded_and_not_registered(
    hive: HiveService, store: Store, capabilities: list[dict[str, str]], skills: object, why: str
) -> None:
    with pytest.raises(PermissionDenied, match=f"agent acme/acme-1 refused: {why}"):
        hive.register(ACME, "acme-1", capabilities, "1", skills)  # type: ignore[arg-type]
    assert hive.agents("acme") == []
    entries = refusals(store)
    assert len(entries) == 1 and why.split(" with ")[0] in entries[0]


def test_a_tenant_without_an_installed_set_is_not_checked(hive: HiveService) -> None:
    """Spawned before migration 0009 (or by spawn-local): checked from its next spawn-agent on."""
    record, _ = hive.register(Scope("tenant", "zed"), "zed-1", caps("anything"), "1", None)
    assert record["state"] == "active"


def test_the_loaded_list_is_bounded_and_typed() -> None:
    assert parse_loaded(None) is None
    for bad in ("x", [{"name": "a"}] * 65, [{"name": "../x", "version": "1"}], [{"name": "a", "version": 1}],
                [{"name": "a", "version": "1", "extra": 1}], [{"name": "a", "version": "1"}] * 2):  # fmt: skip
        with pytest.raises(InvalidInput):
            parse_loaded(bad)
