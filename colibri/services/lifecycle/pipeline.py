"""The spawn pipeline: a tenant goes from a row in the store to a running agent in its jail.

A resumable state machine recorded in ``tenants.spawn_step``:

    jail_created → jail_started → secrets_provisioned → mother_installed → mother_started → active

Every step looks at the real state first and does only what is missing, so running spawn again
after a crash, a kill -9 or an error picks up where it stopped and converges.  A failure marks
the tenant ``failed`` with the reason; the agent is never started when provisioning failed.
"""

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from colibri.adapters import jailfs
from colibri.adapters.jail import JailBackend, JailInfo, JailState
from colibri.adapters.localhome import LocalHome
from colibri.domain import TenantStatus, check_transition
from colibri.domain import capabilities_from_specs as parse_capabilities
from colibri.errors import ColibriError, InvalidInput, JailError, JailExists, StateConflict, TenantNotFound
from colibri.services.lifecycle.adoption import Adopter, Adoption
from colibri.services.lifecycle.allocation import allocate_ids, allocate_ip
from colibri.services.lifecycle.layout import (
    IDENTITY,
    JAIL_SOCKET_DIR,
    MOTHER,
    SKILL_DIR,
    SpawnPaths,
    agent_lock,
    make_socket_dir,
    record_local_home,
)
from colibri.services.lifecycle.mother import (
    identity,
    install_mother,
    require_handler,
    start_local_mother,
    start_mother,
)
from colibri.services.lifecycle.skill_records import check_capabilities, plan_for
from colibri.services.lifecycle.skills import SKILLS_ROOT, SkillPlan, SkillPlanner, staged
from colibri.services.lifecycle.steps import StepCallback as StepCallback
from colibri.services.lifecycle.steps import _quiet, _step
from colibri.store.db import Store
from colibri.store.models import Tenant, TenantView, tenant_public
from colibri.store.repos import TenantRepo

STEPS = (
    "jail_created",
    "jail_started",
    "secrets_provisioned",
    "mother_installed",
    "mother_started",
    "active",
)
LOCAL_STEPS = ("home_checked", "secrets_provisioned", "mother_installed", "mother_started", "active")


class Provisioned(Protocol):
    """What provisioning answers (services.secrets.ProvisionResult)."""

    @property
    def message(self) -> str: ...

    @property
    def secrets_expected(self) -> bool: ...


