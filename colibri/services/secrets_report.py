"""What provisioning reports: one tenant's ``ProvisionResult`` and its public (JSON) view, and
a ``provision --all`` stopped by Ctrl-C (the tenant in hand ``interrupted``, the rest ``not
run``, exit 130).  The provisioning itself is colibri/services/secrets.py."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from colibri.errors import ColibriError, Interrupted


@dataclass(frozen=True)
class ProvisionResult:
    tenant_id: str
    outcome: str  # written | unchanged | skipped | failed; after a Ctrl-C: interrupted | not run
    source: str | None = None
    path: str | None = None
    keys: tuple[str, ...] = ()
    message: str = ""
    error: ColibriError | None = None
    secrets_expected: bool = True  # False: the tenant has no collection and nothing staged

    def public(self) -> dict[str, Any]:
        """JSON-able, without values (key names only; a refusal's problems by key and origin)."""
        shown: dict[str, Any] = {
            "tenant_id": self.tenant_id,
            "outcome": self.outcome,
            "source": self.source,
            "path": self.path,
            "keys": list(self.keys),
            "message": self.message,
            "secrets_expected": self.secrets_expected,
        }
        if self.error is not None:
            shown["error"] = {"type": type(self.error).__name__, "code": self.error.exit_code}
            problems = getattr(self.error, "problems", None)
            if problems is not None:
                shown["problems"] = list(problems)
                shown["problems_total"] = getattr(self.error, "total", len(problems))
        return shown


def interrupted(tenant_ids: Sequence[str], done: list[ProvisionResult], in_hand: bool = True) -> list[ProvisionResult]:
    """``provision --all`` after a Ctrl-C: the results so far, the tenant in hand ``interrupted``
    (an Interrupted error: check it), the others ``not run``; ``interruption`` names it."""
    rest = list(tenant_ids[len(done) :])
    if in_hand and rest:
        tenant_id = rest.pop(0)
        stopped = Interrupted(f"interrupted (Ctrl-C) at tenant {tenant_id}")
        done = [
            *done,
            ProvisionResult(tenant_id, "interrupted", message="Ctrl-C while it was in hand: check it", error=stopped),
        ]
    return done + [
        ProvisionResult(tenant_id, "not run", message="the Ctrl-C came before its turn") for tenant_id in rest
    ]


def interruption(results: Sequence[ProvisionResult]) -> Interrupted | None:
    """The error (exit 130) ``provision --all`` ends with when a Ctrl-C stopped it, else None."""
    stopped = [r.tenant_id for r in results if r.outcome in ("interrupted", "not run")]
    if not stopped:
        return None
    failed = sum(r.outcome == "failed" for r in results)
    not_run = sum(r.outcome == "not run" for r in results)
    done = len(results) - failed - not_run - sum(r.outcome == "interrupted" for r in results)
    counts = f"{done} done" + (f", {failed} failed" if failed else "") + f", {not_run} not run"
    return Interrupted(f"provisioning interrupted (Ctrl-C) at tenant {stopped[0]}: {counts}")
