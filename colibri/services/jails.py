"""Agents' jails after spawn: start, stop, destroy, and reconcile the store with the backend."""

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from colibri.adapters.jail import JailBackend, JailState, Mount
from colibri.adapters.localhome import LocalHome
from colibri.adapters.locks import host_lock
from colibri.domain import HAS_JAIL, TenantStatus, check_transition
from colibri.errors import ColibriError, JailError, MotherNotReady, RepairFailed, StateConflict, TenantNotFound
from colibri.services.adoption import JAIL_SOCKET_DIR, Adoption, withdraw
from colibri.services.spawn import mother_log_size, start_mother
from colibri.store.db import Store
from colibri.store.models import Tenant, tenant_public, utcnow
from colibri.store.repos import TenantRepo

if TYPE_CHECKING:
    from colibri.settings import Settings

SHOULD_RUN = frozenset({TenantStatus.ACTIVE})
REPAIRABLE = frozenset({"stopped_jail", "running_jail", "missing_jail", "unmounted_socket"})


@dataclass(frozen=True)
class Drift:
    """One difference between the store and the backend, and what reconcile does about it."""

    kind: str  # orphan_jail | foreign_jail | missing_jail | stopped_jail | running_jail | unmounted_socket
    jail: str
    tenant: str | None
    action: str
    applied: bool = False
    error: str | None = None

    def public(self) -> dict[str, Any]:
        return asdict(self)


