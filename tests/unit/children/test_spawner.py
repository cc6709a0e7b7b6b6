"""``colibri spawn-child`` on the fake backend: the reservation ends used or released, never leaked,
and a child without a live reservation is discarded; remove-tenant's refusal and --cascade."""

import json
from collections.abc import Iterator

import pytest

from colibri.errors import JailError
from colibri.services.children.service import Ask, ChildService
from colibri.services.policy.admin import PolicyAdmin
from colibri.services.policy.service import SpawnPolicyService
from colibri.settings import load_settings
from colibri.store.db import Store
from tests.fakes.jail import FakeJails
from tests.integration.as_host import as_host
from tests.unit.children.queen import World, queen_world
from tests.unit.lifecycle.conftest import Cli, cli_fixture, fake_fixture, show

__all__ = ["cli_fixture", "fake_fixture"]  # the lifecycle tests' fixtures, used here too


@pytest.fixture(name="world")
def world_fixture(cli: Cli) -> Iterator[World]:
    yield from queen_world(cli, "echo")


def child_of(world: tuple[Store, ChildService, SpawnPolicyService]) -> tuple[str, str]:
    settings = load_settings(None)[0]
    with as_host(settings.state_dir, settings.host):
        answer = world[1].ask("queen", Ask("main", (), None, (), None), actor="agent:queen/main")
    assert answer.allowed and answer.child is not None and answer.reservation is not None, answer
    return answer.child, answer.reservation


def test_a_spawned_child_uses_its_reservation_and_a_second_run_changes_nothing(
    world: tuple[Store, ChildService, SpawnPolicyService], cli: Cli, fake: FakeJails
) -> None:
    child, reservation = child_of(world)
    code, out, err = cli("spawn-child", child, "--json")
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["outcome"] == "active"
    record = show(cli, child)
    assert (record["status"], record["parent"], record["capabilities"]) == (
        "active", "queen", [{"name": "echo", "version": "1"}])  # fmt: skip
    assert world[2].reservation(reservation).state == "used"
    assert json.loads(cli("spawn-child", child, "--json")[1].splitlines()[-1])["outcome"] == "used"


def test_a_failed_spawn_releases_its_place_and_discards_the_child(
    world: tuple[Store, ChildService, SpawnPolicyService], cli: Cli, fake: FakeJails
) -> None:
    child, reservation = child_of(world)
    fake.fail["start"] = JailError("the jail would not start")
    code, out, _ = cli("spawn-child", child)
    assert code == 0 and "discarded" in out
    assert world[2].reservation(reservation).state == "released"
    assert show(cli, child)["status"] == "removed"
    assert fake.info(child).state.value == "absent"


def test_a_child_whose_reservation_was_released_is_discarded_not_spawned(
    world: tuple[Store, ChildService, SpawnPolicyService], cli: Cli, fake: FakeJails
) -> None:
    child, reservation = child_of(world)
    world[2].release(reservation, why="expired (the daemon was killed before the spawn)")
    code, out, _ = cli("spawn-child", child)
    assert code == 0 and "discarded" in out
    assert show(cli, child)["status"] == "removed" and fake.info(child).state.value == "absent"


def test_remove_tenant_refuses_a_parent_with_children_unless_cascade(
    world: tuple[Store, ChildService, SpawnPolicyService], cli: Cli, fake: FakeJails
) -> None:
    child, reservation = child_of(world)
    assert cli("spawn-child", child)[0] == 0
    code, _, err = cli("remove-tenant", "queen", "--destroy-jail", "--yes")
    assert code == 5 and child in err and "--cascade" in err and len(err.strip().splitlines()) == 1
    assert show(cli, "queen")["status"] == "active"
    code, out, err = cli("remove-tenant", "queen", "--cascade", "--destroy-jail", "--yes", "--json")
    assert code == 0, err
    assert json.loads(out)["data"]["children_removed"] == [child]
    assert cli("show-tenant", child)[0] == 4  # its row is gone
    assert fake.info(child).state.value == "absent"
    with pytest.raises(Exception, match="not found"):
        world[2].reservation(reservation)


def test_reconcile_apply_settles_the_children_left_half_way(
    world: tuple[Store, ChildService, SpawnPolicyService], cli: Cli, fake: FakeJails
) -> None:
    due, _ = child_of(world)  # reserved, its spawner never ran (the daemon killed before it started one)
    dropped, reservation = child_of(world)
    world[2].release(reservation, why="expired")
    code, _, err = cli("reconcile", "--apply")
    assert code == 0, err
    assert f"child {due}: active" in err and f"child {dropped}: discarded" in err
    assert show(cli, due)["status"] == "active" and show(cli, dropped)["status"] == "removed"
    code, _, err = cli("reconcile", "--apply")
    assert code == 0 and "child " not in err  # nothing left to settle


def test_a_child_whose_reservation_the_sweep_settled_as_used_before_any_spawn_is_still_spawned(
    world: tuple[Store, ChildService, SpawnPolicyService], cli: Cli, fake: FakeJails
) -> None:
    child, reservation = child_of(world)
    world[2].use(reservation)  # what the sweep does with an expired reservation whose child exists
    code, out, err = cli("spawn-child", child)
    assert code == 0 and f"child {child}: active" in out, err
    assert show(cli, child)["status"] == "active"
    assert cli("spawn-child", child)[1] == f"child {child}: used\n"


def test_a_decision_that_cannot_be_recorded_is_a_denial_and_nothing_is_made(
    world: tuple[Store, ChildService, SpawnPolicyService], cli: Cli
) -> None:
    from tests.unit.audit.test_audit_hooks import refuse_audit_writes

    refuse_audit_writes(world[0])
    settings = load_settings(None)[0]
    with as_host(settings.state_dir, settings.host):
        answer = world[1].ask("queen", Ask("main", (), None, (), None), actor="agent:queen/main")
    assert (answer.allowed, answer.rule, answer.child, answer.reservation) == (False, "audit-failed", None, None)
    assert "could not be recorded" in answer.reason
    assert json.loads(cli("show-tenant", "queen", "--json")[1])["data"]["children"] == []


def test_a_child_on_another_host_is_refused_before_the_policy_decides(
    world: tuple[Store, ChildService, SpawnPolicyService], cli: Cli
) -> None:
    from colibri.errors import InvalidInput

    settings = load_settings(None)[0]
    with as_host(settings.state_dir, settings.host):
        with pytest.raises(InvalidInput, match="this daemon's host"):
            world[1].ask("queen", Ask("main", (), None, (), "elsewhere"), actor="agent:queen/main")
        same = world[1].ask("queen", Ask("main", (), None, (), settings.host), actor="agent:queen/main")
    assert same.allowed, same
    decided = PolicyAdmin(world[0]).decisions("queen")
    assert [d["rule"] for d in decided if d["action"] == "policy.decide"] == ["allow"]


def test_agents_tree_shows_the_lineage_from_the_store_when_no_daemon_answers(
    world: tuple[Store, ChildService, SpawnPolicyService], cli: Cli
) -> None:
    child, _ = child_of(world)
    code, out, err = cli("agents", "--tree", "--json")
    assert code == 0 and "agents not shown: the colibri daemon is not running" in err
    queen = next(n for n in json.loads(out)["data"] if n["tenant"] == "queen")
    assert [(c["tenant"], c["status"], c["agents"]) for c in queen["children"]] == [(child, "registered", [])]
    code, out, _ = cli("agents", "--tree")
    assert code == 0 and f"└─ {child}" in out
    assert cli("agents", "--tree", "--tenant", "ghost")[0] == 4
