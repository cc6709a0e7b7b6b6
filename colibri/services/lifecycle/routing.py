"""The lifecycle commands, each routed to the tenant's host.

Every lifecycle command goes to the tenant's host (``tenants.host``, placement.py): this host's
tenants to the local services as before, another host's to that host's lifecycle ops over its
link (SSH, colibri/adapters/ssh.py; one kept connection per host; remote_host.py).
``Lifecycle`` is what the CLI calls:

    spawn-agent, start-agent, stop-agent, destroy-agent, release-agent   → the tenant's host
    reconcile [--apply]                                                  → this host + each enrolled host
    provision (one, --all)                                               → rendered here, written there

A remote tenant's secrets are rendered here and only the rendered text is sent
(remote_host.py); a reconcile over many hosts is merged into ``reconcile_hosts.HostDrift``s.
"""

import contextlib
import functools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from colibri.error_envelope import error_from_api
from colibri.errors import ColibriError, RemoteError
from colibri.services.lifecycle.placement import Placement
from colibri.services.lifecycle.reconcile import Drift
from colibri.services.lifecycle.reconcile_hosts import UNREACHABLE, HostDrift
from colibri.services.lifecycle.remote_host import RemoteHost

if TYPE_CHECKING:
    from colibri.services.lifecycle.operations import AgentService, ReleasedView
    from colibri.services.lifecycle.pipeline import SpawnService, StepCallback
    from colibri.services.lifecycle.reconcile import Reconciler
    from colibri.services.secrets import SecretsService
    from colibri.services.secrets_render import Rendered
    from colibri.store.models import TenantView

T = TypeVar("T")


