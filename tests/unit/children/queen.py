"""The children tests' world: tenant queen spawned on the fake backend with a spawn policy, the
store, its ChildService and its SpawnPolicyService (one copy for the reviews' tests and these)."""

from collections.abc import Iterator

from colibri.services.children.service import Ask, ChildService
from colibri.services.policy.admin import PolicyAdmin, PolicyChange
from colibri.services.policy.service import SpawnPolicyService
from colibri.settings import load_settings
from colibri.store.db import Store
from tests.integration.as_host import as_host
from tests.unit.lifecycle.conftest import Cli

World = tuple[Store, ChildService, SpawnPolicyService]


def queen_world(cli: Cli, capabilities: str = "*") -> Iterator[World]:
    """Yield the world (for a fixture); queen may have 3 children holding ``capabilities``."""
    assert cli("register-tenant", "queen", "--collection", "")[0] == 0
    assert cli("spawn-agent", "queen", "--capability", "echo")[0] == 0
    settings = load_settings(None)[0]
    store = Store(settings.database)
    policy = SpawnPolicyService(store)
    with as_host(settings.state_dir, settings.host):
        PolicyAdmin(store).set(
            "queen", PolicyChange(allowed=True, max_children=3, rate="100/h", capabilities=capabilities)
        )
    try:
        yield store, ChildService(store, policy, settings.host), policy
    finally:
        store.close()


def ask_child(world: World, parent: str = "queen") -> str | None:
    """``parent``'s agent asks for a child over its socket: the child's id, or None (refused)."""
    settings = load_settings(None)[0]
    with as_host(settings.state_dir, settings.host):
        answer = world[1].ask(parent, Ask("main", (), None, (), None), actor=f"agent:{parent}/main")
    return answer.child if answer.allowed else None
