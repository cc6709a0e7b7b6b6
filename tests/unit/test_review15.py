"""review15: hostile review of review13 F1/F3, review14 F1/F2 and issue 14's WAL and BIND_TTL.
Each test is a STRICT xfail: it fails because of the finding it names, and passes (so the
xfail must be removed) once the finding is fixed."""

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from colibri.adapters.jail import JailState
from colibri.domain import TenantStatus
from colibri.errors import ColibriError, SupplyError
from colibri.services.children.cascade import Cascade
from colibri.services.children.service import Ask
from colibri.services.lifecycle.skills import JailTree, SkillPlanner
from colibri.services.policy.admin import PolicyAdmin
from colibri.services.policy.service import SpawnPolicyService
from colibri.services.skills import publish
from colibri.settings import load_settings
from colibri.store.models import Tenant
from colibri.supply.metadata import MAX_INDEX, parse_index
from tests.fakes.jail import FakeJails
from tests.integration.as_host import as_host
from tests.unit.children.queen import World, queen_world
from tests.unit.lifecycle.conftest import Cli, cli_fixture, fake_fixture
from tests.unit.skills.forge import Forge, installed_jail

__all__ = ["cli_fixture", "fake_fixture"]


@pytest.fixture(name="world")
def world_fixture(cli: Cli) -> Iterator[World]:
    yield from queen_world(cli, "*")


def _try_ask(world: World) -> str | None:
    """queen's agent asks for a child over its socket: the child's id, or None (refused)."""
    settings = load_settings(None)[0]
    try:
        with as_host(settings.state_dir, settings.host):
            answer = world[1].ask("queen", Ask("main", (), None, (), None), actor="agent:queen/main")
    except ColibriError:
        return None
    return answer.child if answer.allowed else None


def _ask(world: World) -> str:
    child = _try_ask(world)
    assert child is not None
    return child


def _lineage_left(world: World) -> list[tuple[str, str]]:
    with world[0].session() as session:
        rows = session.exec(select(Tenant).where(col(Tenant.parent).is_not(None))).all()
        return [(t.tenant_id, t.status) for t in rows if t.status != "removed"]


# ---- F1: a hostile parent keeps its own cascade from ever finishing --------------------------------


