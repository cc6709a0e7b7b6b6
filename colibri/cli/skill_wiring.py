"""The skills planner a spawn uses (issue 13), from the settings: S1's resolver (the repository
the ``skills_repository`` setting names, this host's trust store and its pinned root); without a
repository or a pinned root, colibri's shipped mother only, recorded as ``builtin`` (the
development default)."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from colibri.services.lifecycle.skills import SkillPlanner
    from colibri.settings import Settings


def planner(settings: "Settings") -> "SkillPlanner":
    from datetime import UTC, datetime

    from colibri.adapters.skill_repo import open_repository
    from colibri.adapters.skill_trust import TrustStore
    from colibri.resources import shipped
    from colibri.services.lifecycle.skills import SkillPlanner
    from colibri.services.skills.resolve import SkillResolver

    # as cli/skills.py's resolver() builds it (that module imports the context: not from here)
    location = settings.skills_repository
    repository = open_repository(location, settings.skills_fetch_timeout) if location else None
    found = SkillResolver(repository, TrustStore(settings.state_dir / "supply"), lambda: datetime.now(UTC))
    return SkillPlanner(found, settings.skills_dir or shipped("skills"), settings.state_dir / "skills-staging")
