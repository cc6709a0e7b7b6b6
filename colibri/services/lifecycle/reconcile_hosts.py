"""A reconcile over many hosts: each drift naming its host, an unreachable host one failed item,
and how the command ends (the batch rule)."""

from collections.abc import Sequence
from dataclasses import dataclass

from colibri.errors import ColibriError, RemoteError
from colibri.services.lifecycle.reconcile import Drift, DriftView


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
