"""Review 18: a hostile tenant (root in its jail) against the skill check of a respawn."""

import os
from pathlib import Path

import pytest

from colibri.adapters import jailfs
from colibri.errors import JailError
from colibri.services.lifecycle.skills import SKILLS_ROOT, JailTree, intact
from tests.unit.skills.forge import Forge, installed_jail

# ---- F1: a deep directory tree in an installed skill makes intact() raise RecursionError ----------


def test_f1_a_deep_tree_planted_in_an_installed_skill_is_not_intact_rather_than_a_crash(tmp_path: Path) -> None:
    forge = Forge(tmp_path)
    forge.publish(forge.bundle("mother"), forge.bundle("mail"))
    planner, root, installed = installed_jail(forge, tmp_path)
    mail = next(r for r in installed if r.name == "mail")
    fd = os.open(root / SKILLS_ROOT.lstrip("/") / "mail", os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1200):  # the jail's root plants a/a/a/... (cheap: 1,200 empty directories)
        os.mkdir("a", 0o755, dir_fd=fd)
        deeper = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = deeper
    os.close(fd)
    jail = JailTree(root, (root.stat().st_uid, root.stat().st_gid))
    assert intact(jail, mail) is False  # changed: reinstalled on the respawn, not an internal error
    plan = planner.plan("acme", "paid", None, installed, [], jail)
    try:
        assert any(w.record.name == "mail" and w.staged is not None for w in plan.skills)
    finally:
        plan.cleanup()
    # and the planted tree cannot crash its removal either (reinstalling removes the old directory)
    try:
        with pytest.raises(JailError, match="deeper than"):
            jailfs.remove(root, f"{SKILLS_ROOT}/mail", tree=True)
    finally:  # the deepest first: pytest's own clean-up of tmp_path recurses too
        base = root / SKILLS_ROOT.lstrip("/") / "mail"
        for depth in range(1200, 0, -1):
            os.rmdir(base / "/".join(["a"] * depth))