def test_f1_a_parent_asking_for_children_all_along_cannot_stop_its_own_removal(
    world: World, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ask(world)
    asked: list[str | None] = []
    retire = SpawnPolicyService.retire

    def hostile_retire(self: SpawnPolicyService, child: str, *, why: str) -> bool:
        if "--cascade" in why and len(asked) < 40:  # queen's agent asks again each time one goes
            asked.append(_try_ask(world))
        return retire(self, child, why=why)

    monkeypatch.setattr(SpawnPolicyService, "retire", hostile_retire)
    code, _, err = cli("remove-tenant", "queen", "--cascade", "--destroy-jail", "--yes")
    # the operator removes a tenant; its own agent must not be able to refuse that (exit 5, "run again")
    assert code == 0, f"exit {code}: {err.strip()[:300]} (queen's agent got {sum(1 for a in asked if a)} children)"
    assert _lineage_left(world) == []


# ---- F2: a descendant spawned after the listing keeps its jail, its rows deleted ---------------------


def test_f2_a_child_spawned_while_the_cascade_runs_has_its_jail_destroyed(
    world: World, cli: Cli, fake: FakeJails, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _ask(world)
    assert cli("spawn-child", first)[0] == 0
    second = _ask(world)  # registered; the daemon's children loop is about to spawn it
    spawned: list[int] = []
    forget = Cascade._forget

    def racing_forget(self: Cascade, tenant_id: str, child: str, status: TenantStatus) -> bool:
        if not spawned:  # the loop's spawn-child of the second finishes after the cascade's listing
            spawned.append(cli("spawn-child", second)[0])
        return forget(self, tenant_id, child, status)

    monkeypatch.setattr(Cascade, "_forget", racing_forget)
    code, _, err = cli("remove-tenant", "queen", "--cascade", "--destroy-jail", "--yes")
    assert spawned == [0]
    with world[0].session() as session:
        row = session.get(Tenant, second)
    state = fake.info(second).state
    # its rows must not be gone (nothing would ever look for it again) while its jail, holding the
    # lineage's collection secrets in its .env, still runs
    assert row is None or row.status == "removed"
    assert state is JailState.ABSENT, f"exit {code} {err.strip()[:200]}: {second}'s jail is {state}, its row {row}"


# ---- F3: two cascades at once: the second fails on a descendant the first forgot -------------------


def test_f3_a_cascade_racing_another_one_succeeds(world: World, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(2):
        assert cli("spawn-child", _ask(world))[0] == 0
    other: list[tuple[int, str]] = []
    retire = SpawnPolicyService.retire

    def racing_retire(self: SpawnPolicyService, child: str, *, why: str) -> bool:
        if "--cascade" in why and not other:  # an operator (or a script) runs the same command meanwhile
            other.append(("running", ""))
            code, _, err = cli("remove-tenant", "queen", "--cascade", "--destroy-jail", "--yes")
            other[0] = (code, err.strip()[:200])
        return retire(self, child, why=why)

    monkeypatch.setattr(SpawnPolicyService, "retire", racing_retire)
    code, _, err = cli("remove-tenant", "queen", "--cascade", "--destroy-jail", "--yes")
    # the second may finish the job (0) or be told another cascade runs (5), never half of it
    assert other and other[0][0] in (0, 5), other
    # the first was asked to remove the lineage and it is gone: not "tenant not found" (exit 4)
    assert code == 0, f"exit {code}: {err.strip()[:300]} (the other cascade: {other[0]})"
    assert _lineage_left(world) == []


# ---- F4, F5: a kept skill held to the trust this host already has ----------------------------------


def _installed(forge: Forge, tmp_path: Path) -> tuple[SkillPlanner, JailTree, list[Any]]:
    planner, root, installed = installed_jail(forge, tmp_path)
    return planner, JailTree(root, (os.geteuid(), os.getegid())), installed


def test_f4_offline_a_respawn_does_not_keep_a_skill_this_host_knows_was_withdrawn(tmp_path: Path) -> None:
    forge = Forge(tmp_path)
    forge.publish(forge.bundle("mother"), forge.bundle("mail"))
    planner, tree, installed = _installed(forge, tmp_path)
    # mail@1.0.0 turns out to be malicious: the publisher withdraws it (a new index without it)
    index = parse_index(forge.repo.fetch("index.json", MAX_INDEX), None, forge.now())
    entries = [e for versions in index.skills.values() for e in versions.values() if e.name != "mail"]
    publish.reindex(forge.repo, forge.signing_key, entries, index.version + 1, forge.now() + timedelta(days=30))
    assert forge.resolver().unvouched(installed) == ["mail"]  # online: refused, and this host remembers it
    # the repository is now unreachable (an outage, or whoever wants mail kept cuts it off)
    (tmp_path / "repo").rename(tmp_path / "repo-away")
    with pytest.raises(SupplyError):  # this host's own verified index says mail is gone: not kept
        planner.plan("acme", "paid", None, installed, [], tree).cleanup()


def test_f5_an_expired_index_does_not_keep_a_revoked_keys_skills(tmp_path: Path) -> None:
    forge = Forge(tmp_path)
    forge.publish(forge.bundle("mother"), forge.bundle("mail"))
    planner, tree, installed = _installed(forge, tmp_path)
    forge.rotate(days=400)  # the index re-signed; the bundles keep the revoked key's signatures
    forge.clock[0] += timedelta(days=31)  # the index lapses (nobody re-signed it in time)
    # the repository answers: its root (verified now) revokes the key that signed mail and mother;
    # the signatures are fetchable and check_signature would refuse them
    with pytest.raises(SupplyError):
        planner.plan("acme", "paid", None, installed, [], tree).cleanup()


# ---- F6: a removed tenant registered again inherits its old incarnation's discarded children -------


def test_f6_a_tenant_registered_again_sees_none_of_its_old_childrens_rows(world: World, cli: Cli) -> None:
    settings = load_settings(None)[0]
    child = _ask(world)
    with as_host(settings.state_dir, settings.host):
        held = [r for r in PolicyAdmin(world[0]).show("queen")["reservations"] if r["child"] == child]
        world[2].release(held[0]["id"], why="test: the spawn failed")
    assert cli("spawn-child", child)[0] == 0  # discarded: its place released
    assert [c["status"] for c in world[1].children("queen")] == ["removed"]
    assert cli("remove-tenant", "queen", "--destroy-jail", "--yes")[0] == 0  # no live child: allowed
    assert cli("register-tenant", "queen", "--collection", "")[0] == 0  # the id comes back (another customer)
    # the new queen's agent would list these over GET /v1/children, and policy show its old grants
    assert world[1].children("queen") == []
    with as_host(settings.state_dir, settings.host):
        assert PolicyAdmin(world[0]).show("queen")["reservations"] == []
