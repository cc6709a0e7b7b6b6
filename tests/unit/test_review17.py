"""review17: hostile review of review16's fixes (e9933a4) and issue 13 (9faa320).  Each test is a
STRICT xfail: it fails because of the finding it names, and passes (so the xfail must be removed)
once the finding is fixed."""

from collections.abc import Iterator

import pytest

from colibri.errors import JailError
from colibri.services.lifecycle.pipeline import SpawnService
from colibri.services.policy.admin import PolicyAdmin, PolicyChange
from colibri.settings import load_settings
from colibri.store.models import Tenant
from colibri.store.policy import PolicyRepo
from tests.fakes.jail import FakeJails
from tests.integration.as_host import as_host
from tests.unit.children.queen import World, ask_child, queen_world
from tests.unit.lifecycle.conftest import Cli, cli_fixture, fake_fixture

__all__ = ["cli_fixture", "fake_fixture"]


@pytest.fixture(name="world")
def world_fixture(cli: Cli) -> Iterator[World]:
    yield from queen_world(cli, "*")


def _live(world: World, parent: str) -> list[str]:
    return [c["child"] for c in world[1].children(parent) if c["status"] != "removed"]


# ---- F1: a refused cascade of a childless tenant turns its self-spawn off --------------------------


def test_f1_a_refused_cascade_of_a_childless_tenant_leaves_its_policy_alone(world: World, cli: Cli) -> None:
    code, _, err = cli("remove-tenant", "queen", "--cascade", "--yes")  # queen is active: needs --destroy-jail
    assert code == 5, err
    with world[0].session() as session:
        policy = PolicyRepo(session).get("queen")
    # nothing was removed nor destroyed; with a child the same command is refused before any change
    assert policy is not None and policy.allowed, "the refused command turned queen's self-spawn off"


# ---- F2: spawn-child's discard of a child that has children of its own --------------------------------


def test_f2_a_discarded_child_with_children_of_its_own_does_not_free_its_parents_place(
    world: World, cli: Cli, fake: FakeJails, monkeypatch: pytest.MonkeyPatch
) -> None:
    child = ask_child(world)
    assert child is not None and cli("spawn-child", child)[0] == 0
    settings = load_settings(None)[0]
    with as_host(settings.state_dir, settings.host):
        PolicyAdmin(world[0]).set("queen", PolicyChange(allowed=True, max_depth=2))
        PolicyAdmin(world[0]).set(child, PolicyChange(allowed=True, max_children=1, rate="100/h", capabilities="*"))
    grandchild = ask_child(world, child)
    assert grandchild is not None and cli("spawn-child", grandchild)[0] == 0
    # the operator's spawn-agent of the child is killed -9 (left spawning): the daemon's loop converges it
    with world[0].session() as session:
        session.get(Tenant, child).status = "spawning"
        session.commit()
    spawn = SpawnService.spawn

    def failing_spawn(self: SpawnService, tenant_id: str, **options: object) -> object:
        if tenant_id == child:  # its spawn fails (a jail error, the repository away, ...)
            raise JailError(f"fake jail {tenant_id}: disk full")
        return spawn(self, tenant_id, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(SpawnService, "spawn", failing_spawn)
    cli("spawn-child", child)  # its spawn fails: discarded (jail destroyed, then refused: "busy")
    live = _live(world, "queen")
    with world[0].session() as session:
        held = PolicyRepo(session).used_by(child)
    # either the child (and its lineage) went, or it still holds queen's place
    assert child not in live or held is not None, (
        f"child {child} (with child {grandchild}) is still queen's, but its place is released"
    )
