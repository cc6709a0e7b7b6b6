"""The resolver S2 calls: skill references → verified files in staging (issue 13)."""

import os
from pathlib import Path

import pytest

from colibri.errors import SupplyError, SupplyUnavailable
from colibri.services.skills.resolve import SkillRef, SkillResolver
from tests.unit.skills.forge import Forge


@pytest.fixture(name="forge")
def forge_fixture(tmp_path: Path) -> Forge:
    return Forge(tmp_path)


def test_parse_refs() -> None:
    assert SkillRef.parse("mail") == SkillRef("mail", None)
    assert SkillRef.parse("mail@1.2.3") == SkillRef("mail", "1.2.3")
    for bad in ("", "Mail", "mail@", "mail@1.2", "../x", "-mail", "a" * 64, "mail@1.2.3@4"):
        with pytest.raises(SupplyError):
            SkillRef.parse(bad)


def test_resolves_the_newest_version_into_staging(forge: Forge) -> None:
    forge.publish(forge.bundle("mail", "1.0.0"), forge.bundle("mail", "1.10.0", {"SKILL.md": "new\n"}))
    [skill] = forge.resolver().resolve(
        [SkillRef.parse("mail")], tier="paid", other_tenants=["acme"], staging=forge.staging
    )
    assert (skill.name, skill.version, skill.source, skill.capabilities) == ("mail", "1.10.0", "first-party", ("echo",))
    assert skill.root == forge.staging / "mail"
    assert (skill.root / "SKILL.md").read_text() == "new\n"
    assert skill.digest.startswith("sha256:") and len(skill.digest) == 71


def test_resolves_a_named_version_with_its_modes(forge: Forge) -> None:
    forge.publish(forge.bundle("mail", "1.0.0"), forge.bundle("mail", "2.0.0"))
    old = os.umask(0o077)  # an operator's strict umask does not make the skill unreadable in the jail
    try:
        [skill] = forge.resolver().resolve(
            [SkillRef.parse("mail@1.0.0")], tier="paid", other_tenants=[], staging=forge.staging
        )
    finally:
        os.umask(old)
    assert skill.version == "1.0.0"
    assert (skill.root / "handlers").stat().st_mode & 0o777 == 0o755
    assert skill.root.stat().st_mode & 0o777 == 0o755
    assert (skill.root / "handlers/echo").stat().st_mode & 0o777 == 0o755
    assert (skill.root / "SKILL.md").stat().st_mode & 0o777 == 0o644


def test_available_needs_a_repository_and_a_pinned_root(forge: Forge, tmp_path: Path) -> None:
    from colibri.adapters.skill_trust import TrustStore

    assert forge.resolver().available()
    assert not SkillResolver(None, forge.trust, forge.now).available()
    assert not SkillResolver(forge.repo, TrustStore(tmp_path / "other"), forge.now).available()
    with pytest.raises(SupplyUnavailable, match="no skills repository"):
        SkillResolver(None, forge.trust, forge.now).resolve(
            [SkillRef("mail", None)], tier="paid", other_tenants=[], staging=forge.staging
        )


def test_the_wiring_spawn_uses(tmp_path: Path) -> None:
    from colibri.adapters.skill_repo import DirectoryRepository, HttpRepository
    from colibri.cli.skills import resolver
    from colibri.settings import Settings

    unset = resolver(Settings())
    assert unset.repository is None and not unset.available()
    assert unset.trust.directory == Settings().state_dir / "supply"
    local = resolver(Settings(skills_repository=str(tmp_path / "repo")))
    assert isinstance(local.repository, DirectoryRepository)
    remote = resolver(Settings(skills_repository="https://skills.example.org/c"))
    assert isinstance(remote.repository, HttpRepository) and remote.repository.timeout == 10.0
