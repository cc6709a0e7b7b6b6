"""review14: hostile review of issue 13's hive and install side.  F1: what a mother reports it
loaded is echoed in refusals and audit entries, so only the shapes a host installs are taken.
F2: a skill kept on a respawn must still be the jail root's; one the jail's user owns could be
changed by the tenant after the check.  Review13 F3's sibling: a kept community skill is held to
the operator's allow-list of today."""

import os
from pathlib import Path

import pytest

from colibri import __version__
from colibri.adapters.skill_trust import COMMUNITY
from colibri.errors import InvalidInput, SupplyError
from colibri.services.hive.skillcheck import parse_loaded
from colibri.services.lifecycle.skills import SKILLS_ROOT, JailTree, SkillPlanner
from colibri.store.skills import Installed
from colibri.supply import docs
from tests.conftest import REPO
from tests.unit.skills.forge import Forge, installed_jail

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("version", "manifest"),
    [
        ("\x1b[2J\x1b[31m1.0.0", DIGEST),  # an escape sequence for the operator's terminal
        ("1.0.0\n2026-12-01 agent acme-1 registered", DIGEST),  # a forged log line
        ("1" * 64, DIGEST),
        ("1.0.0", "sha256:" + "zz" * 32),
        ("1.0.0", "\x9b31m" + "a" * 70),
        ("1.0.0", "sha256:" + "AB" * 32),
    ],
)
def test_f1_a_reported_skill_is_refused_unless_it_has_an_installed_shape(version: str, manifest: str) -> None:
    with pytest.raises(InvalidInput):
        parse_loaded([{"name": "mail", "version": version, "manifest": manifest}])


def test_f1_what_a_real_mother_reports_is_taken() -> None:
    found = parse_loaded([{"name": "mother", "version": __version__, "manifest": DIGEST}, {"name": "mail",
                          "version": "10.2.0", "manifest": None}])  # fmt: skip
    assert found == [
        {"name": "mother", "version": __version__, "manifest": DIGEST},
        {"name": "mail", "version": "10.2.0", "manifest": None},  # unreadable: refused by the check
    ]


@pytest.fixture(name="forge")
def forge_fixture(tmp_path: Path) -> Forge:
    forge = Forge(tmp_path)
    forge.publish(forge.bundle("mother"), forge.bundle("mail"))
    return forge


def test_f2_a_skill_the_jail_root_does_not_own_is_installed_again(forge: Forge, tmp_path: Path) -> None:
    planner, root, installed = installed_jail(forge, tmp_path)
    mine = (os.geteuid(), os.getegid())
    again = planner.plan("acme", "paid", None, installed, [], JailTree(root, mine))
    assert [w.staged for w in again.skills] == [None, None]  # the jail root's, as recorded: kept
    again.cleanup()
    # the same files, as seen by a jail whose root is another uid (the files are then the jail
    # user's or anybody's but its root's): not kept, fetched and installed again
    other = (mine[0] + 1, mine[1])
    again = planner.plan("acme", "paid", None, installed, [], JailTree(root, other))
    assert sorted(w.record.name for w in again.skills if w.staged is not None) == ["mail", "mother"]
    again.cleanup()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_f2_one_file_handed_to_the_jail_user_is_caught(forge: Forge, tmp_path: Path) -> None:
    planner, root, installed = installed_jail(forge, tmp_path)
    handler = root / SKILLS_ROOT.lstrip("/") / "mail/handlers/echo"
    os.chown(handler, 1001, -1)  # same bytes and mode: only its owner changed
    again = planner.plan("acme", "paid", None, installed, [], JailTree(root, (0, os.getegid())))
    assert [w.record.name for w in again.skills if w.staged is not None] == ["mail"]
    again.cleanup()


def test_a_kept_community_skill_is_held_to_todays_allow_list(forge: Forge, tmp_path: Path) -> None:
    planner = SkillPlanner(forge.resolver(), REPO / "skills", tmp_path / "staging-area")
    web = Installed("web", "1.0.0", "sha256:" + "c" * 64, "community", ("echo",), "sha256:" + "d" * 64)
    allowed = {"skills": {"web": {"1.0.0": {"digest": web.digest, "capabilities": ["echo"]}}}}
    forge.trust.write(COMMUNITY, docs.dump(allowed))
    assert forge.resolver().unvouched([web]) == []
    forge.trust.write(COMMUNITY, docs.dump({"skills": {}}))  # the operator withdrew it
    assert forge.resolver().unvouched([web]) == ["web"]
    with pytest.raises(SupplyError, match="web"):
        planner.plan("acme", "community", None, [web], [], JailTree(tmp_path, (os.geteuid(), os.getegid())))
