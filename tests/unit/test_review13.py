"""review13: hostile review of issues 13 and 14.  Each test is a STRICT xfail: it fails because
of the finding it names, and passes (so the xfail must be removed) once the finding is fixed."""

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from colibri.errors import SignatureRefused, SupplyError
from colibri.services.children.service import Ask
from colibri.services.lifecycle.skills import JailTree
from colibri.services.policy.admin import PolicyAdmin, PolicyChange
from colibri.services.policy.service import ChildRequest, Decision
from colibri.services.skills.resolve import SkillRef
from colibri.settings import load_settings
from colibri.store.models import Tenant
from tests.fakes.jail import FakeJails
from tests.integration.as_host import as_host
from tests.unit.children.queen import World, queen_world
from tests.unit.lifecycle.conftest import Cli, cli_fixture, fake_fixture
from tests.unit.skills.forge import Forge, installed_jail

__all__ = ["cli_fixture", "fake_fixture"]


@pytest.fixture(name="world")
def world_fixture(cli: Cli) -> Iterator[World]:
    yield from queen_world(cli, "*")


def _ask(world: World, capabilities: tuple[str, ...] = ()) -> tuple[str, str]:
    settings = load_settings(None)[0]
    with as_host(settings.state_dir, settings.host):
        answer = world[1].ask("queen", Ask("main", capabilities, None, (), None), actor="agent:queen/main")
    assert answer.allowed and answer.child is not None and answer.reservation is not None, answer
    return answer.child, answer.reservation


def _granted(world: World, parent: str) -> Decision:
    """A decision the policy granted ``parent``'s agent before a cascade fenced the lineage."""
    settings = load_settings(None)[0]
    with as_host(settings.state_dir, settings.host):
        decision = world[2].decide(ChildRequest(parent, "main"), actor=f"agent:{parent}/main")
    assert decision.allowed, decision
    return decision


def _register(world: World, parent: str, decision: Decision) -> str:
    """That grant's child registered (ChildService.ask's second step), late."""
    settings = load_settings(None)[0]
    with as_host(settings.state_dir, settings.host):
        return world[1]._register(parent, Ask("main", (), None, (), None), (), decision)


def test_f1_a_child_asked_for_during_the_cascade_is_not_left_behind(
    world: World, cli: Cli, fake: FakeJails, monkeypatch: pytest.MonkeyPatch
) -> None:
    child, _ = _ask(world)
    assert cli("spawn-child", child)[0] == 0
    before = _granted(world, "queen")  # granted just before the cascade, registered during it
    late: list[str] = []
    asked: list[str] = []
    destroy = fake.destroy

    def racing_destroy(name: str) -> None:
        if name == child and not late:  # the parent's agent, still running, asks again meanwhile
            late.append(_register(world, "queen", before))
            settings = load_settings(None)[0]
            with as_host(settings.state_dir, settings.host):
                answer = world[1].ask("queen", Ask("main", (), None, (), None), actor="agent:queen/main")
            asked.append(answer.rule)
        destroy(name)

    monkeypatch.setattr(fake, "destroy", racing_destroy)
    code, _, err = cli("remove-tenant", "queen", "--cascade", "--destroy-jail", "--yes", "--json")
    assert code == 0, err
    assert late and asked == ["tenant-off"]  # the cascade turned queen's self-spawn off first
    cli("spawn-child", late[0])  # what the daemon's children loop runs for a pending child
    with world[0].session() as session:
        row = session.get(Tenant, late[0])
        left = None if row is None else (row.status, row.parent)
    # the parent is removed; nothing of its lineage may be left (nor spawned from its collection)
    assert left is None or left[0] == "removed", f"child {late[0]} left {left} after its parent's cascade"


