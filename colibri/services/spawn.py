"""The spawn pipeline: a tenant goes from a row in the store to a running agent in its jail.

A resumable state machine recorded in ``tenants.spawn_step``:

    jail_created → jail_started → secrets_provisioned → mother_installed → mother_started → active

Every step looks at the real state first and does only what is missing, so running spawn again
after a crash, a kill -9 or an error picks up where it stopped and converges.  A failure marks
the tenant ``failed`` with the reason; the agent is never started when provisioning failed.
"""

import ipaddress
import json
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from colibri import __version__
from colibri.adapters import jailfs
from colibri.adapters.jail import UID_BLOCK, JailBackend, JailIds, JailInfo, JailState, Mount
from colibri.adapters.localhome import LocalHome
from colibri.adapters.locks import host_lock
from colibri.adapters.runner import CommandResult
from colibri.domain import TenantStatus, check_transition
from colibri.domain import capabilities_from_specs as parse_capabilities
from colibri.errors import (
    ColibriError,
    InvalidInput,
    JailError,
    JailExists,
    MotherNotReady,
    StateConflict,
    TenantNotFound,
)
from colibri.services import adoption
from colibri.services.adoption import Adoption, withdraw
from colibri.store.db import Store
from colibri.store.models import Tenant, tenant_public, utcnow
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

SKILL_DIR = "/usr/local/share/colibri/skills/mother"
HANDLERS_DIR = "/usr/local/libexec/colibri/handlers"
IDENTITY = "/usr/local/etc/colibri/agent.json"
JAIL_SOCKET_DIR = "/var/run/colibri"
MOTHER = "colibri_mother"

StepCallback = Callable[[str, str, str, str], None]
"""on_step(tenant, step, state, detail) with state in start | done | skip | fail."""


@dataclass(frozen=True)
class SpawnPaths:
    run_dir: Path
    skills_dir: Path
    jail_user: str
    ip_pool: str
    default_template: str
    uid_base: int = 1_000_000_000
    uid_blocks: int = 16_384
    state_dir: Path | None = None
    """Where adoption records live (``state_dir/adopted/``); default: beside ``run_dir``."""

    @property
    def records(self) -> Path:
        return self.state_dir if self.state_dir is not None else self.run_dir

    @property
    def locks(self) -> Path:
        return self.run_dir / "locks"

    def socket_dir(self, tenant_id: str) -> Path:
        return self.run_dir / "agents" / tenant_id