class Lifecycle:
    """The lifecycle commands, each sent to the tenant's host."""

    def __init__(
        self,
        placement: Placement,
        *,
        agents: "Callable[[], AgentService]",
        spawner: "Callable[[], SpawnService]",
        reconciler: "Callable[[], Reconciler]",
        secrets: "Callable[[], SecretsService]",
    ) -> None:
        self._placement = placement
        self._agents = agents
        self._spawner = spawner
        self._reconciler = reconciler
        self._secrets = secrets
        self._down: dict[str, ColibriError] = {}  # a host whose link failed in this command
        self._lock = threading.Lock()
        self._local: SpawnService | None = None

    def _local_spawner(self) -> "SpawnService":
        """This host's spawn pipeline, one for the command (spawn_many's threads share it)."""
        with self._lock:
            if self._local is None:
                self._local = self._spawner()
            return self._local

    @property
    def placement(self) -> Placement:
        return self._placement

    # ---- one tenant ----------------------------------------------------------------------------
    def start(self, tenant_id: str) -> "TenantView":
        host = self._placement.host_of(tenant_id)
        if self._placement.is_local(host):
            return self._agents().start(tenant_id)
        return self._on(host, lambda remote: remote.start(tenant_id))

    def stop(self, tenant_id: str) -> "TenantView":
        host = self._placement.host_of(tenant_id)
        if self._placement.is_local(host):
            return self._agents().stop(tenant_id)
        return self._on(host, lambda remote: remote.stop(tenant_id))

    def destroy(self, tenant_id: str) -> "TenantView":
        host = self._placement.host_of(tenant_id)
        if self._placement.is_local(host):
            return self._agents().destroy(tenant_id)
        return self._on(host, lambda remote: remote.destroy(tenant_id))

    def release(self, tenant_id: str) -> "ReleasedView":
        host = self._placement.host_of(tenant_id)
        if self._placement.is_local(host):
            return self._agents().release(tenant_id)
        return self._on(host, lambda remote: remote.release(tenant_id))

    def spawn(
        self,
        tenant_id: str,
        *,
        template: str | None = None,
        capabilities: list[str] | None = None,
        adopt: tuple[str, Path] | None = None,
        on_step: "StepCallback | None" = None,
        skills: list[str] | None = None,
    ) -> "TenantView":
        """Spawn (or resume) on the tenant's host.  A remote tenant's secrets are rendered here
        first: when that fails nothing is sent and no jail work starts (the tenant is marked
        stale, exit 12); the host then runs the pipeline as a local spawn does, resumable by
        ``spawn_step``.  ``skills`` (issue 13): only names and versions travel; a remote host
        resolves them with its own repository and pinned root."""
        host = self._placement.host_of(tenant_id)
        if self._placement.is_local(host):
            return self._local_spawner().spawn(
                tenant_id, template=template, capabilities=capabilities, adopt=adopt, on_step=on_step, skills=skills
            )
        remote = self._remote(host)
        rendered = self._secrets().render(tenant_id)
        return self._on(
            host,
            lambda r: r.spawn(
                tenant_id,
                rendered,
                template=template,
                capabilities=capabilities,
                adopt=adopt,
                on_step=on_step,
                skills=skills,
            ),
            remote,
        )

    def spawn_local(
        self,
        tenant_id: str,
        home: Path,
        *,
        capabilities: list[str] | None = None,
        on_step: "StepCallback | None" = None,
    ) -> "TenantView":
        """spawn-local: the agent as a process of this host, so only for a tenant of this host."""
        from colibri.errors import StateConflict

        host = self._placement.host_of(tenant_id)
        if not self._placement.is_local(host):
            raise StateConflict(
                f"tenant {tenant_id} lives on host {host}; spawn-local runs an agent on this host "
                f"({self._placement.this_host}) only: colibri move-tenant {tenant_id} --to {self._placement.this_host}"
            )
        return self._local_spawner().spawn_local(tenant_id, home, capabilities=capabilities, on_step=on_step)

    def spawn_many(
        self,
        tenant_ids: Sequence[str],
        parallelism: int,
        on_step: "StepCallback | None" = None,
        *,
        template: str | None = None,
        capabilities: list[str] | None = None,
        skills: list[str] | None = None,
    ) -> dict[str, ColibriError | None]:
        """Spawn several tenants, wherever each lives, at most ``parallelism`` at once per host
        (the hosts side by side).  The remote tenants' secrets are rendered with one vault
        session; each remote host's share goes in one batch (RemoteHost.spawn_many: one request,
        one process there).  Returns each one's error or None."""
        results: dict[str, ColibriError | None] = {}
        hosts: dict[str, str] = {}
        for tenant_id in dict.fromkeys(tenant_ids):
            try:
                hosts[tenant_id] = self._placement.host_of(tenant_id)
            except ColibriError as exc:
                results[tenant_id] = exc
        remote_ids = [t for t, h in hosts.items() if not self._placement.is_local(h)]
        rendered: dict[str, Rendered | ColibriError] = {}
        if remote_ids:
            try:
                rendered = self._secrets().render_many(remote_ids)
            except ColibriError as exc:
                rendered = dict.fromkeys(remote_ids, exc)
        shares: dict[str, list[tuple[str, Rendered]]] = {}
        for tenant_id in remote_ids:
            secret = rendered[tenant_id]
            if isinstance(secret, ColibriError):
                results[tenant_id] = secret
            else:
                shares.setdefault(hosts[tenant_id], []).append((tenant_id, secret))

        def one(tenant_id: str) -> None:
            try:
                self._local_spawner().spawn(
                    tenant_id, template=template, capabilities=capabilities, on_step=on_step, skills=skills
                )
                results[tenant_id] = None
            except ColibriError as exc:
                results[tenant_id] = exc

        def share(host: str) -> None:
            batch = shares[host]
            try:
                results.update(
                    self._on(
                        host,
                        lambda r: r.spawn_many(
                            batch,
                            parallelism,
                            template=template,
                            capabilities=capabilities,
                            on_step=on_step,
                            skills=skills,
                        ),
                    )
                )
            except ColibriError as exc:
                results.update(dict.fromkeys((t for t, _ in batch), exc))

        local_ids = [t for t, h in hosts.items() if self._placement.is_local(h)]
        with ThreadPoolExecutor(max_workers=max(1, parallelism) + len(shares)) as pool:
            futures = [pool.submit(share, host) for host in shares]
            futures += [pool.submit(one, t) for t in local_ids]
            for future in futures:
                future.result()
        return {t: results[t] for t in dict.fromkeys(tenant_ids)}

    def move(
        self, tenant_id: str, to: str, on_step: "StepCallback | None" = None, *, old_host_lost: bool = False
    ) -> tuple[str, "TenantView"]:
        """Move a tenant to host ``to``: its jail destroyed on the old host (the jail, its .env
        and mounts with it; an adopted jail is refused), ``tenants.host`` changed, then spawned
        on the new host with its secrets provisioned from the vault again (never copied from the
        old host).  Safe to run again after any failure: it goes on from where it stopped.
        ``old_host_lost``: the old host will never answer: its jail is forgotten, not destroyed
        (a reconcile there lists it as an orphan if it ever comes back).  Returns the old host
        and the tenant."""
        from colibri.domain import HAS_JAIL, TenantStatus, validate_host_name

        validate_host_name(to)
        old, status = self._placement.where(tenant_id)
        if not self._placement.is_local(to):
            self._remote(to)  # enrolled, with its SSH reach: checked before anything changes
        if old != to:
            if TenantStatus(status) in HAS_JAIL and not old_host_lost:
                self.destroy(tenant_id)
            self._placement.rehome(tenant_id, to, forget_jail=old_host_lost)
            if not old_host_lost and not self._placement.is_local(old):
                with contextlib.suppress(ColibriError):  # still owed, and reported, if it fails now
                    self.settle_owed(old)
        return old, self.spawn(tenant_id, on_step=on_step)

    # ---- every host ----------------------------------------------------------------------------
    def reconcile(self, apply: bool = False) -> list[HostDrift]:
        """Where the shared rows disagree with the orchestrator's record (``--apply`` restores the
        record's values), then this host's reconcile, then each enrolled host's (the stale copies
        owed a destroy there first), merged, each item naming its host; a host that cannot be
        asked is one failed item (``unreachable_host``)."""
        from colibri.services.lifecycle.reconcile_hosts import authority_drifts

        here = self._placement.this_host
        found = authority_drifts(self._placement, apply)
        found += [HostDrift(here, d) for d in self._reconciler().reconcile(apply=apply)]
        for host in self._placement.remote_hosts():
            try:
                stale = self.settle_owed(host) if apply else self._owed_drifts(host)
                drifts = self._on(host, lambda remote: remote.reconcile(apply))
            except ColibriError as exc:
                drift = Drift(UNREACHABLE, "", None, "none: reach the host", False, str(exc))
                found += [HostDrift(host, d) for d in self._owed_drifts(host)]
                found.append(HostDrift(host, drift, exc))
                self._down.setdefault(host, exc)
                continue
            found += [HostDrift(host, d) for d in stale + drifts]
        return found

    def settle_owed(self, host: str) -> list[Drift]:
        """Destroy, on ``host``, the stale copies it is owed (a tenant moved away from it: with
        ``--old-host-lost`` its jail and .env were left there, review R15; after any move, until
        the host confirms nothing is left); each one done is struck from the record.  A link
        failure is raised (the host is down)."""
        record = self._placement.record
        if record is None:
            return []
        done: list[Drift] = []
        for drift in self._owed_drifts(host):
            assert drift.tenant is not None
            try:
                self._on(host, functools.partial(RemoteHost.destroy_stale, tenant_id=drift.jail))
            except RemoteError:
                raise
            except ColibriError as exc:
                done.append(Drift(drift.kind, drift.jail, drift.tenant, drift.action, False, str(exc)))
                continue
            with record.change() as draft:
                draft.settle(host, drift.tenant)
            done.append(Drift(drift.kind, drift.jail, drift.tenant, drift.action, True))
        return done

    def _owed_drifts(self, host: str) -> list[Drift]:
        from colibri.services.lifecycle.reconcile_hosts import STALE_COPY

        record = self._placement.record
        owed = record.read().owed.get(host, []) if record is not None else []
        action = "destroy the jail and .env it left there (the tenant was moved away)"
        return [Drift(STALE_COPY, tenant, tenant, action) for tenant in owed]

    def host_failures(self) -> dict[str, ColibriError]:
        """The hosts whose link failed in this command, with the error."""
        return dict(self._down)

    def send_env(self, host: str, tenant_id: str, content: bytes, collection_id: str | None) -> tuple[str, bool]:
        """SecretsService's ``send_env``: a rendered .env written by the tenant's host, only
        where the orchestrator's record places the tenant (review R1)."""
        self._placement.check_placed(tenant_id, host)
        return self._on(host, lambda remote: remote.write_env(tenant_id, content, collection_id))

    # ---- helpers -------------------------------------------------------------------------------
    def _remote(self, host: str) -> RemoteHost:
        down = self._down.get(host)
        if down is not None:  # a fresh error of the same type and code, naming the first failure
            raise error_from_api(type(down).__name__, down.exit_code, f"not tried: host {host} failed before: {down}")
        return self._placement.remote(host)

    def _on(self, host: str, action: "Callable[[RemoteHost], T]", remote: RemoteHost | None = None) -> T:
        """``action`` on the host's link; a link failure (RemoteError: unreachable, auth, the
        channel lost) marks the host down for the rest of this command, so a batch does not
        wait for it once per tenant."""
        try:
            return action(remote or self._remote(host))
        except RemoteError as exc:
            with self._lock:
                self._down.setdefault(host, exc)
            raise