class SpawnService:
    def __init__(
        self,
        store: Store,
        backend: JailBackend,
        paths: SpawnPaths,
        provision: Callable[[str], Provisioned] | None,
        notify_daemon: Callable[[str], None] | None = None,
        local_home: Callable[[Path], LocalHome] = LocalHome,
        skills: SkillPlanner | None = None,
    ) -> None:
        self._store = store
        self._backend = backend
        self._paths = paths
        self._provision = provision
        self._notify = notify_daemon
        self._local_home = local_home
        self._adopter = Adopter(store, backend, paths)
        # issue 13: without a resolver, colibri's shipped mother only (source builtin)
        self._skills = skills or SkillPlanner(None, paths.skills_dir, paths.records / "skills-staging")
        self._secrets_expected: dict[str, bool] = {}  # by tenant, from its last provisioning

    # ---- public --------------------------------------------------------------------------------
    def spawn(
        self,
        tenant_id: str,
        *,
        template: str | None = None,
        capabilities: list[str] | None = None,
        adopt: tuple[str, Path] | None = None,
        on_step: StepCallback | None = None,
        skills: list[str] | None = None,
    ) -> TenantView:
        """Run (or resume) the pipeline for one tenant; returns the tenant.  Raises TenantNotFound,
        StateConflict (another spawn of the tenant runs), JailExists, the backend's and the secrets'
        errors (the tenant is then ``failed`` with the reason).  ``skills``: the ``--skill`` values
        (None: the recorded set again); they are resolved and verified first, and a refusal
        (SupplyError, exit 22) changes nothing: no jail, the tenant as it was."""
        caps = parse_capabilities(capabilities) if capabilities is not None else None
        report = on_step or _quiet
        with agent_lock(self._paths.locks, tenant_id), staged(self._plan(tenant_id, skills)) as plan:
            tenant = self._begin(tenant_id, template, caps, backend=self._backend.name, plan=plan)
            try:
                self._run_steps(tenant, adopt, report, plan)
            except ColibriError as exc:
                self._fail(tenant_id, exc)
                raise
            return self._finish(tenant_id)

    def _plan(self, tenant_id: str, asked: list[str] | None) -> SkillPlan:
        """The tenant's skills, verified and staged before anything is created (the mother_installed
        step names them); the caller's ``staged`` removes the staging directory afterwards."""
        return plan_for(self._store, self._backend, self._skills, tenant_id, asked)

    def spawn_many(
        self, tenant_ids: list[str], parallelism: int, on_step: StepCallback | None = None, **options: Any
    ) -> dict[str, ColibriError | None]:
        """Spawn several tenants, at most ``parallelism`` at once; returns each one's error or None."""
        results: dict[str, ColibriError | None] = {}

        def one(tid: str) -> None:
            try:
                self.spawn(tid, on_step=on_step, **options)
                results[tid] = None
            except ColibriError as exc:
                results[tid] = exc

        with ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
            list(pool.map(one, tenant_ids))
        return {tid: results[tid] for tid in tenant_ids}

    def spawn_local(
        self,
        tenant_id: str,
        home: Path,
        *,
        capabilities: list[str] | None = None,
        on_step: StepCallback | None = None,
    ) -> TenantView:
        """The same chain without a jail: secrets into ``home/.env``, the mother as a host process."""
        caps = parse_capabilities(capabilities) if capabilities is not None else None
        report = on_step or _quiet
        with agent_lock(self._paths.locks, tenant_id):
            tenant = self._begin(tenant_id, None, caps, backend="local")
            try:
                self._run_local(tenant, home, report)
            except ColibriError as exc:
                self._fail(tenant_id, exc)
                raise
            return self._finish(tenant_id)

    # ---- the jail pipeline -------------------------------------------------------------------------
    def _run_steps(self, tenant: Tenant, adopt: tuple[str, Path] | None, report: StepCallback, plan: SkillPlan) -> None:
        if adopt is not None and not tenant.adopted:
            # A new adoption: checked first, each change recorded, all of it undone on a failure.
            record: Adoption | None = None
            try:
                record = self._adopter.check(tenant, *adopt)
                self._steps(tenant, None, report, record, plan)
            except ColibriError as exc:
                self._adopter.undo(tenant, record, exc)
                raise
            except BaseException as exc:  # Ctrl-C: undone unless the store has the adoption (resumable)
                if not self._adopted(tenant.tenant_id):
                    self._adopter.undo(tenant, record, exc)
                raise
            return
        self._steps(tenant, adopt, report, None, plan)

    def _steps(
        self,
        tenant: Tenant,
        adopt: tuple[str, Path] | None,
        report: StepCallback,
        adoption: Adoption | None,
        plan: SkillPlan,
    ) -> None:
        name = tenant.jail_name
        with _step(report, tenant.tenant_id, "jail_created") as say:
            info = self._ensure_jail(tenant, adopt) if adoption is None else self._backend.info(name)
            if adoption is not None:
                self._adopter.claim_ids(tenant, name, adoption)
                if self._backend.enable_service(name, MOTHER, True):
                    adoption.enabled_mother = True
                    adoption.save(self._paths.records)
                if not self._backend.live_mount_safe and info.state is JailState.RUNNING:
                    # Never a live mount into a running jail that is someone else's: its root
                    # could swap the mount point for a symlink the host follows.  Stopped here,
                    # the mount is only configured, and jail(8) mounts it at the next step's start.
                    adoption.stopped_jail = True
                    adoption.save(self._paths.records)
                    self._backend.stop(name)
            self._ensure_socket_mount(name)
            say(f"{'adopted' if tenant.adopted else 'jail'} {name} at {info.root}")
        self._record(
            tenant.tenant_id, "jail_created", jail_root=str(info.root), adopted=tenant.adopted, template=tenant.template
        )

        with _step(report, tenant.tenant_id, "jail_started") as say:
            if self._backend.info(name).state is not JailState.RUNNING:
                if adoption is not None:
                    adoption.started_jail = True
                    adoption.save(self._paths.records)
                self._backend.start(name)
            self._expect(name, JailState.RUNNING)
            self._expect_socket_mount(name)
            say("running")
        self._record(tenant.tenant_id, "jail_started")

        with _step(report, tenant.tenant_id, "secrets_provisioned") as say:
            say(self._provision_secrets(tenant.tenant_id))
        self._record(tenant.tenant_id, "secrets_provisioned")

        with _step(report, tenant.tenant_id, "mother_installed") as say:
            expected = self._secrets_expected.get(tenant.tenant_id, True)
            install_mother(self._backend, self._paths, tenant, secrets_expected=expected, plan=plan)
            names = ", ".join(f"{w.record.name}@{w.record.version} ({w.record.source})" for w in plan.skills)
            say(f"skill in {SKILL_DIR}, identity in {IDENTITY}; skills in {SKILLS_ROOT}: {names}")
        self._record(tenant.tenant_id, "mother_installed", skills=plan)

        with _step(report, tenant.tenant_id, "mother_started") as say:
            if self._notify is not None:
                self._notify(tenant.tenant_id)
            # The identity was just (re)written: a mother already running (started by the jail's
            # rc at boot, or by an earlier spawn) must read it again.
            say(start_mother(self._backend, name, restart=True))
        self._record(tenant.tenant_id, "mother_started")

    def _ensure_jail(self, tenant: Tenant, adopt: tuple[str, Path] | None) -> JailInfo:
        name = tenant.jail_name
        info = self._backend.info(name)
        if adopt is not None:
            return self._adopter.rerun(tenant, info, *adopt)
        if info.state is JailState.ABSENT or (not info.managed and self._backend.interrupted(name)):
            ip = allocate_ip(self._store, self._paths, tenant.tenant_id) if self._backend.needs_ip else None
            ids = allocate_ids(self._store, self._paths, tenant.tenant_id)
            return self._backend.create(name, ip=ip, template=tenant.template, ids=ids, tier=tenant.tier)
        if not info.managed and not tenant.adopted:
            raise JailExists(
                f"a jail named {name} exists and colibri did not create it; to use it, adopt it: "
                f"colibri spawn-agent {tenant.tenant_id} --jail-name {name} --jail-root {info.root}"
            )
        return info

    def _ensure_socket_mount(self, name: str) -> None:
        make_socket_dir(self._paths.socket_dir(name), self._backend.user_ids(name, self._paths.jail_user)[1])
        self._backend.mount(name, self._paths.socket_mount(name))

    def _expect_socket_mount(self, name: str) -> None:
        """The socket directory must be mounted in the running jail, not only configured."""
        mount = self._paths.socket_mount(name)
        if not self._backend.is_mounted(name, mount):
            raise JailError(
                f"jail {name} runs without its socket mount ({mount.host_path} on {JAIL_SOCKET_DIR}); "
                f"restart it (colibri stop-agent {name} && colibri start-agent {name})"
            )

    def _expect(self, name: str, state: JailState) -> None:
        actual = self._backend.info(name).state
        if actual is not state:
            raise JailError(f"jail {name} is {actual} after the backend said it was {state}")

    def _provision_secrets(self, tenant_id: str) -> str:
        if self._provision is None:
            return "no secrets service configured"
        result = self._provision(tenant_id)
        # A tenant without a collection and with nothing staged has no secrets: its identity says
        # so, and its mother runs without a .env (one expecting secrets still refuses without it).
        self._secrets_expected[tenant_id] = result.secrets_expected
        return result.message or "provisioned"

    # ---- spawn-local ---------------------------------------------------------------------------------
    def _run_local(self, tenant: Tenant, home: Path, report: StepCallback) -> None:
        with _step(report, tenant.tenant_id, "home_checked") as say:
            if not home.is_absolute() or home.is_symlink() or not home.is_dir():
                raise InvalidInput(
                    f"--home {home} must be an existing directory, given as an absolute path, not a symlink"
                )
            try:  # the one home this host writes the tenant's .env in (the shared row can be forged)
                record_local_home(self._paths.records, tenant.tenant_id, home)
            except OSError as exc:
                raise JailError(f"cannot record the home of tenant {tenant.tenant_id}: {exc.strerror}") from None
            say(str(home))
        self._record(tenant.tenant_id, "home_checked", jail_root=str(home))
        with _step(report, tenant.tenant_id, "secrets_provisioned") as say:
            say(self._provision_secrets(tenant.tenant_id))
        self._record(tenant.tenant_id, "secrets_provisioned")
        local = self._local_home(home)
        with _step(report, tenant.tenant_id, "mother_installed") as say:
            uid, gid = local.owner()
            with jailfs.open_dir(home, ".colibri", create=True, mode=0o700, owner=(uid, gid)):
                pass
            socket_dir = self._paths.socket_dir(tenant.tenant_id)
            make_socket_dir(socket_dir, gid)
            caps = json.loads(tenant.capabilities or "[]")
            handlers = self._paths.skills_dir / "mother" / "handlers"
            for cap in caps:
                require_handler(self._paths.skills_dir / "mother", cap["name"], handlers, rel="handlers")
            expected = self._secrets_expected.get(tenant.tenant_id, True)
            user = self._paths.jail_user
            document = identity(tenant, user, caps, str(socket_dir), str(home / ".env"), str(handlers), expected)
            jailfs.write_file(home, ".colibri/agent.json", document, mode=0o644)
            say(str(home / ".colibri/agent.json"))
        self._record(tenant.tenant_id, "mother_installed")
        with _step(report, tenant.tenant_id, "mother_started") as say:
            if self._notify is not None:
                self._notify(tenant.tenant_id)
            say(start_local_mother(local, self._paths.skills_dir / "mother" / "mother.py"))
        self._record(tenant.tenant_id, "mother_started")

    # ---- store ---------------------------------------------------------------------------------------
    def _begin(
        self,
        tenant_id: str,
        template: str | None,
        caps: list[dict[str, str]] | None,
        backend: str,
        plan: SkillPlan | None = None,
    ) -> Tenant:
        with self._store.session() as session:
            repo = TenantRepo(session)
            tenant = repo.get_for_update(tenant_id)
            if tenant is None or tenant.status == TenantStatus.REMOVED:
                raise TenantNotFound(tenant_id)
            if tenant.backend not in (None, backend) and tenant.jail_root:
                raise StateConflict(
                    f"tenant {tenant_id} runs on the {tenant.backend} backend; destroy its agent before using {backend}"
                )
            check_transition(tenant_id, TenantStatus(tenant.status), TenantStatus.SPAWNING)
            if template and tenant.jail_root and tenant.template and template != tenant.template:
                raise StateConflict(
                    f"the jail of tenant {tenant_id} was made from template {tenant.template}; --template "
                    f"{template} applies to a new jail: colibri destroy-agent {tenant_id} first"
                )
            fields: dict[str, Any] = {"backend": backend, "last_error": None}
            if caps is not None:  # checked before anything is stored: a refused one is never kept
                check_capabilities(caps, plan, self._paths)
                fields["capabilities"] = json.dumps(caps)
            elif plan is not None:  # the recorded ones: still provided by the skills of this spawn
                check_capabilities(json.loads(tenant.capabilities or "[]"), plan, self._paths)
            tenant = repo.change(tenant_id, TenantStatus.SPAWNING, audit="spawn.begin", **fields)
            session.flush()
            session.expunge(tenant)
        # The template is this run's until the backend accepts it: the store gets it with the
        # jail_created step, so a refused one (no such template, a template that failed) is not
        # kept and the next spawn does not fail on it again.
        tenant.template = template or tenant.template or (self._paths.default_template if backend != "local" else None)
        return tenant

    def _adopted(self, tenant_id: str) -> bool:
        with self._store.session() as session:
            row = TenantRepo(session).get(tenant_id)
            return row is not None and bool(row.adopted)

    def _record(self, tenant_id: str, step: str, skills: SkillPlan | None = None, **fields: Any) -> None:
        with self._store.session() as session:
            audit = "spawn.adopt" if fields.get("adopted") else "spawn.step"
            TenantRepo(session).change(tenant_id, audit=audit, spawn_step=step, **fields)
            if skills is not None:  # the installed set, in the step's transaction (an entry a skill)
                from colibri.store.skills import SkillRepo

                repo = SkillRepo(session)
                repo.remove(tenant_id, skills.remove)
                for wanted in skills.skills:
                    repo.put(tenant_id, wanted.record)

    def _finish(self, tenant_id: str) -> TenantView:
        with self._store.session() as session:
            return tenant_public(
                TenantRepo(session).change(tenant_id, TenantStatus.ACTIVE, audit="spawn.done", spawn_step="active")
            )

    def _fail(self, tenant_id: str, exc: ColibriError) -> None:
        with self._store.session() as session:
            repo = TenantRepo(session)
            tenant = repo.get_for_update(tenant_id)
            if tenant is None or tenant.status != TenantStatus.SPAWNING:
                return
            repo.change(tenant_id, TenantStatus.FAILED, audit="spawn.fail", last_error=str(exc)[:2000])
