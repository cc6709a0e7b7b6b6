"""The spawn pipeline's side of the skills (issue 13): what the store says before a plan is made,
and the capabilities the plan must provide."""

from typing import TYPE_CHECKING

from colibri.adapters.jail import JailBackend, JailState
from colibri.errors import InvalidInput, JailError, SupplyError, TenantNotFound
from colibri.services.lifecycle.skills import JailTree, SkillPlan, SkillPlanner
from colibri.store.db import Store

if TYPE_CHECKING:
    from colibri.services.lifecycle.layout import SpawnPaths


def plan_for(
    store: Store, backend: JailBackend, planner: SkillPlanner, tenant_id: str, asked: list[str] | None
) -> SkillPlan:
    """The tenant's skill plan (SkillPlanner.plan) from its row, its recorded skills and the other
    tenants' ids; a refusal is recorded (``skill.refuse``, its own transaction) and raised."""
    from colibri.store.audit_hooks import record
    from colibri.store.repos import TenantRepo
    from colibri.store.skills import SkillRepo

    with store.session() as session:
        repo = TenantRepo(session)
        tenant = repo.get(tenant_id)
        if tenant is None or tenant.status == "removed":
            raise TenantNotFound(tenant_id)
        tier, jail_name = tenant.tier, tenant.jail_name
        installed = SkillRepo(session).installed(tenant_id)
        others = [t for t in repo.ids() if t != tenant_id]
    try:
        return planner.plan(tenant_id, tier, asked, installed, others, _tree(backend, jail_name) if installed else None)
    except SupplyError as exc:
        with store.session() as session:
            record(session, "skill.refuse", f"tenant:{tenant_id}", tenant=tenant_id, outcome="refused",
                   asked=list(asked or []), tier=tier, error=exc.message)  # fmt: skip
        raise


def _tree(backend: JailBackend, jail_name: str) -> JailTree | None:
    """The jail's tree and root owner, to check its installed skills in (None: no jail, or one
    whose root user cannot be read: everything is then fetched and installed again)."""
    info = backend.info(jail_name)
    if info.state is JailState.ABSENT:
        return None
    try:
        return JailTree(info.root, backend.user_ids(jail_name, "root"))
    except JailError:
        return None


def check_capabilities(caps: list[dict[str, str]], plan: SkillPlan | None, paths: "SpawnPaths") -> None:
    """Every capability of the tenant must be provided by a skill of its plan (without one,
    spawn-local's: a handler of the shipped mother).  Raises InvalidInput."""
    handlers = paths.skills_dir / "mother" / "handlers"
    for cap in caps:
        if plan is None and not (handlers / cap["name"]).is_file():
            raise InvalidInput(
                f"no handler for capability {cap['name']}: add an executable named {cap['name']} to {handlers}"
            )
        if plan is not None and plan.provider(cap["name"]) is None:
            raise InvalidInput(
                f"no handler for capability {cap['name']}: no skill of the tenant provides it (add the skill "
                f"with --skill, or an executable named {cap['name']} to {handlers} for the builtin mother)"
            )
