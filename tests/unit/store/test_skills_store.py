"""Migration 0009 (issue 13): tenants.tier and the installed skills, on SQLite and PostgreSQL."""

from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from colibri.domain import Tier
from colibri.errors import StateConflict, TenantExists
from colibri.services.tenants import TenantService
from colibri.store import db as store_db
from colibri.store.db import Store, make_engine
from colibri.store.skills import Installed, SkillRepo


def _upgrade_to(url: str, revision: str) -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            config = Config()
            config.set_main_option("script_location", str(Path(store_db.__file__).parent / "migrations"))
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
            conn.commit()
    finally:
        engine.dispose()


def test_0009_makes_every_existing_tenant_paid(db_url: str) -> None:
    _upgrade_to(db_url, "0008")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO tenants (tenant_id, jail_name, host, status, created_at, updated_at, adopted) "
                "VALUES ('old', 'old', 'h', 'active', '2026-01-01 00:00:00', '2026-01-01 00:00:00', false)"
            )
        )
    engine.dispose()
    store = Store(db_url)  # migrates to head
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT tier FROM tenants WHERE tenant_id = 'old'")).scalar() == "paid"
        assert conn.execute(text("SELECT count(*) FROM tenant_skills")).scalar() == 0
    tenants = TenantService(store, "h")
    assert tenants.show("old")["tier"] == "paid" and tenants.show("old")["skills"] == []
    store.close()


def test_tier_at_registration_and_set_tier(db_url: str) -> None:
    store = Store(db_url)
    tenants = TenantService(store, "h")
    assert tenants.register("acme", None, None).tenant["tier"] == "paid"  # the fail-safe default
    assert tenants.register("bee", None, None, Tier.COMMUNITY).tenant["tier"] == "community"
    assert not tenants.register("acme", None, None).created  # no --tier: not compared
    with pytest.raises(TenantExists, match="tier 'paid' \\(asked 'community'; change it with: colibri set-tier acme"):
        tenants.register("acme", None, None, Tier.COMMUNITY)
    view, changed = tenants.set_tier("acme", Tier.COMMUNITY)
    assert changed and view["tier"] == "community"
    assert tenants.set_tier("acme", Tier.COMMUNITY)[1] is False
    with store.session() as session:
        repo = SkillRepo(session)
        assert repo.put(
            "acme", Installed("mother", "1", "sha256:" + "a" * 64, "first-party", ("echo",), "sha256:" + "c" * 64)
        )
        assert not repo.put(
            "acme", Installed("mother", "1", "sha256:" + "a" * 64, "first-party", ("echo",), "sha256:" + "c" * 64)
        )
        assert repo.put(
            "acme", Installed("web", "2.0", "sha256:" + "b" * 64, "community", ("fetch",), "sha256:" + "d" * 64)
        )
    with pytest.raises(StateConflict, match="not first-party \\(web\\)"):
        tenants.set_tier("acme", Tier.PAID)
    shown = tenants.show("acme")
    assert shown["tier"] == "community"
    assert [(s["name"], s["version"], s["source"], s["capabilities"]) for s in shown["skills"]] == [
        ("mother", "1", "first-party", ["echo"]),
        ("web", "2.0", "community", ["fetch"]),
    ]
    assert tenants.all()[0] == shown  # the listing path shows the same
    with store.session() as session:
        SkillRepo(session).remove("acme", ["web"])
    assert tenants.set_tier("acme", Tier.PAID)[0]["tier"] == "paid"
    with store.engine.connect() as conn:
        actions = [r[0] for r in conn.execute(text("SELECT action FROM audit_entries ORDER BY seq"))]
    assert actions.count("tenant.tier") == 2 and actions.count("skill.install") == 2 and "skill.remove" in actions
    store.close()