class JailService:
    def __init__(
        self,
        store: Store,
        backend: JailBackend,
        locks_dir: Path,
        *,
        state_dir: Path | None = None,
        jail_user: str = "agent",
        socket_root: Path | None = None,
    ) -> None:
        self._store = store
        self._backend = backend
        self._locks = locks_dir
        self._records = state_dir if state_dir is not None else locks_dir.parent  # SpawnPaths.records
        self._jail_user = jail_user
        self._sockets = socket_root if socket_root is not None else locks_dir.parent / "agents"

    def start(self, tenant_id: str) -> dict[str, Any]:
        """Start a stopped agent's jail (or local mother).  Raises TenantNotFound, StateConflict."""
        with host_lock(self._locks, f"spawn-{tenant_id}", wait=None):
            tenant = self._tenant(tenant_id)
            self._require_spawned(tenant)
            if tenant.backend == "local":
                raise StateConflict(f"tenant {tenant_id} runs locally; run 'colibri spawn-local' to start it")
            if tenant.status not in (TenantStatus.STOPPED, TenantStatus.ACTIVE):
                # A failed spawn may have failed at its secrets: never start such an agent; re-run
                # the pipeline, which provisions before it starts anything.
                raise StateConflict(
                    f"tenant {tenant_id} is {tenant.status}; run 'colibri spawn-agent {tenant_id}' to converge it"
                )
            self._start_agent(tenant.jail_name)
            return self._set_status(tenant_id, TenantStatus.ACTIVE)

    def stop(self, tenant_id: str) -> dict[str, Any]:
        """Stop an agent's jail (or local mother); the tenant becomes ``stopped``."""
        with host_lock(self._locks, f"spawn-{tenant_id}", wait=None):
            tenant = self._tenant(tenant_id)
            self._require_spawned(tenant)
            if tenant.backend == "local" and tenant.jail_root:
                LocalHome(Path(tenant.jail_root)).stop()
            elif self._backend.info(tenant.jail_name).state is JailState.RUNNING:
                self._backend.stop(tenant.jail_name)
            return self._set_status(tenant_id, TenantStatus.STOPPED)

    def destroy(self, tenant_id: str) -> dict[str, Any]:
        """Destroy the tenant's jail.  Refused for an adopted jail or one without colibri's marker.
        The tenant goes back to ``registered`` and its IP returns to the pool."""
        with host_lock(self._locks, f"spawn-{tenant_id}", wait=None):
            tenant = self._tenant(tenant_id)
            if tenant.adopted:
                raise StateConflict(
                    f"jail {tenant.jail_name} was adopted, not created by colibri; refusing to destroy it "
                    f"(to hand it back: colibri release-agent {tenant_id})"
                )
            if tenant.backend == "local" and tenant.jail_root:
                LocalHome(Path(tenant.jail_root)).stop()
            elif tenant.backend not in (None, "local"):
                info = self._backend.info(tenant.jail_name)
                if info.state is not JailState.ABSENT:
                    if not info.managed:
                        raise JailError(f"jail {tenant.jail_name} was not created by colibri; refusing to destroy it")
                    self._backend.destroy(tenant.jail_name)
            return self._reset(tenant_id)

    def release(self, tenant_id: str) -> dict[str, Any]:
        """Hand an adopted jail back: undo exactly what colibri added to it (its mother stopped,
        the socket mount, the identity and the mother's files, the tenant's ``.env``, the mother's
        rc.conf enable and the directories colibri made), each step checked, and forget it.  The
        jail itself, never colibri's, stays (running or not, as it is).  The tenant goes back to
        ``registered``; the result's ``removed`` says what went.  A failed step raises JailError
        and leaves the tenant adopted, so running release again goes on from there."""
        with host_lock(self._locks, f"spawn-{tenant_id}", wait=None):
            tenant = self._tenant(tenant_id)
            if not tenant.adopted:
                raise StateConflict(f"tenant {tenant_id} has no adopted jail; 'colibri destroy-agent' removes its jail")
            record = Adoption.load(self._records, tenant_id, tenant.jail_name)
            removed = withdraw(self._backend, record, self._jail_user, restore_state=False)
            reset = self._reset(tenant_id)
            with self._store.session() as session:
                row = TenantRepo(session).get_for_update(tenant_id)
                assert row is not None
                row.adopted = False
                reset["adopted"] = False
            Adoption.forget(self._records, tenant_id)
        reset["removed"] = removed
        return reset

    def reconcile(self, apply: bool = False) -> list[Drift]:
        """Compare the store with the backend.  Dry-run by default; ``apply`` repairs what is safe:
        starts jails that should run, stops jails of stopped tenants, marks tenants whose jail is
        gone as failed.  Orphan and foreign jails are only reported: destroying is an operator's call."""
        with self._store.session() as session:
            tenants = {t.jail_name: t for t in TenantRepo(session).find(include_removed=True)}
            for tenant in tenants.values():
                session.expunge(tenant)
        jails = {j.name: j for j in self._backend.list_jails()}
        drifts = [self._drift_of_jail(j, tenants.get(n)) for n, j in jails.items()]
        for name, tenant in tenants.items():
            if name not in jails and tenant.backend == self._backend.name and tenant.status in SHOULD_RUN:
                drifts.append(Drift("missing_jail", name, tenant.tenant_id, "mark the tenant failed"))
        found = [d for d in drifts if d is not None]
        return [self._apply(d) for d in found] if apply else found

    # ---- helpers --------------------------------------------------------------------------------
    def _drift_of_jail(self, jail: Any, tenant: Tenant | None) -> Drift | None:
        if tenant is None or tenant.status == TenantStatus.REMOVED or tenant.backend != self._backend.name:
            if not jail.managed:
                return Drift("foreign_jail", jail.name, None, "none: not colibri's")
            return Drift("orphan_jail", jail.name, tenant.tenant_id if tenant else None,
                         "report only: destroy it with the backend if it is not needed")  # fmt: skip
        status = TenantStatus(tenant.status)
        if status in SHOULD_RUN and jail.state is JailState.STOPPED:
            return Drift("stopped_jail", jail.name, tenant.tenant_id, "start the jail and its agent")
        if status is TenantStatus.STOPPED and jail.state is JailState.RUNNING:
            return Drift("running_jail", jail.name, tenant.tenant_id, "stop the jail")
        if status in SHOULD_RUN and not self._backend.is_mounted(jail.name, self._socket_mount(jail.name)):
            # configured but not live (mounted by hand away, or a start that did not apply it)
            return Drift("unmounted_socket", jail.name, tenant.tenant_id, "restart the jail and its agent")
        return None

    def _socket_mount(self, name: str) -> Mount:
        return Mount(self._sockets / name, JAIL_SOCKET_DIR, read_only=False)

    def _apply(self, drift: Drift) -> Drift:
        if drift.tenant is None or drift.kind not in REPAIRABLE:
            return drift
        try:
            # The tenant's spawn lock: never repair under a spawn, start, stop or destroy in flight.
            with host_lock(self._locks, f"spawn-{drift.tenant}", wait=None):
                if drift.kind in ("stopped_jail", "unmounted_socket"):
                    if drift.kind == "unmounted_socket":
                        self._backend.stop(drift.jail)
                    self._start_agent(drift.jail)
                elif drift.kind == "running_jail":
                    self._backend.stop(drift.jail)
                else:
                    self._set_status(drift.tenant, TenantStatus.FAILED, error="reconcile: the jail is missing")
        except ColibriError as exc:
            return Drift(drift.kind, drift.jail, drift.tenant, drift.action, False, str(exc))
        return Drift(drift.kind, drift.jail, drift.tenant, drift.action, True)

    def _start_agent(self, jail: str) -> None:
        """Start the jail and see its mother ready.  The jail's rc starts the mother at boot, so
        colibri asks rc.subr's status first (a second ``start`` is "already running?", exit 1) and
        waits for a ready line logged after this boot.  A mother that refuses or never gets ready
        leaves a jail this call started stopped again: the tenant keeps its state."""
        was_running = self._backend.info(jail).state is JailState.RUNNING
        since = None if was_running else mother_log_size(self._backend, jail)
        self._backend.start(jail)
        if not self._backend.is_mounted(jail, self._socket_mount(jail)):  # live, not only configured
            if not was_running:
                self._backend.stop(jail)
            raise JailError(
                f"jail {jail} runs without its socket mount on {JAIL_SOCKET_DIR}"
                f"{'; it was stopped again' if not was_running else ''}: restart it (stop-agent, start-agent)"
            )
        try:
            start_mother(self._backend, jail, since=since)
        except MotherNotReady as exc:
            if was_running:
                raise
            self._backend.stop(jail)
            raise MotherNotReady(f"{exc}; jail {jail} was stopped again") from None

    def _tenant(self, tenant_id: str) -> Tenant:
        with self._store.session() as session:
            tenant = TenantRepo(session).get(tenant_id)
            if tenant is None or tenant.status == TenantStatus.REMOVED:
                raise TenantNotFound(tenant_id)
            session.expunge(tenant)
            return tenant

    @staticmethod
    def _require_spawned(tenant: Tenant) -> None:
        if TenantStatus(tenant.status) not in HAS_JAIL or tenant.backend is None:
            raise StateConflict(f"tenant {tenant.tenant_id} has no agent yet; run 'colibri spawn-agent' first")

    def _set_status(self, tenant_id: str, status: TenantStatus, error: str | None = None) -> dict[str, Any]:
        with self._store.session() as session:
            tenant = TenantRepo(session).get_for_update(tenant_id)
            assert tenant is not None
            if tenant.status != status:
                check_transition(tenant_id, TenantStatus(tenant.status), status)
            tenant.status = status
            tenant.last_error = error
            tenant.updated_at = utcnow()
            return tenant_public(tenant)

    def _reset(self, tenant_id: str) -> dict[str, Any]:
        with self._store.session() as session:
            tenant = TenantRepo(session).get_for_update(tenant_id)
            assert tenant is not None
            if tenant.status == TenantStatus.SPAWNING:  # a spawn cut short (kill -9): we hold its lock
                tenant.status = TenantStatus.FAILED
            if tenant.status != TenantStatus.REGISTERED:
                check_transition(tenant_id, TenantStatus(tenant.status), TenantStatus.REGISTERED)
            tenant.status = TenantStatus.REGISTERED
            for name in ("backend", "jail_root", "ip_address", "spawn_step", "last_error"):
                setattr(tenant, name, None)
            tenant.updated_at = utcnow()
            return tenant_public(tenant)


def describe_drifts(drifts: list[Drift]) -> list[dict[str, Any]]:
    return [d.public() for d in drifts]


def failed_repairs(drifts: list[Drift]) -> list[Drift]:
    """The repairs ``reconcile --apply`` tried that did not work (each with its error)."""
    return [d for d in drifts if d.error is not None]


def repair_failure(drifts: list[Drift]) -> RepairFailed | None:
    """The error for a ``reconcile --apply`` whose repairs did not all work, naming each."""
    failed = failed_repairs(drifts)
    if not failed:
        return None
    tried = sum(1 for d in drifts if d.applied or d.error is not None)
    summary = "; ".join(f"{d.kind} {d.jail}: {d.error}" for d in failed)
    return RepairFailed(f"{len(failed)} of {tried} repairs failed: {summary}")


def daemon_reconcile(settings: "Settings", store: Store) -> list[dict[str, Any]]:
    """The daemon's periodic reconcile: a dry run whose drifts it logs and counts (repairs stay
    an operator's call: ``colibri reconcile --apply``)."""
    from colibri.adapters.backends import make_backend

    service = JailService(store, make_backend(settings), settings.run_dir / "locks", state_dir=settings.state_dir)
    return describe_drifts(service.reconcile(apply=False))
