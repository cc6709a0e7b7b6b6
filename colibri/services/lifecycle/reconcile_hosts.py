"""A reconcile over many hosts: each drift naming its host, an unreachable host one failed item,
and how the command ends (the batch rule)."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from colibri.errors import ColibriError, RemoteError
from colibri.services.lifecycle.reconcile import Drift, DriftView
from colibri.text import safe

if TYPE_CHECKING:
    from colibri.services.lifecycle.placement import Placement


class HostDriftView(DriftView):
    """A drift as ``reconcile --json`` shows it with many hosts: the host first."""

    host: str


@dataclass(frozen=True)
class HostDrift:
    host: str
    drift: Drift
    failure: ColibriError | None = None  # an unreachable host: the link's error

    def public(self) -> HostDriftView:
        view = self.drift.public()
        return HostDriftView(host=self.host, **view)


UNREACHABLE = "unreachable_host"
"""The drift kind of a host reconcile could not ask: one failed item, its error the link's."""
PLACEMENT = "placement_diverged"
"""The shared database places a tenant elsewhere than the orchestrator's record (review R1)."""
PIN = "pin_diverged"
"""The shared ``hosts`` row of a host differs from the orchestrator's pin, or is missing (R1)."""
STALE_COPY = "stale_copy"
"""A tenant moved away with ``--old-host-lost`` left its jail and .env on that host (R15)."""


def authority_drifts(placement: "Placement", apply: bool) -> list[HostDrift]:
    """Where the shared rows disagree with the orchestrator's record; ``apply`` writes the
    record's values back into them (the record is the authority: the hosts can write the rows).
    A placement names the host the record gives; a pin its host."""
    from colibri.services.hosts.reach import pin_divergence
    from colibri.store.hosts import HostRepo
    from colibri.store.models import Host
    from colibri.store.repos import TenantRepo

    record = placement.record
    if record is None or not record.exists():  # not an orchestrator: it placed nothing, it judges nothing
        return []
    draft = record.read()
    found: list[HostDrift] = []
    with placement.store.session() as session:
        tenants = TenantRepo(session)
        for tenant in tenants.find():
            placed = draft.host_of(tenant.tenant_id)
            if placed == tenant.host:
                continue
            shown = safe(str(tenant.host)[:64])
            if draft.placed(tenant.tenant_id) is None:  # never placed from here: only reported
                action = (
                    f"report only: the shared database says host {shown}, this orchestrator never placed it, so "
                    f"nothing of it is sent there; if it lives there, colibri register-tenant {tenant.tenant_id} "
                    f"--host {shown} records that"
                )
                found.append(HostDrift(placed, Drift(PLACEMENT, tenant.jail_name, tenant.tenant_id, action)))
                continue
            action = f"the shared database says host {shown}: set it back to {placed} (this host's record)"
            if apply:
                tenants.change(tenant.tenant_id, host=placed)
            found.append(HostDrift(placed, Drift(PLACEMENT, tenant.jail_name, tenant.tenant_id, action, apply)))
        hosts = HostRepo(session)
        for name, pin in sorted(draft.hosts.items()):
            row = hosts.get(name, for_update=apply)
            why = pin_divergence(name, pin, row)
            if why is None:
                continue
            if apply:
                if row is None:
                    row = Host(name=name)
                row.ssh_user, row.address, row.port = pin.user, pin.address, pin.port
                row.host_keys, row.command = "\n".join(pin.host_keys) or None, pin.command
                session.add(row)
                session.flush()
            found.append(HostDrift(name, Drift(PIN, "", None, f"{why}: restore the shared row from the pin", apply)))
    return found


def reconcile_failure(found: Sequence[HostDrift]) -> ColibriError | None:
    """How ``reconcile`` ends: None when nothing failed; a failed repair alone is RepairFailed
    (18) as before; with an unreachable host, the batch rule: every failed item named, the
    highest of their exit codes."""
    from colibri.errors import PartialFailure
    from colibri.services.lifecycle.reconcile import repair_failure

    repairs = [f.drift for f in found if f.drift.kind != UNREACHABLE]
    hosts = [f for f in found if f.drift.kind == UNREACHABLE]
    repaired = repair_failure(repairs)
    if not hosts:
        return repaired
    codes = [f.failure.exit_code if f.failure else RemoteError.exit_code for f in hosts]
    codes += [repaired.exit_code] if repaired is not None else []
    named = "; ".join(f"host {f.host}: {f.drift.error}" for f in hosts)
    message = f"{len(hosts)} host(s) could not be reconciled: {named}" + (f"; {repaired}" if repaired else "")
    return PartialFailure(message, max(codes))


def describe(found: Sequence[HostDrift]) -> list[HostDriftView]:
    return [f.public() for f in found]
