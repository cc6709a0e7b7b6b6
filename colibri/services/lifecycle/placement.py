"""Placement: where a tenant lives, and how the orchestrator reaches a host.

``Placement`` answers which host a tenant lives on, records a move (``rehome``) and makes the
link to another host once per command, lazily, from its enrolled reach (``HostReach``: the
fields of adapters/ssh_transport.py's SshTarget) through a ``LinkFactory`` (SSH in production,
tests/fakes/hostlink.py in the unit tests).  The lifecycle commands that use it are
``routing.Lifecycle``'s; a host's ops over its link are ``remote_host.RemoteHost``'s.

The authority (review R1): every host can write the shared database, so the tenant's host and
the host's pin come from the orchestrator's own record (store/orchestrator.py), and the shared
rows (``tenants.host``, the ``hosts`` row) must agree with it before anything is sent: a
disagreement refuses the command (StateConflict for a placement, HostKeyRefused for a pin) and
``reconcile`` reports it (``--apply`` restores the record's values in the shared rows).
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from colibri.errors import HostIncompatible, HostKeyRefused, NotFound, RemoteError, StateConflict
from colibri.services.lifecycle.remote_host import HostLink, RemoteHost
from colibri.store.db import Store
from colibri.text import safe

if TYPE_CHECKING:
    from colibri.store.orchestrator import OrchestratorRecord


@dataclass(frozen=True)
class HostReach:
    """How the orchestrator reaches a host, as enrolled (``colibri hosts add``): the fields of
    adapters/ssh_transport.py's SshTarget."""

    name: str
    user: str
    address: str
    port: int
    host_keys: tuple[str, ...]
    command: str | None


LinkFactory = Callable[[HostReach], HostLink]