class SpawnService:
    def __init__(
        self,
        store: Store,
        backend: JailBackend,
        paths: SpawnPaths,
        provision: Callable[[str], Any] | None,
        notify_daemon: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._backend = backend
        self._paths = paths
        self._provision = provision
        self._notify = notify_daemon
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
    ) -> dict[str, Any]:
        """Run (or resume) the pipeline for one tenant; returns the tenant.  Raises TenantNotFound,
        StateConflict (another spawn of the tenant runs), JailExists, the backend's and the secrets'
        errors (the tenant is then ``failed`` with the reason)."""
        caps = parse_capabilities(capabilities) if capabilities is not None else None
        report = on_step or _quiet
        with host_lock(self._paths.locks, f"spawn-{tenant_id}", wait=None):
            tenant = self._begin(tenant_id, template, caps, backend=self._backend.name)
            try:
                self._run_steps(tenant, adopt, report)
            except ColibriError as exc:
                self._fail(tenant_id, exc)
                raise
            return self._finish(tenant_id)

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
    ) -> dict[str, Any]:
        """The same chain without a jail: secrets into ``home/.env``, the mother as a host process."""
        caps = parse_capabilities(capabilities) if capabilities is not None else None
        report = on_step or _quiet
        with host_lock(self._paths.locks, f"spawn-{tenant_id}", wait=None):
            tenant = self._begin(tenant_id, None, caps, backend="local")
            try:
                self._run_local(tenant, home, report)
            except ColibriError as exc:
                self._fail(tenant_id, exc)
                raise
            return self._finish(tenant_id)

    # ---- the jail pipeline -------------------------------------------------------------------------
    def _run_steps(self, tenant: Tenant, adopt: tuple[str, Path] | None, report: StepCallback) -> None:
        if adopt is not None and not tenant.adopted:
            # A new adoption: checked first, each change recorded, all of it undone on a failure.
            record: Adoption | None = None
            try:
                record = self._adopt_checked(tenant, *adopt)
                self._steps(tenant, None, report, record)
            except ColibriError as exc:
                self._undo_adoption(tenant, record, exc)
                raise
            return
        self._steps(tenant, adopt, report, None)

    def _steps(
        self, tenant: Tenant, adopt: tuple[str, Path] | None, report: StepCallback, adoption: Adoption | None
    ) -> None:
        name = tenant.jail_name
        with _step(report, tenant.tenant_id, "jail_created") as say:
            info = self._ensure_jail(tenant, adopt) if adoption is None else self._backend.info(name)
            if adoption is not None:
                self._claim_adopted_ids(tenant, name, adoption)
                if self._backend.enable_service(name, MOTHER, True):
                    adoption.enabled_mother = True
                    adoption.save(self._paths.records)
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
            self._install_mother(tenant)
            say(f"skill in {SKILL_DIR}, identity in {IDENTITY}")
        self._record(tenant.tenant_id, "mother_installed")

        with _step(report, tenant.tenant_id, "mother_started") as say:
            if self._notify is not None:
                self._notify(tenant.tenant_id)
            say(self._start_mother(name))
        self._record(tenant.tenant_id, "mother_started")

    def _ensure_jail(self, tenant: Tenant, adopt: tuple[str, Path] | None) -> JailInfo:
        name = tenant.jail_name
        info = self._backend.info(name)
        if adopt is not None:
            return self._adopt(tenant, info, *adopt)
        if info.state is JailState.ABSENT or (not info.managed and _interrupted(self._backend, name)):
            ip = self._allocate_ip(tenant.tenant_id) if _needs_ip(self._backend) else None
            ids = self._allocate_ids(tenant.tenant_id)
            return self._backend.create(name, ip=ip, template=tenant.template, ids=ids)
        if not info.managed and not tenant.adopted:
            raise JailExists(
                f"a jail named {name} exists and colibri did not create it; to use it, adopt it: "
                f"colibri spawn-agent {tenant.tenant_id} --jail-name {name} --jail-root {info.root}"
            )
        return info

    def _adopt(self, tenant: Tenant, info: JailInfo, name: str, root: Path) -> JailInfo:
        """A re-run of a spawn whose adoption went through: the same checks, nothing claimed again."""
        self._adopt_target(tenant, info, name, root)
        self._claim_adopted_ids(tenant, name, None)
        tenant.adopted = True
        return info

    def _adopt_target(self, tenant: Tenant, info: JailInfo, name: str, root: Path) -> None:
        if name != tenant.jail_name:
            raise InvalidInput(f"--jail-name {name} must be the tenant's jail name {tenant.jail_name} (1:1:1)")
        if info.state is JailState.ABSENT:
            raise JailError(f"cannot adopt jail {name}: the {self._backend.name} backend has no such jail")
        if root.is_symlink():
            raise JailError(f"cannot adopt jail {name}: --jail-root {root} is a symlink")
        if root.resolve() != info.root.resolve() or info.root.is_symlink():
            raise JailError(f"cannot adopt jail {name}: its root is {info.root}, not {root}")
        if info.managed:
            raise JailError(f"cannot adopt jail {name}: colibri created it; run 'colibri spawn-agent {name}' instead")

    def _adopt_checked(self, tenant: Tenant, name: str, root: Path) -> Adoption:
        """Check everything an adoption needs before anything changes (the jail, its root, its
        ids against the other tenants', the agent user, its home, every directory colibri writes
        to), then start the record of what it is about to change."""
        info = self._backend.info(name)
        self._adopt_target(tenant, info, name, root)
        self._ids_of_adopted(tenant, name)
        created, running = adoption.preflight(self._backend, name, self._paths.jail_user)
        handlers = self._paths.skills_dir / "mother" / "handlers"
        record = Adoption(
            tenant.tenant_id,
            name,
            was_running=running,
            handlers=sorted(p.name for p in handlers.iterdir() if p.is_file()) if handlers.is_dir() else [],
            created_dirs=created,
        )
        record.save(self._paths.records)
        tenant.adopted = True
        return record

    def _undo_adoption(self, tenant: Tenant, record: Adoption | None, exc: ColibriError) -> None:
        """A new adoption failed: take out what it added and forget the jail (the tenant is then
        ``failed`` with the reason, and not adopted).  An undo that fails too is said with it."""
        try:
            if record is not None:
                withdraw(self._backend, record, self._paths.jail_user, restore_state=True)
        except ColibriError as undo:
            tenant.adopted = False
            where = Adoption.path(self._paths.records, tenant.tenant_id)
            raise JailError(f"{exc}; undoing the adoption failed too ({undo}): see {where}") from None
        with self._store.session() as session:
            row = TenantRepo(session).get_for_update(tenant.tenant_id)
            assert row is not None
            row.adopted = False
            row.spawn_step = None
            row.jail_root = None
            row.backend = None
            if record is not None and record.claimed_ids:
                row.uid_base = record.prior_uid_base
        Adoption.forget(self._paths.records, tenant.tenant_id)
        tenant.adopted = False

    def _ids_of_adopted(self, tenant: Tenant, name: str) -> int | None:
        """The block of host ids the adopted jail's root is on, checked against every other
        tenant's (no change); None for a jail on host ids (bastille), which claims no block."""
        base = self._backend.user_ids(name, "root")[0]
        if base < UID_BLOCK:
            return None
        with self._store.session() as session:
            repo = TenantRepo(session)
            for other in repo.find(include_removed=True):
                held = other.uid_base
                if other.tenant_id != tenant.tenant_id and held is not None and abs(held - base) < UID_BLOCK:
                    raise JailError(
                        f"cannot adopt jail {name}: its ids ({base}..) overlap tenant {other.tenant_id}'s block"
                    )
                if other.tenant_id == tenant.tenant_id and held not in (None, base):
                    raise JailError(f"cannot adopt jail {name}: tenant {tenant.tenant_id} already has the block {held}")
        return base

    def _claim_adopted_ids(self, tenant: Tenant, name: str, record: Adoption | None) -> None:
        """An adopted jail keeps its own ids.  When they are a block of host ids (a sandbox jail
        in a user namespace), it must be no other tenant's, and is recorded as this tenant's so
        that it is never given out; a jail on host ids (bastille) records nothing."""
        with host_lock(self._paths.locks, "uid-pool"):
            base = self._ids_of_adopted(tenant, name)  # again, under the pool's lock
            if base is None:
                return
            with self._store.session() as session:
                row = TenantRepo(session).get_for_update(tenant.tenant_id)
                assert row is not None
                if row.uid_base == base:
                    return
                if record is not None:
                    record.prior_uid_base, record.claimed_ids = row.uid_base, True
                    record.save(self._paths.records)
                row.uid_base = base

    def _ensure_socket_mount(self, name: str) -> None:
        socket_dir = self._paths.socket_dir(name)
        _make_socket_dir(socket_dir, self._backend.user_ids(name, self._paths.jail_user)[1])
        self._backend.mount(name, Mount(socket_dir, JAIL_SOCKET_DIR, read_only=False))

    def _expect_socket_mount(self, name: str) -> None:
        """The socket directory must be mounted in the running jail, not only configured."""
        mount = Mount(self._paths.socket_dir(name), JAIL_SOCKET_DIR, read_only=False)
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
        self._secrets_expected[tenant_id] = bool(getattr(result, "secrets_expected", True))
        return str(getattr(result, "message", result) or "provisioned")

    def _install_mother(self, tenant: Tenant) -> None:
        name = tenant.jail_name
        root = self._backend.root(name)
        source = self._paths.skills_dir / "mother"
        # Owned by the jail's root as the host sees it (a sandbox jail's root is not host root).
        owner = self._backend.user_ids(name, "root")
        for rel in ("var/log", "var/run"):  # an adopted jail may lack them
            with jailfs.open_dir(root, rel, create=True, owner=owner):
                pass
        jailfs.copy_tree(source, root, SKILL_DIR, owner=owner)
        jailfs.copy_tree(source / "handlers", root, HANDLERS_DIR, owner=owner)
        caps = json.loads(tenant.capabilities or "[]")
        for cap in caps:
            _require_handler(root, cap["name"], source / "handlers")
        identity = self._identity(tenant, caps, JAIL_SOCKET_DIR, f"/home/{self._paths.jail_user}/.env", HANDLERS_DIR)
        jailfs.write_file(root, IDENTITY, identity, mode=0o644, owner=owner, dir_owner=owner)

    def _identity(self, tenant: Tenant, caps: list[dict[str, str]], sock: str, env: str, handlers: str) -> bytes:
        document = {
            "tenant": tenant.tenant_id,
            "agent_id": f"{tenant.tenant_id}-1",
            "user": self._paths.jail_user,
            "capabilities": caps,
            "socket": f"{sock}/agent.sock",
            "env_file": env,
            "secrets_expected": self._secrets_expected.get(tenant.tenant_id, True),
            "handlers_dir": handlers,
            "mother_version": __version__,
        }
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()

    def _start_mother(self, name: str) -> str:
        # The identity was just (re)written: a mother already running (started by the jail's rc at
        # boot, or by an earlier spawn) must read it again.
        return start_mother(self._backend, name, restart=True)

    # ---- spawn-local ---------------------------------------------------------------------------------
    def _run_local(self, tenant: Tenant, home: Path, report: StepCallback) -> None:
        with _step(report, tenant.tenant_id, "home_checked") as say:
            if not home.is_absolute() or home.is_symlink() or not home.is_dir():
                raise InvalidInput(
                    f"--home {home} must be an existing directory, given as an absolute path, not a symlink"
                )
            say(str(home))
        self._record(tenant.tenant_id, "home_checked", jail_root=str(home))
        with _step(report, tenant.tenant_id, "secrets_provisioned") as say:
            say(self._provision_secrets(tenant.tenant_id))
        self._record(tenant.tenant_id, "secrets_provisioned")
        local = LocalHome(home)
        with _step(report, tenant.tenant_id, "mother_installed") as say:
            uid, gid = local.owner()
            with jailfs.open_dir(home, ".colibri", create=True, mode=0o700, owner=(uid, gid)):
                pass
            socket_dir = self._paths.socket_dir(tenant.tenant_id)
            _make_socket_dir(socket_dir, gid)
            caps = json.loads(tenant.capabilities or "[]")
            handlers = self._paths.skills_dir / "mother" / "handlers"
            for cap in caps:
                _require_handler(self._paths.skills_dir / "mother", cap["name"], handlers, rel="handlers")
            identity = self._identity(tenant, caps, str(socket_dir), str(home / ".env"), str(handlers))
            jailfs.write_file(home, ".colibri/agent.json", identity, mode=0o644)
            say(str(home / ".colibri/agent.json"))
        self._record(tenant.tenant_id, "mother_installed")
        with _step(report, tenant.tenant_id, "mother_started") as say:
            if self._notify is not None:
                self._notify(tenant.tenant_id)
            say(_start_local_mother(local, self._paths.skills_dir / "mother" / "mother.py"))
        self._record(tenant.tenant_id, "mother_started")

    # ---- store ---------------------------------------------------------------------------------------
    def _begin(self, tenant_id: str, template: str | None, caps: list[dict[str, str]] | None, backend: str) -> Tenant:
        with self._store.session() as session:
            tenant = TenantRepo(session).get_for_update(tenant_id)
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
            if caps is not None:  # checked before anything is stored: a refused one is never kept
                handlers = self._paths.skills_dir / "mother" / "handlers"
                for cap in caps:
                    if not (handlers / cap["name"]).is_file():
                        raise InvalidInput(
                            f"no handler for capability {cap['name']}: add an executable named "
                            f"{cap['name']} to {handlers}"
                        )
                tenant.capabilities = json.dumps(caps)
            tenant.status = TenantStatus.SPAWNING
            tenant.backend = backend
            tenant.last_error = None
            tenant.updated_at = utcnow()
            session.flush()
            session.expunge(tenant)
        # The template is this run's until the backend accepts it: the store gets it with the
        # jail_created step, so a refused one (no such template, a template that failed) is not
        # kept and the next spawn does not fail on it again.
        tenant.template = template or tenant.template or (self._paths.default_template if backend != "local" else None)
        return tenant

    def _record(self, tenant_id: str, step: str, **fields: Any) -> None:
        with self._store.session() as session:
            tenant = TenantRepo(session).get_for_update(tenant_id)
            assert tenant is not None
            tenant.spawn_step = step
            for key, value in fields.items():
                setattr(tenant, key, value)
            tenant.updated_at = utcnow()

    def _finish(self, tenant_id: str) -> dict[str, Any]:
        with self._store.session() as session:
            tenant = TenantRepo(session).get_for_update(tenant_id)
            assert tenant is not None
            check_transition(tenant_id, TenantStatus(tenant.status), TenantStatus.ACTIVE)
            tenant.status = TenantStatus.ACTIVE
            tenant.spawn_step = "active"
            tenant.updated_at = utcnow()
            return tenant_public(tenant)

    def _fail(self, tenant_id: str, exc: ColibriError) -> None:
        with self._store.session() as session:
            tenant = TenantRepo(session).get_for_update(tenant_id)
            if tenant is None or tenant.status != TenantStatus.SPAWNING:
                return
            tenant.status = TenantStatus.FAILED
            tenant.last_error = str(exc)[:2000]
            tenant.updated_at = utcnow()

    def _allocate_ids(self, tenant_id: str) -> JailIds:
        """The tenant's block of host ids: kept once allocated (while the tenant row exists, even
        removed, so no id is reused for another tenant's files), else the lowest free block."""
        with host_lock(self._paths.locks, "uid-pool"), self._store.session() as session:
            repo = TenantRepo(session)
            tenant = repo.get_for_update(tenant_id)
            assert tenant is not None
            if tenant.uid_base is not None:
                return JailIds(tenant.uid_base)
            held = [t.uid_base for t in repo.find(include_removed=True) if t.uid_base is not None]
            start = self._paths.uid_base
            aligned = {b for b in held if (b - start) % UID_BLOCK == 0}
            odd = [b for b in held if b not in aligned]  # adopted jails' blocks: no overlap either
            for n in range(self._paths.uid_blocks):
                candidate = start + n * UID_BLOCK
                if candidate not in aligned and not any(abs(b - candidate) < UID_BLOCK for b in odd):
                    tenant.uid_base = candidate
                    return JailIds(candidate)
        raise JailError(
            f"the tenant id pool is exhausted ({self._paths.uid_blocks} blocks of {UID_BLOCK} from "
            f"{self._paths.uid_base}): raise tenant_uid_blocks"
        )

    def _allocate_ip(self, tenant_id: str) -> str:
        """The tenant's IP from the pool: kept if it has one, else the lowest free address."""
        with host_lock(self._paths.locks, "ip-pool"), self._store.session() as session:
            repo = TenantRepo(session)
            tenant = repo.get_for_update(tenant_id)
            assert tenant is not None
            if tenant.ip_address:
                return tenant.ip_address
            used = {t.ip_address for t in repo.find(include_removed=True) if t.ip_address}
            network = ipaddress.ip_network(self._paths.ip_pool, strict=False)
            hosts = network.hosts()  # lazy: a /8 is 16M addresses
            next(hosts, None)  # the first host is the gateway by convention
            for candidate in hosts:
                if str(candidate) not in used:
                    tenant.ip_address = str(candidate)
                    return str(candidate)
        raise JailError(f"the jail IP pool {self._paths.ip_pool} is exhausted")


