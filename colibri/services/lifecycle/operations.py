"""Operations on a spawned agent: start, stop, destroy, release (each under the tenant's lock)."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from colibri.adapters.jail import JailBackend, JailState, Mount
from colibri.adapters.localhome import LocalHome
from colibri.domain import HAS_JAIL, TenantStatus
from colibri.errors import ColibriError, JailError, MotherNotReady, StateConflict, TenantNotFound
from colibri.services.lifecycle.adoption import Adoption, withdraw
from colibri.services.lifecycle.layout import JAIL_SOCKET_DIR, agent_lock
from colibri.services.lifecycle.mother import mother_log_size, start_mother
from colibri.store.db import Store
from colibri.store.models import Tenant, TenantView, tenant_public
from colibri.store.repos import TenantRepo


class ReleasedView(TenantView):
    """release-agent's answer: the tenant, and what colibri took out of the jail."""

    removed: list[str]


class AgentService:
    def __init__(
        self,
        store: Store,
        backend: JailBackend,
        locks_dir: Path,
        *,
        state_dir: Path | None = None,
        jail_user: str = "agent",
        socket_root: Path | None = None,
        local_home: Callable[[Path], LocalHome] = LocalHome,
        close_socket: Callable[[str], bool] | None = None,
    ) -> None:
        self._store = store
        self._backend = backend
        self._locks = locks_dir
        self._records = state_dir if state_dir is not None else locks_dir.parent  # SpawnPaths.records
        self._jail_user = jail_user
        self._sockets = socket_root if socket_root is not None else locks_dir.parent / "agents"
        self._local_home = local_home
        self._close_socket = close_socket  # the daemon's agent socket of a tenant: True if it closed one

    @property
    def backend(self) -> JailBackend:
        return self._backend

    @property
    def locks_dir(self) -> Path:
        return self._locks

    def start(self, tenant_id: str) -> TenantView:
        """Start a stopped agent's jail (or local mother).  Raises TenantNotFound, StateConflict."""
        with agent_lock(self._locks, tenant_id):
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
            self.start_agent(tenant.jail_name)
            return self.set_status(tenant_id, TenantStatus.ACTIVE, audit="agent.start")

    def stop(self, tenant_id: str) -> TenantView:
        """Stop an agent's jail (or local mother); the tenant becomes ``stopped``."""
        with agent_lock(self._locks, tenant_id):
            tenant = self._tenant(tenant_id)
            self._require_spawned(tenant)
            if tenant.backend == "local" and tenant.jail_root:
                self._local_home(Path(tenant.jail_root)).stop()
            elif self._backend.info(tenant.jail_name).state is JailState.RUNNING:
                self._backend.stop(tenant.jail_name)
            return self.set_status(tenant_id, TenantStatus.STOPPED, audit="agent.stop")

    def destroy(self, tenant_id: str) -> TenantView:
        """Destroy the tenant's jail.  Refused for an adopted jail or one without colibri's marker.
        The tenant goes back to ``registered`` and its IP returns to the pool."""
        with agent_lock(self._locks, tenant_id):
            tenant = self._tenant(tenant_id)
            if tenant.adopted:
                raise StateConflict(
                    f"jail {tenant.jail_name} was adopted, not created by colibri; refusing to destroy it "
                    f"(to hand it back: colibri release-agent {tenant_id})"
                )
            if tenant.backend == "local" and tenant.jail_root:
                self._local_home(Path(tenant.jail_root)).stop()
            elif tenant.backend not in (None, "local"):
                info = self._backend.info(tenant.jail_name)
                if info.state is not JailState.ABSENT:
                    if not info.managed:
                        raise JailError(f"jail {tenant.jail_name} was not created by colibri; refusing to destroy it")
                    self._backend.destroy(tenant.jail_name)
            return self._reset(tenant_id, audit="agent.destroy")

    def release(self, tenant_id: str) -> ReleasedView:
        """Hand an adopted jail back: undo exactly what colibri added to it (its mother stopped,
        the socket mount, the identity and the mother's files, the tenant's ``.env``, the mother's
        rc.conf enable and the directories colibri made), each step checked, and forget it.  The
        jail itself, never colibri's, stays (running or not, as it is).  The tenant goes back to
        ``registered``; the result's ``removed`` says what went.  A failed step raises JailError
        and leaves the tenant adopted, so running release again goes on from there."""
        with agent_lock(self._locks, tenant_id):
            tenant = self._tenant(tenant_id)
            if not tenant.adopted:
                raise StateConflict(f"tenant {tenant_id} has no adopted jail; 'colibri destroy-agent' removes its jail")
            record = Adoption.load(self._records, tenant_id, tenant.jail_name)
            removed = withdraw(self._backend, record, self._jail_user, restore_state=False)
            if self._close_socket is not None and self._close_socket(tenant_id):
                removed.append("the daemon's agent socket")
            reset = self._reset(tenant_id, audit="agent.release", adopted=False)
            Adoption.forget(self._records, tenant_id)
        return ReleasedView(**reset, removed=removed)

    # ---- for reconcile, under the tenant's lock ---------------------------------------------------
    def socket_mount(self, name: str) -> Mount:
        return Mount(self._sockets / name, JAIL_SOCKET_DIR, read_only=False)

    def start_agent(self, jail: str) -> None:
        """Start the jail and see its mother ready.  The jail's rc starts the mother at boot, so
        colibri asks rc.subr's status first (a second ``start`` is "already running?", exit 1) and
        waits for a ready line logged after this boot.  A mother that refuses or never gets ready
        leaves a jail this call started stopped again: the tenant keeps its state."""
        was_running = self._backend.info(jail).state is JailState.RUNNING
        since = None if was_running else mother_log_size(self._backend, jail)
        self._backend.start(jail)
        try:
            if not self._backend.is_mounted(jail, self.socket_mount(jail)):  # live, not only configured
                raise JailError(
                    f"jail {jail} runs without its socket mount on {JAIL_SOCKET_DIR}"
                    f"{'; it was stopped again' if not was_running else ''}: restart it (stop-agent, start-agent)"
                )
            start_mother(self._backend, jail, since=since)
        except BaseException as exc:  # any failure, Ctrl-C too: a jail this call started is stopped again
            if was_running:
                raise
            try:
                self._backend.stop(jail)
            except ColibriError as stop:
                raise JailError(f"{exc}; stopping jail {jail} again failed too: {stop}") from None
            if isinstance(exc, MotherNotReady):
                raise MotherNotReady(f"{exc}; jail {jail} was stopped again") from None
            raise

    def set_status(
        self, tenant_id: str, status: TenantStatus, error: str | None = None, audit: str = "tenant.change"
    ) -> TenantView:
        with self._store.session() as session:
            return tenant_public(TenantRepo(session).change(tenant_id, status, audit=audit, last_error=error))

    # ---- helpers --------------------------------------------------------------------------------
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

    def _reset(self, tenant_id: str, audit: str, **fields: Any) -> TenantView:
        """Back to ``registered``, its jail's fields cleared (the IP back to the pool)."""
        cleared = dict.fromkeys(("backend", "jail_root", "ip_address", "spawn_step", "last_error"))
        with self._store.session() as session:
            repo = TenantRepo(session)
            tenant = repo.get_for_update(tenant_id)
            if tenant is not None and tenant.status == TenantStatus.SPAWNING:
                repo.change(
                    tenant_id, TenantStatus.FAILED, audit="spawn.abandon"
                )  # cut short (kill -9): we hold its lock
            return tenant_public(repo.change(tenant_id, TenantStatus.REGISTERED, audit=audit, **cleared, **fields))
