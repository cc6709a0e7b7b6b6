"""Reconcile: the store compared with the jail backend, and the repairs that are safe to make."""

from dataclasses import dataclass
from typing import TypedDict

from colibri.adapters.jail import JailInfo, JailState
from colibri.domain import TenantStatus
from colibri.errors import ColibriError, RepairFailed
from colibri.services.lifecycle.layout import agent_lock
from colibri.services.lifecycle.operations import AgentService
from colibri.store.db import Store
from colibri.store.models import Tenant
from colibri.store.repos import TenantRepo

SHOULD_RUN = frozenset({TenantStatus.ACTIVE})
REPAIRABLE = frozenset({"stopped_jail", "running_jail", "missing_jail", "unmounted_socket"})


class DriftView(TypedDict):
    """A drift as ``reconcile --json`` shows it."""

    kind: str
    jail: str
    tenant: str | None
    action: str
    applied: bool
    error: str | None


@dataclass(frozen=True)
class Drift:
    """One difference between the store and the backend, and what reconcile does about it."""

    kind: str  # orphan_jail | foreign_jail | missing_jail | stopped_jail | running_jail | unmounted_socket
    jail: str
    tenant: str | None
    action: str
    applied: bool = False
    error: str | None = None

    def public(self) -> DriftView:
        return DriftView(
            kind=self.kind,
            jail=self.jail,
            tenant=self.tenant,
            action=self.action,
            applied=self.applied,
            error=self.error,
        )


class Reconciler:
    def __init__(self, store: Store, agents: AgentService, host: str | None = None) -> None:
        self._store = store
        self._agents = agents
        self._backend = agents.backend
        self._host = host  # this host's name: another host's tenants are not ours (None: every tenant)

    def reconcile(self, apply: bool = False) -> list[Drift]:
        """Compare the store with the backend.  Dry-run by default; ``apply`` repairs what is safe:
        starts jails that should run, stops jails of stopped tenants, marks tenants whose jail is
        gone as failed.  Orphan and foreign jails are only reported: destroying is an operator's call.
        With a ``host``, only that host's tenants are compared: a jail here whose tenant lives on
        another host (left behind by a move) is an orphan."""
        with self._store.session() as session:
            rows = TenantRepo(session).find(include_removed=True)
            tenants = {t.jail_name: t for t in rows if self._host is None or t.host == self._host}
            for tenant in rows:
                session.expunge(tenant)
        jails = {j.name: j for j in self._backend.list_jails()}
        drifts = [self._drift_of_jail(j, tenants.get(n)) for n, j in jails.items()]
        for name, tenant in tenants.items():
            if name not in jails and tenant.backend == self._backend.name and tenant.status in SHOULD_RUN:
                drifts.append(Drift("missing_jail", name, tenant.tenant_id, "mark the tenant failed"))
        found = [d for d in drifts if d is not None]
        return [self._apply(d) for d in found] if apply else found

    def _drift_of_jail(self, jail: JailInfo, tenant: Tenant | None) -> Drift | None:
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
        if status in SHOULD_RUN and not self._backend.is_mounted(jail.name, self._agents.socket_mount(jail.name)):
            # configured but not live (mounted by hand away, or a start that did not apply it)
            return Drift("unmounted_socket", jail.name, tenant.tenant_id, "restart the jail and its agent")
        return None

    def _apply(self, drift: Drift) -> Drift:
        if drift.tenant is None or drift.kind not in REPAIRABLE:
            return drift
        try:
            # The tenant's lock: never repair under a spawn, start, stop or destroy in flight.
            with agent_lock(self._agents.locks_dir, drift.tenant):
                if drift.kind in ("stopped_jail", "unmounted_socket"):
                    if drift.kind == "unmounted_socket":
                        self._backend.stop(drift.jail)
                    self._agents.start_agent(drift.jail)
                elif drift.kind == "running_jail":
                    self._backend.stop(drift.jail)
                else:
                    self._agents.set_status(
                        drift.tenant,
                        TenantStatus.FAILED,
                        error="reconcile: the jail is missing",
                        audit="reconcile.repair",
                    )
        except ColibriError as exc:
            self._audit(drift, str(exc))
            return Drift(drift.kind, drift.jail, drift.tenant, drift.action, False, str(exc))
        if drift.kind != "missing_jail":  # that one's entry is its state change's (set_status)
            self._audit(drift, None)
        return Drift(drift.kind, drift.jail, drift.tenant, drift.action, True)

    def _audit(self, drift: Drift, error: str | None) -> None:
        """The audit entry of a repair made on the backend alone (or tried and failed)."""
        from colibri.store.audit_hooks import record

        with self._store.session() as session:
            outcome = "ok" if error is None else "failed"
            record(session, "reconcile.repair", f"tenant:{drift.tenant}", tenant=drift.tenant, outcome=outcome,
                   kind=drift.kind, jail=drift.jail, error=error)  # fmt: skip


def describe_drifts(drifts: list[Drift]) -> list[DriftView]:
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