def test_f1_a_grandchild_asked_for_while_its_parent_is_destroyed_is_not_orphaned(
    world: World, cli: Cli, fake: FakeJails, monkeypatch: pytest.MonkeyPatch
) -> None:
    child, _ = _ask(world)
    assert cli("spawn-child", child)[0] == 0
    settings = load_settings(None)[0]
    with as_host(settings.state_dir, settings.host):  # a child's policy may only narrow queen's
        PolicyAdmin(world[0]).set("queen", PolicyChange(max_depth=2))
        PolicyAdmin(world[0]).set(child, PolicyChange(allowed=True, max_children=2, max_depth=1, rate="100/h",
                                                      capabilities="*"))  # fmt: skip
    before = _granted(world, child)
    late: list[str] = []
    asked: list[str] = []
    destroy = fake.destroy

    def racing_destroy(name: str) -> None:
        if name == child and not late:  # the child's agent asks for a child of its own meanwhile
            late.append(_register(world, child, before))
            with as_host(settings.state_dir, settings.host):
                answer = world[1].ask(child, Ask("main", (), None, (), None), actor=f"agent:{child}/main")
            asked.append(answer.rule)
        destroy(name)

    monkeypatch.setattr(fake, "destroy", racing_destroy)
    code, out, err = cli("remove-tenant", "queen", "--cascade", "--destroy-jail", "--yes", "--json")
    assert code == 0, err
    assert late and asked == ["ancestor-off"]  # queen's self-spawn is off: so is its lineage's
    with world[0].session() as session:
        rows = {t: session.get(Tenant, t) for t in (child, late[0])}
    assert rows == {child: None, late[0]: None}, f"left behind: {rows}"
    assert json.loads(out)["data"]["children_removed"] == [late[0], child]  # the deepest first


def test_f2_a_child_cannot_ask_for_a_capability_version_its_parent_does_not_hold(world: World) -> None:
    settings = load_settings(None)[0]
    with as_host(settings.state_dir, settings.host):  # queen holds echo@1 only
        answer = world[1].ask("queen", Ask("main", ("echo@999",), None, (), None), actor="agent:queen/main")
    held = None
    if answer.child is not None:
        with world[0].session() as session:
            row = session.get(Tenant, answer.child)
            held = None if row is None else json.loads(row.capabilities or "[]")
    assert not answer.allowed, f"child {answer.child} granted {held} (its parent holds echo@1)"


def tree(root: Path) -> JailTree:
    return JailTree(root, (os.geteuid(), os.getegid()))


def test_f3_a_respawn_does_not_keep_a_skill_whose_signing_key_was_revoked(tmp_path: Path) -> None:
    forge = Forge(tmp_path)
    forge.publish(forge.bundle("mother"), forge.bundle("mail"))
    planner, root, installed = installed_jail(forge, tmp_path)
    # the signing key leaked: the operator delegates a new one and revokes the old one
    _, new = forge.rotate(days=90)  # the index re-signed; the bundles keep the revoked key's signatures
    with pytest.raises(SupplyError):  # a fresh install of mail is refused: signed by the revoked key
        forge.resolver().resolve([SkillRef("mail", None)], tier="paid", other_tenants=[], staging=forge.staging)
    # the repository is reachable and says the key is revoked: a respawn must not keep what it
    # signed; fetched again, the same bundles are refused, so the respawn is (exit 22)
    with pytest.raises(SignatureRefused, match="revoked"):
        planner.plan("acme", "paid", None, installed, [], tree(root))
    # once the same bundles are signed again by the new key, the respawn keeps them (same bytes)
    forge.publish(forge.bundle("mother"), forge.bundle("mail"), key=new)
    again = planner.plan("acme", "paid", None, installed, [], tree(root))
    kept = sorted(w.record.name for w in again.skills if w.staged is None)
    again.cleanup()
    assert kept == ["mail", "mother"]


def test_f4_a_removed_child_registered_again_is_nobodys_child(world: World, cli: Cli, fake: FakeJails) -> None:
    child, _ = _ask(world)
    assert cli("spawn-child", child)[0] == 0
    assert cli("remove-tenant", child, "--destroy-jail", "--yes")[0] == 0
    # the id comes back as an operator's tenant of its own (another customer)
    assert cli("register-tenant", child, "--collection", "")[0] == 0
    with world[0].session() as session:
        row = session.get(Tenant, child)
        parent = None if row is None else row.parent
    seen_by_queen = [c["child"] for c in world[1].children("queen") if c["status"] != "removed"]
    # queen's agent would see it over GET /v1/children, and remove-tenant queen --cascade destroy it
    assert parent is None and child not in seen_by_queen, f"{child} is still queen's child ({parent})"


def test_f5_a_tenant_registered_again_starts_with_self_spawn_off(world: World, cli: Cli, fake: FakeJails) -> None:
    assert cli("remove-tenant", "queen", "--destroy-jail", "--yes")[0] == 0
    assert cli("register-tenant", "queen", "--collection", "")[0] == 0
    assert cli("spawn-agent", "queen", "--capability", "echo")[0] == 0
    settings = load_settings(None)[0]
    with as_host(settings.state_dir, settings.host):
        answer = world[1].ask("queen", Ask("main", (), None, (), None), actor="agent:queen/main")
    # self-spawn is off by default: the returning tenant's old policy must not grant it
    assert not answer.allowed and answer.rule == "default-off", answer
