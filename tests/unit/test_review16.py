"""review16: hostile review of review15's fixes (3f42c60, 1437fd3).  Each test is a STRICT xfail:
it fails because of the finding it names, and passes (so the xfail must be removed) once the
finding is fixed."""

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from colibri.errors import SupplyError
from colibri.services.lifecycle.skills import JailTree
from colibri.services.policy.service import SpawnPolicyService
from colibri.services.skills import publish
from colibri.store.models import Tenant
from colibri.supply import keys
from tests.fakes.jail import FakeJails
from tests.unit.children.queen import World, ask_child, queen_world
from tests.unit.lifecycle.conftest import Cli, cli_fixture, fake_fixture
from tests.unit.skills.forge import Forge, installed_jail

__all__ = ["cli_fixture", "fake_fixture"]


@pytest.fixture(name="world")
def world_fixture(cli: Cli) -> Iterator[World]:
    yield from queen_world(cli, "*")


def _row(world: World, tenant: str) -> tuple[str, str | None] | None:
    with world[0].session() as session:
        row = session.get(Tenant, tenant)
        return None if row is None else (row.status, row.parent)


# ---- F1: a parent with no child at the listing is neither fenced nor drained -----------------------


def test_f1_a_child_asked_for_while_a_childless_parent_is_removed_does_not_outlive_it(
    world: World, cli: Cli, fake: FakeJails, monkeypatch: pytest.MonkeyPatch
) -> None:
    late: list[str | None] = []
    destroy = fake.destroy

    def racing_destroy(name: str) -> None:
        if name == "queen" and not late:  # queen's agent, still running, asks while its jail goes
            late.append(ask_child(world))
        destroy(name)

    monkeypatch.setattr(fake, "destroy", racing_destroy)
    code, _, err = cli("remove-tenant", "queen", "--cascade", "--destroy-jail", "--yes")
    assert code == 0, err
    # queen's agent asked while its jail was destroyed: refused, queen's self-spawn was fenced first
    assert late == [None]
    assert [c for c in world[1].children("queen") if c["status"] != "removed"] == []


# ---- F2: a removed id registered again inherits its old incarnation's LIVE children ----------------


def test_f2_a_tenant_registered_again_is_not_shown_its_old_incarnations_live_children(
    world: World, cli: Cli, fake: FakeJails, monkeypatch: pytest.MonkeyPatch
) -> None:
    late: list[str | None] = []
    destroy = fake.destroy

    def racing_destroy(name: str) -> None:
        if name == "queen" and not late:  # F1's path: a child of queen outlives queen's removal
            late.append(ask_child(world))
        destroy(name)

    monkeypatch.setattr(fake, "destroy", racing_destroy)
    code, _, err = cli("remove-tenant", "queen", "--destroy-jail", "--yes")
    # a plain removal is not fenced, so the grant stands; the removal is then refused (under the
    # row lock the child's registration took), naming the child: no live child outlives queen
    assert late and late[0] is not None
    assert code == 5 and late[0] in err, (code, err)
    assert _row(world, "queen") is not None and _row(world, "queen")[0] != "removed"  # type: ignore[index]
    # and a removed id whose old lineage still lives is not registered again for another customer
    with world[0].session() as session:  # as a cascade stopped after the parent's removal leaves it
        row = session.get(Tenant, "queen")
        assert row is not None
        row.status = "removed"
        session.add(row)
    code, _, err = cli("register-tenant", "queen", "--collection", "")
    assert code == 5 and late[0] in err, (code, err)


# ---- F3: an unbound-by-retire reservation re-links a removed child registered again ----------------


def test_f3_a_child_removed_before_its_spawn_and_registered_again_stays_nobodys_child(world: World, cli: Cli) -> None:
    child = ask_child(world)
    assert child is not None
    # the operator removes the child before the daemon's loop spawned it (retire: nothing used)
    assert cli("remove-tenant", child, "--yes")[0] == 0
    assert cli("register-tenant", child, "--collection", "")[0] == 0  # the id comes back (another customer)
    later = world[2]._clock() + 100_000.0
    SpawnPolicyService(world[0], clock=lambda: later).sweep()  # its old reservation expires
    left = _row(world, child)
    seen_by_queen = [c["child"] for c in world[1].children("queen") if c["status"] != "removed"]
    # review13 F4 / review15 F6: the returning id is an operator's tenant, nobody's child
    assert left is not None and left[1] is None and child not in seen_by_queen, f"{child}: {left}"


# ---- F4: offline, a skill with no kept .sig is kept whatever this host knows of its key ------------


def test_f4_offline_a_skill_installed_before_the_sig_cache_is_not_kept_once_its_key_is_seen_revoked(
    tmp_path: Path,
) -> None:
    forge = Forge(tmp_path)
    forge.publish(forge.bundle("mother"), forge.bundle("mail"))
    planner, root, installed = installed_jail(forge, tmp_path)
    # installed by the colibri before 3f42c60 (or its sigs/ lost): no .sig kept for it
    shutil.rmtree(tmp_path / "state" / "supply" / "sigs")
    # the signing key leaked: revoked, the index re-signed, the bundles not signed again yet
    old = keys.key_id(keys.raw_public(forge.signing_key))
    new = Ed25519PrivateKey.generate()
    publish.delegate(forge.repo, forge.root_key, keys.raw_public(new), forge.now() + timedelta(days=90))
    publish.revoke(forge.repo, forge.root_key, old)
    forge.publish(key=new)
    assert sorted(forge.resolver().unvouched(installed)) == ["mail", "mother"]  # online: this host saw it
    (tmp_path / "repo").rename(tmp_path / "repo-away")  # then the repository is cut off
    jail = JailTree(root, (root.stat().st_uid, root.stat().st_gid))
    # the last-known-good root this host verified revokes the key that signed them (runbooks/skills.md:
    # "signed by a key it has seen revoked, is not kept"): the respawn must not keep them
    with pytest.raises(SupplyError):
        planner.plan("acme", "paid", None, installed, [], jail).cleanup()