def _make_socket_dir(socket_dir: Path, agent_gid: int) -> None:
    """``run_dir/agents/<tenant>``, root:<the tenant's agent gid> 0750, so of all host users only
    that tenant's agent reaches its socket; ``agents/`` is 0711 (no listing).  The tenant's own
    directory is what gets mounted into its jail."""
    socket_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
    socket_dir.parent.chmod(0o711)
    socket_dir.mkdir(exist_ok=True, mode=0o750)
    fd = os.open(socket_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchown(fd, 0, agent_gid)
        os.fchmod(fd, 0o750)
    finally:
        os.close(fd)


def _needs_ip(backend: JailBackend) -> bool:
    return bool(getattr(backend, "needs_ip", False))


def _interrupted(backend: JailBackend, name: str) -> bool:
    """The backend's own create of ``name`` was cut short (bastille: its intent file is there), so
    the jail is colibri's half-made one and ``create`` replaces it, rather than a foreign jail."""
    check = getattr(backend, "interrupted", None)
    return bool(check(name)) if check is not None else False


def _require_handler(root: Path, capability: str, shipped: Path, rel: str = HANDLERS_DIR) -> None:
    try:
        jailfs.read_file(root, f"{rel}/{capability}", limit=1)
    except JailError:
        raise InvalidInput(
            f"no handler for capability {capability}: add an executable named {capability} to {shipped}"
        ) from None


MOTHER_READY = "ready: identity read and .env checked"
"""The line the mother logs once its identity is read and its .env checked (skills/mother)."""
MOTHER_REFUSED = "refusing to start: "
"""How every refusal line of the mother begins; the rest is its reason."""
MOTHER_READY_TIMEOUT = 15.0
"""How long spawn waits for the mother's ready line.  Without it the agent is not active: a
mother that refuses (bad .env, no identity) fails the step with its reason, and so does one that
says nothing in time (under daemon(8) -R its supervisor would only restart it, later)."""
MOTHER_LOG = "var/log/colibri_mother.log"
MOTHER_PIDFILE = "var/run/colibri_mother_child.pid"
"""The mother's own pid (daemon(8) -p on FreeBSD; the sandbox's rc.d script writes it too)."""

_MOTHER_LINE = re.compile(
    rb"^(?:mother\[(\d+)\]: )?("
    + re.escape(MOTHER_READY.encode())
    + rb"|"
    + re.escape(MOTHER_REFUSED.encode())
    + rb".*)$",
    re.M,
)
"""A ready or refusal line, ``mother[PID]: `` first (skills/mother logs so; a stand-in may not)."""


def start_mother(backend: JailBackend, name: str, *, since: int | None = None, restart: bool = False) -> str:
    """Make sure the jail's mother runs and has said it is ready; return what ``service status``
    says.  Idempotent: a mother already running and ready is left alone (rc.subr answers a
    second ``start`` with "already running?", exit 1, so status is asked first).

    ``since``: the mother log's size before the caller started the jail, whose rc started the
    mother at boot: its ready line must come after that.  Without it, a running mother counts as
    ready only when the log's last ready-or-refusal line is a ready line of its current pid;
    otherwise it is restarted.  ``restart``: a running mother is always started afresh (spawn
    has just rewritten its identity).  Raises MotherNotReady with the mother's own reason when it
    refuses, exits or stays silent (a refusing mother is stopped, so it does not loop)."""
    status = _service(backend, name, "status")
    if status.exit_code == 0 and restart:
        _service(backend, name, "stop")
    elif status.exit_code == 0:
        if since is not None:
            return _await_ready(backend, name, since, started=False)
        last = _last_mother_line(_read_log(backend, name), 0)
        if (
            last is not None
            and last[1] == MOTHER_READY
            and last[0] is not None
            and last[0] == _mother_pid(backend, name)
        ):
            return status.out.strip()
        _service(backend, name, "stop")  # running, but not known to be ready: start it afresh
    return _start(backend, name)


def mother_log_size(backend: JailBackend, name: str) -> int:
    """The mother log's size now: pass it to start_mother as ``since`` before starting the jail."""
    return len(_read_log(backend, name))


def _start(backend: JailBackend, name: str) -> str:
    offset = len(_read_log(backend, name))
    result = _service(backend, name, "start")
    # rc.subr answers a start of a service that is not enabled with a notice and exit 0.
    if result.exit_code != 0 or result.out.startswith("Cannot 'start'"):
        said = _first_line(result.err) or _first_line(result.out) or f"exit {result.exit_code}"
        raise MotherNotReady(f"the mother skill did not start in jail {name}: {said}")
    return _await_ready(backend, name, offset, started=True)


def _await_ready(backend: JailBackend, name: str, offset: int, *, started: bool) -> str:
    deadline = time.monotonic() + MOTHER_READY_TIMEOUT
    while True:
        line = _mother_line_since(backend, name, offset)
        if line is not None and line[1].startswith(MOTHER_REFUSED):
            _service(backend, name, "stop")  # under daemon(8) -R it would only retry, and refuse again
            raise _refused(name, line[1])
        status = _service(backend, name, "status")
        if status.exit_code == 0 and line is not None and line[1] == MOTHER_READY:
            return status.out.strip()
        if status.exit_code != 0:
            line = _mother_line_since(backend, name, offset)
            if line is not None and line[1].startswith(MOTHER_REFUSED):
                raise _refused(name, line[1])
            if not started:  # the mother rc started at boot is gone: start it ourselves
                return _start(backend, name)
            raise MotherNotReady(
                f"the mother skill exited right after starting in jail {name}: {_log_tail(backend, name)}"
            )
        if time.monotonic() >= deadline:
            _service(backend, name, "stop")
            raise MotherNotReady(
                f"the mother skill in jail {name} did not say it was ready within {MOTHER_READY_TIMEOUT:g} s "
                f"(stopped again); its last log line: {_log_tail(backend, name)}"
            )
        time.sleep(0.1)


def _refused(name: str, line: str) -> MotherNotReady:
    return MotherNotReady(f"the mother skill refused to start in jail {name}: {line.removeprefix(MOTHER_REFUSED)}")


def _mother_line_since(backend: JailBackend, name: str, offset: int) -> tuple[int | None, str] | None:
    log = _read_log(backend, name)
    return _last_mother_line(log, offset if len(log) >= offset else 0)  # a rotated log starts again


def _start_local_mother(local: LocalHome, skill: Path) -> str:
    """spawn-local's mother, held to the same rule as a jail's: active only after its ready line
    (a running one only if that line is its own), a refusal fails with its reason."""
    log_rel = ".colibri/mother.log"

    def read() -> bytes:
        try:
            return jailfs.read_file(local.home, log_rel, limit=1 << 20)
        except JailError:
            return b""

    running = local.pid()
    if running is not None:
        last = _last_mother_line(read(), 0)
        if last is not None and last[1] == MOTHER_READY and last[0] == running:
            return f"pid {running}"
        local.stop()
    offset = len(read())
    pid = local.start(skill, local.state / "agent.json")
    deadline = time.monotonic() + MOTHER_READY_TIMEOUT
    while True:
        log = read()
        line = _last_mother_line(log, offset if len(log) >= offset else 0)
        if line is not None and line[1].startswith(MOTHER_REFUSED):
            local.stop()
            raise MotherNotReady(f"the mother skill refused to start: {line[1].removeprefix(MOTHER_REFUSED)}")
        alive = local.pid() == pid
        if alive and line is not None and line[1] == MOTHER_READY:
            return f"pid {pid}"
        if not alive:
            raise MotherNotReady(f"the mother skill exited right after starting (see {local.state / 'mother.log'})")
        if time.monotonic() >= deadline:
            local.stop()
            raise MotherNotReady(
                f"the mother skill did not say it was ready within {MOTHER_READY_TIMEOUT:g} s (stopped again; "
                f"see {local.state / 'mother.log'})"
            )
        time.sleep(0.1)


def _service(backend: JailBackend, name: str, verb: str) -> CommandResult:
    return backend.exec(name, backend.service_argv(MOTHER, verb), timeout=30)


def _last_mother_line(log: bytes, offset: int) -> tuple[int | None, str] | None:
    """(pid, text) of the last ready or refusal line of the log after ``offset``."""
    found = None
    for match in _MOTHER_LINE.finditer(log, offset):
        found = match
    if found is None:
        return None
    pid = int(found.group(1)) if found.group(1) else None
    return pid, found.group(2).decode("utf-8", "replace")[:300]


def _mother_pid(backend: JailBackend, name: str) -> int | None:
    try:
        text = jailfs.read_file(backend.root(name), MOTHER_PIDFILE, limit=64).decode("ascii", "replace")
    except JailError:
        return None
    word = text.split()[0] if text.split() else ""
    return int(word) if word.isdigit() else None


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0][:300] if lines else ""


def _read_log(backend: JailBackend, name: str) -> bytes:
    try:
        return jailfs.read_file(backend.root(name), MOTHER_LOG, limit=1 << 20)
    except JailError:
        return b""


def _log_tail(backend: JailBackend, name: str) -> str:
    try:
        data = jailfs.read_file(backend.root(name), MOTHER_LOG, limit=1 << 16)
    except JailError:
        return "no log"
    lines = [ln for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no log"


def _quiet(tenant: str, step: str, state: str, detail: str) -> None:
    return None


class _step:
    """Report a step's start, then done (with a detail) or fail (with the error)."""

    def __init__(self, report: StepCallback, tenant: str, step: str) -> None:
        self._report, self._tenant, self._step = report, tenant, step
        self._detail = ""

    def __enter__(self) -> Callable[[str], None]:
        self._report(self._tenant, self._step, "start", "")
        return self._say

    def _say(self, detail: str) -> None:
        self._detail = detail

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            self._report(self._tenant, self._step, "done", self._detail)
        elif isinstance(exc, ColibriError):
            self._report(self._tenant, self._step, "fail", str(exc))