class Placement:
    """Which host a tenant lives on, and the link to a host (made once per command, lazily: a
    colibri with one host never builds one, nor imports paramiko)."""

    def __init__(
        self, store: Store, this_host: str, links: LinkFactory | None, record: "OrchestratorRecord | None" = None
    ) -> None:
        self._store = store
        self.this_host = this_host
        self._links = links
        self.record = record  # None: the shared rows alone (a test's bare placement)
        self._made: dict[str, HostLink] = {}
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        return self._store

    def host_of(self, tenant_id: str) -> str:
        """The host the tenant lives on.  TenantNotFound."""
        return self.where(tenant_id)[0]

    def where(self, tenant_id: str) -> tuple[str, str]:
        """The tenant's host and status.  TenantNotFound."""
        from colibri.errors import TenantNotFound
        from colibri.store.repos import TenantRepo

        with self._store.session() as session:
            tenant = TenantRepo(session).get(tenant_id)
            if tenant is None or tenant.status == "removed":
                raise TenantNotFound(tenant_id)
            host, status = tenant.host, tenant.status
        self.check_placed(tenant_id, host)
        return host, status

    def check_placed(self, tenant_id: str, host: str) -> None:
        """The shared database places the tenant on ``host``: so must the orchestrator's record
        (a tenant it does not name lives on this host).  StateConflict otherwise: nothing is sent."""
        if self.record is None:
            return
        placed = self.record.host_of(tenant_id)
        if placed != host:
            raise StateConflict(
                f"tenant {tenant_id}: the shared database places it on host {safe(str(host)[:64])}, this "
                f"host's record of placement on {placed}; nothing was sent (colibri reconcile shows it, "
                "--apply restores the record's)"
            )

    def is_local(self, host: str) -> bool:
        return host == self.this_host

    def remote_hosts(self) -> list[str]:
        """The enrolled hosts other than this one, by name (those pinned in the record)."""
        if self.record is not None:
            return sorted(h for h in self.record.read().hosts if h != self.this_host)
        from colibri.store.hosts import HostRepo

        with self._store.session() as session:
            return [h.name for h in HostRepo(session).find() if h.name != self.this_host]

    def rehome(self, tenant_id: str, host: str, *, forget_jail: bool = False) -> None:
        """Record that the tenant now lives on ``host``: only while it has no jail anywhere, or
        with ``forget_jail`` (its old host is lost for good) its jail there forgotten.  In the same
        transaction its agents on other hosts become ``left`` and what they held is queued again
        (services/hive/moves.py), so its mother registers on the new host at once (review R11)."""
        import contextlib

        from colibri.domain import TenantStatus
        from colibri.errors import TenantNotFound
        from colibri.services.hive.moves import leave_old_host
        from colibri.store.repos import TenantRepo

        changing = self.record.change() if self.record is not None else contextlib.nullcontext(None)
        with changing as draft, self._store.session() as session:
            repo = TenantRepo(session)
            tenant = repo.get_for_update(tenant_id)
            if tenant is None or tenant.status == TenantStatus.REMOVED:
                raise TenantNotFound(tenant_id)
            self.check_placed(tenant_id, tenant.host)
            from colibri.store.hosts import HostRepo

            enrolled = host == self.this_host or HostRepo(session).hold(host)  # against a hosts remove (R9)
            if not enrolled or (draft is not None and host != self.this_host and host not in draft.hosts):
                raise NotFound(f"host not found: {host} (not enrolled on this orchestrator: colibri hosts add {host})")
            if forget_jail and tenant.adopted:
                raise StateConflict(f"tenant {tenant_id} has an adopted jail on host {tenant.host}: not forgotten")
            if forget_jail and tenant.status != TenantStatus.REGISTERED:
                if tenant.status == TenantStatus.SPAWNING:
                    repo.change(tenant_id, TenantStatus.FAILED, audit="tenant.move")
                cleared = dict.fromkeys(("backend", "jail_root", "ip_address", "spawn_step"))
                forgotten = f"its jail on lost host {tenant.host} was forgotten (move-tenant --old-host-lost)"
                repo.change(tenant_id, TenantStatus.REGISTERED, audit="tenant.move", last_error=forgotten, **cleared)
            elif tenant.status != TenantStatus.REGISTERED or tenant.jail_root:
                raise StateConflict(
                    f"tenant {tenant_id} is {tenant.status} on host {tenant.host}: destroy it there first"
                )
            if draft is not None and tenant.host != host and tenant.host != self.this_host:
                # Whatever the shared row said of its jail there (a host can write it), the old host is
                # owed a destroy of any copy left, until it confirms (settle_owed; review R15).
                draft.owe(tenant.host, tenant_id)
            repo.change(tenant_id, audit="tenant.move", host=host)
            if draft is not None:
                draft.place(tenant_id, host)
            leave_old_host(session, tenant_id, host)  # its agents there are done: the new host serves its id

    def remote(self, host: str) -> "RemoteHost":
        return RemoteHost(host, self.link(host), self._store, self.this_host)

    def link(self, host: str) -> HostLink:
        """The host's link.  NotFound (not enrolled), RemoteError (no SSH reach enrolled, or
        this host cannot drive others)."""
        with self._lock:
            made = self._made.get(host)
            if made is not None:
                return made
            reach = self._reach(host)
            if self._links is None:
                raise RemoteError(f"tenant's host {host} is another host, and this colibri has no SSH link to it")
            made = self._links(reach)
            # Before anything goes over it (a tenant's .env, say), the colibri there must call itself
            # by the name the host was enrolled under: hosts enrolled crosswise get nothing (review R16).
            calls_itself = made.call("version", {}).get("host")
            if calls_itself != host:
                raise HostIncompatible(
                    f"host {host}: the colibri there calls itself {safe(str(calls_itself)[:64])!r}; nothing was sent"
                )
            self._made[host] = made
            return made

    def _reach(self, host: str) -> HostReach:
        if self.record is not None:
            return self._pinned_reach(host)
        from colibri.store.hosts import HostRepo

        with self._store.session() as session:
            row = HostRepo(session).get(host)
            if row is None:
                raise NotFound(
                    f"host not found: {host} (not enrolled here; enrol it first: "
                    f"colibri hosts add {host} --ssh USER@ADDRESS --host-key KEY)"
                )
            if not row.address or not row.ssh_user or not row.host_keys:
                raise RemoteError(
                    f"host {host} has no SSH address, user or pinned host key enrolled: "
                    f"colibri hosts remove {host}, then colibri hosts add {host} --ssh USER@ADDRESS --host-key KEY"
                )
            keys = tuple(line for line in row.host_keys.splitlines() if line.strip())
            return HostReach(row.name, row.ssh_user, row.address, row.port or 22, keys, row.command)

    def _pinned_reach(self, host: str) -> HostReach:
        """The host's reach from the orchestrator's record; the shared row must agree with it
        (a host rewriting another's address or key gets nothing: HostKeyRefused)."""
        from colibri.services.hosts.reach import pin_divergence
        from colibri.store.hosts import HostRepo

        assert self.record is not None
        pin = self.record.pin(host)
        if pin is None:
            raise NotFound(
                f"host not found: {host} (not enrolled on this orchestrator; enrol it first: "
                f"colibri hosts add {host} --ssh USER@ADDRESS --host-key KEY)"
            )
        with self._store.session() as session:
            diverged = pin_divergence(host, pin, HostRepo(session).get(host))
        if diverged is not None:
            raise HostKeyRefused(f"{diverged}; nothing was sent (colibri reconcile --apply restores the pin)")
        if not pin.address or not pin.user or not pin.host_keys:
            raise RemoteError(
                f"host {host} has no SSH address, user or pinned host key enrolled: "
                f"colibri hosts remove {host}, then colibri hosts add {host} --ssh USER@ADDRESS --host-key KEY"
            )
        return HostReach(host, pin.user, pin.address, pin.port, pin.host_keys, pin.command)
