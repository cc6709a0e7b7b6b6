"""The skills planner a spawn uses (issue 13), from the settings: the repository the
``skills_repository`` setting names and this host's trust store (``state_dir/supply``, its pinned
root), or none (colibri's shipped mother only, recorded as ``builtin``: the development default)."""

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

    resolver = None
    if settings.skills_repository:
        repository = open_repository(settings.skills_repository)
        resolver = SkillResolver(repository, TrustStore(settings.state_dir / "supply"), lambda: datetime.now(UTC))
    return SkillPlanner(resolver, settings.skills_dir or shipped("skills"), settings.state_dir / "skills-staging")
