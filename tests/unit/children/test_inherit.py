"""A child inherits its parent's tier, and may ask only for skills installed for its parent (the
coordinator's wiring of parts S2 and A2, issue 13 and 14)."""

import json
from datetime import UTC, datetime

from sqlalchemy import text

from colibri.services.children.service import PARENT_SKILLS, Ask, ChildService
from colibri.services.children.spawner import asked_skills
from colibri.services.policy.admin import PolicyAdmin, PolicyChange
from colibri.services.policy.service import SpawnPolicyService
from colibri.store.db import Store
from colibri.store.models import Tenant, TenantSkill
from tests.unit.policy.conftest import template_fixture, world_fixture, world_url_fixture

__all__ = ["template_fixture", "world_fixture", "world_url_fixture"]  # the policy tests' worlds


def _install(world: Store, tenant: str, name: str) -> None:
    with world.session() as session:
        session.add(
            TenantSkill(tenant_id=tenant, name=name, version="1.0.0", digest="sha256:" + "0" * 64,
                        manifest_digest="sha256:" + "1" * 64, source="first-party", capabilities="[]",
                        installed_at=datetime.now(UTC))
        )  # fmt: skip


def test_a_child_gets_its_parents_tier_and_only_its_installed_skills(world: Store) -> None:
    PolicyAdmin(world).set("queen", PolicyChange(allowed=True, max_children=5, rate="1000/h", skills="*"))
    with world.session() as session:
        queen = session.get(Tenant, "queen")
        assert queen is not None
        queen.tier = "community"
    _install(world, "queen", "mail")
    children = ChildService(world, SpawnPolicyService(world), "h")

    refused = children.ask("queen", Ask("a1", (), None, ("search",), None), actor="agent:queen/a1")
    assert not refused.allowed and refused.rule == PARENT_SKILLS and "search" in refused.reason

    granted = children.ask("queen", Ask("a1", (), None, ("mail",), None), actor="agent:queen/a1")
    assert granted.allowed and granted.child is not None
    with world.engine.connect() as conn:
        tier = conn.execute(text("SELECT tier FROM tenants WHERE tenant_id = :c"), {"c": granted.child}).scalar()
        request = conn.execute(text("SELECT request FROM spawn_reservations WHERE child = :c"),
                               {"c": granted.child}).scalar()  # fmt: skip
        denied = conn.execute(text("SELECT count(*) FROM audit_entries WHERE action = 'child.deny'")).scalar()
    assert tier == "community"
    assert asked_skills({"request": request}) == ["mail"]
    assert denied == 1
    assert asked_skills(None) == [] and asked_skills({"request": json.dumps({"skills": [3, "x"]})}) == ["x"]
