"""Tenants: register, list, show, remove.  tenant id == jail name == collection name."""

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from colibri.domain import (
    DEFAULT_TIER,
    FIRST_PARTY_SOURCES,
    HAS_JAIL,
    TenantStatus,
    Tier,
    prefix_clash,
    validate_collection_name,
    validate_host_name,
    validate_tenant_id,
)
from colibri.errors import (
    ColibriError,
    Interrupted,
    InvalidInput,
    NotFound,
    PartialFailure,
    StateConflict,
    TenantExists,
    TenantNotFound,
)
from colibri.store import listing
from colibri.store.db import Store
from colibri.store.listing import TenantView

if TYPE_CHECKING:
    from colibri.store.models import Tenant
    from colibri.store.orchestrator import Draft, OrchestratorRecord

# The table classes, the repositories and the lock helper are imported where a method needs them:
# ``list-tenants`` needs none of them, and importing them cost it about 20 ms (PERFORMANCE.md).


@dataclass(frozen=True)
class Registration:
    tenant: TenantView
    created: bool


class TenantService:
    def __init__(
        self,
        store: Store,
        default_host: str,
        destroy_jail: Callable[[str], Any] | None = None,
        locks_dir: Path | None = None,
        record: "OrchestratorRecord | None" = None,
    ) -> None:
        self._store = store
        self._default_host = default_host
        self._destroy_jail = destroy_jail
        self._locks = locks_dir
        self._record = record  # the orchestrator's placement and pins (store/orchestrator.py)

    def _changing(self, needed: bool) -> "contextlib.AbstractContextManager[Draft | None]":
        """The orchestrator's record under its lock when this change concerns it (a tenant of
        another host, or a record that exists); a single host never writes one."""
        if self._record is None or not (needed or self._record.exists()):
            return contextlib.nullcontext(None)
        return self._record.change()

    def register(
        self, tenant_id: str, collection: str | None, host: str | None, tier: Tier | None = None
    ) -> Registration:
        """Record a tenant.  Same fields again: no-op.  Other fields: TenantExists.

        ``collection`` defaults to the tenant id (1:1:1); pass ``""`` for a tenant with no
        collection (provisioning is then a no-op).  ``host`` is this host (None) or an enrolled
        one.  ``tier`` (issue 13) is ``paid`` for a new tenant unless asked; for a registered one
        None is not compared, another tier is a conflict (``set-tier`` changes it, explicitly).
        Raises InvalidTenantId, TenantExists, NotFound (a host not enrolled).
        """
        validate_tenant_id(tenant_id)
        wanted_collection = tenant_id if collection is None else (collection or None)
        if wanted_collection is not None:
            validate_collection_name(wanted_collection)
        wanted_host = validate_host_name(host) if host else self._default_host
        from colibri.store.models import Tenant, tenant_public
        from colibri.store.repos import TenantRepo

        elsewhere = wanted_host != self._default_host
        with self._changing(elsewhere) as draft, self._store.session() as session:
            repo = TenantRepo(session)
            # the host's row held first: a concurrent hosts remove waits for this registration (R9)
            enrolled = self._hold_host(session, wanted_host, draft) if elsewhere else True
            existing = repo.get_for_update(tenant_id)
            if existing is not None and existing.status != TenantStatus.REMOVED:
                same = self._same_or_conflict(existing, wanted_collection, wanted_host, tier)
                placed = None if draft is None else draft.placed(tenant_id)
                if draft is not None and placed is not None and placed != wanted_host:
                    raise TenantExists(
                        f"tenant {tenant_id} is already registered on host {placed} "
                        f"in this host's record (asked {wanted_host!r}); colibri reconcile shows the difference"
                    )
                if draft is not None and placed is None and enrolled:
                    # the operator says where a tenant this orchestrator never placed lives (one
                    # registered before the record, or by that host's own colibri), and the shared
                    # row agrees: recorded from now on
                    draft.place(tenant_id, wanted_host)
                return Registration(same, False)
            if not enrolled:
                enrol = f"colibri hosts add {wanted_host} --ssh USER@ADDRESS ..."
                raise NotFound(f"host not found: {wanted_host} (enrol it first: {enrol})")
            if draft is not None:
                draft.place(tenant_id, wanted_host)
            clash = prefix_clash(tenant_id, [t for t in repo.ids() if t != tenant_id])
            if clash is not None:
                raise TenantExists(
                    f"tenant id {tenant_id} clashes with tenant {clash}: bastille would match one "
                    "as a prefix of the other; choose another id"
                )
            if existing is not None:  # a removed tenant comes back
                refuse_live_children(session, tenant_id)  # its old lineage is not the new customer's
                back = repo.change(
                    tenant_id,
                    TenantStatus.REGISTERED,
                    audit="tenant.register",
                    collection_name=wanted_collection,
                    collection_id=None,
                    host=wanted_host,
                    last_error=None,
                    tier=tier or DEFAULT_TIER,
                    parent=None,  # a tenant that comes back is nobody's child (review13 F4)
                )
                from colibri.store.policy import PolicyRepo

                PolicyRepo(session).forget(tenant_id)  # and starts with self-spawn off (F5)
                from colibri.store.children import ChildRepo

                ChildRepo(session).detach(tenant_id)  # and with none of its old children (review15)
                return Registration(tenant_public(back), True)
            tenant = Tenant(
                tenant_id=tenant_id,
                jail_name=tenant_id,
                collection_name=wanted_collection,
                host=wanted_host,
                status=TenantStatus.REGISTERED,
                tier=tier or DEFAULT_TIER,
            )
            repo.add(tenant)
            return Registration(tenant_public(tenant), True)

    @staticmethod
    def _hold_host(session: Any, host: str, draft: "Draft | None") -> bool:
        """Is the host enrolled (``colibri hosts add``: its row, and its pin in the orchestrator's
        record)?  Its row is held until the registration commits."""
        from colibri.store.hosts import HostRepo

        return HostRepo(session).hold(host) and (draft is None or host in draft.hosts)

    @staticmethod
    def _same_or_conflict(existing: "Tenant", collection: str | None, host: str, tier: Tier | None) -> TenantView:
        from colibri.store.models import tenant_public

        differences = []
        if tier is not None and existing.tier != tier:
            change = f"colibri set-tier {existing.tenant_id} {tier}"
            differences.append(f"tier {existing.tier!r} (asked {str(tier)!r}; change it with: {change})")
        if existing.collection_name != collection:
            differences.append(f"collection {existing.collection_name!r} (asked {collection!r})")
        if existing.host != host:
            differences.append(f"host {existing.host!r} (asked {host!r})")
        if differences:
            raise TenantExists(f"tenant {existing.tenant_id} is already registered with " + ", ".join(differences))
        return tenant_public(existing)

    def set_tier(self, tenant_id: str, tier: Tier) -> tuple[TenantView, bool]:
        """Change a tenant's tier (issue 13): the one explicit way, with its audit entry
        (``tenant.tier``: before and after).  Returns the tenant and whether it changed.  Back to
        ``paid`` is refused (StateConflict) while a skill that is not first-party is installed in
        its jail: a paid tenant runs nothing else (spawn it again without them first)."""
        from colibri.store.models import tenant_public
        from colibri.store.repos import TenantRepo
        from colibri.store.skills import SkillRepo

        with self._store.session() as session:
            repo = TenantRepo(session)
            tenant = repo.get_for_update(tenant_id)
            if tenant is None or tenant.status == TenantStatus.REMOVED:
                raise TenantNotFound(tenant_id)
            if tenant.tier == tier:
                return tenant_public(tenant), False
            if tier == Tier.PAID:
                installed = SkillRepo(session).installed(tenant_id)
                others = [s.name for s in installed if s.source not in FIRST_PARTY_SOURCES]
                if others:
                    raise StateConflict(
                        f"tenant {tenant_id} has skills installed that are not first-party ({', '.join(others)}); "
                        f"a paid tenant runs none: spawn it again without them (colibri spawn-agent {tenant_id} "
                        "--skill ...) or destroy its agent first"
                    )
            changed = repo.change(tenant_id, audit="tenant.tier", tier=str(tier))  # its entry: the tier set
            return tenant_public(changed), True

    def all(self, status: TenantStatus | None = None) -> list[TenantView]:
        """All tenants (removed ones only when asked for by status), ordered by id."""
        with self._store.connect() as conn:
            return listing.tenant_views(conn, status)

    def show(self, tenant_id: str) -> TenantView:
        """One tenant.  Raises TenantNotFound."""
        from colibri.store.models import tenant_public
        from colibri.store.repos import TenantRepo

        with self._store.session() as session:
            tenant = TenantRepo(session).get(tenant_id)
            if tenant is None:
                raise TenantNotFound(tenant_id)
            return tenant_public(tenant)

    def remove(self, tenant_id: str, destroy_jail: bool = False) -> TenantView:
        """Mark a tenant removed.  While it may still have a jail: StateConflict, or with
        ``destroy_jail`` its jail is destroyed first (never an adopted one: that refusal stands)."""
        from colibri.services.lifecycle.layout import agent_lock
        from colibri.store.models import tenant_public
        from colibri.store.repos import TenantRepo

        if destroy_jail and self._destroy_jail is not None:
            with self._store.session() as session:
                tenant = TenantRepo(session).get(tenant_id)
                if tenant is not None and tenant.status != TenantStatus.REMOVED:
                    refuse_live_children(session, tenant_id)  # before its jail goes (checked again below)
            if tenant is not None and TenantStatus(tenant.status) in HAS_JAIL:
                self._destroy_jail(tenant_id)
        lock = agent_lock(self._locks, tenant_id) if self._locks else contextlib.nullcontext()
        # not while a spawn of it is in flight
        with lock, self._changing(False) as draft, self._store.session() as session:
            tenant = TenantRepo(session).get_for_update(tenant_id)
            if tenant is None or tenant.status == TenantStatus.REMOVED:
                raise TenantNotFound(tenant_id)
            status = TenantStatus(tenant.status)
            if status in HAS_JAIL:
                raise StateConflict(
                    f"tenant {tenant_id} is {status} and may still have a jail; "
                    f"destroy it first: colibri remove-tenant {tenant_id} --destroy-jail"
                )
            refuse_live_children(session, tenant_id)  # under the row lock a child's registration takes
            if draft is not None:
                draft.forget(tenant_id)
            return tenant_public(TenantRepo(session).change(tenant_id, TenantStatus.REMOVED, audit="tenant.remove"))


def refuse_live_children(session: Any, tenant_id: str) -> None:
    """StateConflict (exit 5) while ``tenant_id`` has children that are not removed (the one
    refusal remove-tenant, register-tenant and the cascade share)."""
    from colibri.store.children import ChildRepo

    live = ChildRepo(session).children_of(tenant_id)
    if live:
        names = ", ".join(t.tenant_id for t in live[:10]) + (" ..." if len(live) > 10 else "")
        raise StateConflict(
            f"tenant {tenant_id} has {len(live)} child{'ren' if len(live) > 1 else ''} ({names}); "
            f"remove them first, or all at once: colibri remove-tenant {tenant_id} --cascade --destroy-jail"
        )


# --- batches: several tenants in one command ---------------------------------------------------

MAX_BATCH = 10_000
"""At most this many tenants in one command (a file of more is refused before anything is done)."""
MAX_LIST_BYTES = 1 << 20
MAX_LIST_LINE = 256


def parse_tenant_list(data: bytes, source: str) -> list[str]:
    """The tenant ids of a ``--from-file`` list: one per line; blank lines and ``#`` comments are
    skipped, surrounding blanks stripped.  Each id is checked when its tenant's turn comes (a bad
    one fails alone); a list that is not a list of ids (over the size, a line over 256 characters,
    not UTF-8, a NUL byte, more than MAX_BATCH ids) is refused whole: InvalidInput."""
    if len(data) > MAX_LIST_BYTES:
        raise InvalidInput(f"{source}: more than {MAX_LIST_BYTES} bytes; that is not a list of tenant ids")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{source} is not UTF-8 text") from None
    if "\0" in text:
        raise InvalidInput(f"{source} holds a NUL byte; that is not a list of tenant ids")
    ids = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if len(line) > MAX_LIST_LINE:
            raise InvalidInput(f"{source} line {number} is longer than {MAX_LIST_LINE} characters: not a tenant id")
        if line and not line.startswith("#"):
            ids.append(line)
    if len(ids) > MAX_BATCH:
        raise InvalidInput(f"{source}: {len(ids)} tenants; at most {MAX_BATCH} in one command")
    return ids


class BatchItemView(TypedDict):
    """One tenant's outcome as a batch's ``--json`` shows it (``error`` only for a failed one)."""

    tenant_id: str
    outcome: str
    message: str
    error: NotRequired[dict[str, str | int]]


@dataclass(frozen=True)
class BatchItem:
    """One tenant's outcome in a batch: what was done, or the error (type, code, message)."""

    tenant_id: str
    outcome: str  # the action's word (registered, unchanged, destroyed, removed), failed, or after a
    # Ctrl-C: interrupted (the tenant in hand) and not run (those after it)
    message: str = ""
    error: ColibriError | None = None

    def public(self) -> "BatchItemView":
        shown = BatchItemView(tenant_id=self.tenant_id, outcome=self.outcome, message=self.message)
        if self.error is not None:
            shown["error"] = {"type": type(self.error).__name__, "code": self.error.exit_code}
        return shown


def run_batch(
    tenant_ids: Sequence[str],
    action: Callable[[str], tuple[str, str]],
    on_item: Callable[[int, int, BatchItem], None] | None = None,
) -> list[BatchItem]:
    """``action(tenant)`` → (outcome, message) for each tenant in turn, each on its own: one that
    fails (a ColibriError, or a bug: only its type is kept) does not stop the others, and what the
    action does for one tenant is all or nothing (each is one transaction, or its own rollback).
    Duplicates run once.  ``on_item(done, total, item)`` reports progress.

    A Ctrl-C (KeyboardInterrupt) stops the batch, not the report: the tenant in hand is
    "interrupted" (with an Interrupted error: what its action did is for the operator to check),
    those after it "not run"; ``batch_failure`` then ends the command with exit 130."""
    unique = list(dict.fromkeys(tenant_ids))
    items: list[BatchItem] = []
    in_hand: str | None = None
    try:
        for number, tenant_id in enumerate(unique, start=1):
            in_hand = tenant_id
            item = _run_one(tenant_id, action)
            items.append(item)
            in_hand = None
            if on_item is not None:
                on_item(number, len(unique), item)
    except KeyboardInterrupt:
        if in_hand is not None:
            stopped = Interrupted(f"interrupted (Ctrl-C) at tenant {in_hand}")
            items.append(BatchItem(in_hand, INTERRUPTED, "Ctrl-C while it was in hand: check it", stopped))
            if on_item is not None:
                on_item(len(items), len(unique), items[-1])
        items += [BatchItem(tenant_id, NOT_RUN) for tenant_id in unique[len(items) :]]
    return items


INTERRUPTED, NOT_RUN = "interrupted", "not run"


def _run_one(tenant_id: str, action: Callable[[str], tuple[str, str]]) -> BatchItem:
    try:
        outcome, message = action(tenant_id)
        return BatchItem(tenant_id, outcome, message)
    except ColibriError as exc:
        return BatchItem(tenant_id, "failed", str(exc), exc)
    except Exception as exc:  # a bug met by one tenant must not stop the others
        error = ColibriError(f"internal error ({type(exc).__name__}) with tenant {tenant_id}")
        return BatchItem(tenant_id, "failed", error.message, error)


def batch_failure(items: Sequence[BatchItem], what: str) -> PartialFailure | Interrupted | None:
    """None when every tenant succeeded; else the error to end the command with: the failed
    tenants named (the first 20), the exit code the worst (highest) of theirs; after a Ctrl-C,
    Interrupted (130) with how many were done, failed and not run."""
    stopped = [i.tenant_id for i in items if i.outcome in (INTERRUPTED, NOT_RUN)]  # in hand first, if one was
    if stopped:
        failed_n = sum(i.outcome == "failed" for i in items)
        not_run = sum(i.outcome == NOT_RUN for i in items)
        done = len(items) - failed_n - not_run - sum(i.outcome == INTERRUPTED for i in items)
        counts = f"{done} done" + (f", {failed_n} failed" if failed_n else "") + f", {not_run} not run"
        return Interrupted(f"{what} interrupted (Ctrl-C) at tenant {stopped[0]}: {counts}")
    failed = [i for i in items if i.error is not None]
    if not failed:
        return None
    names = ", ".join(i.tenant_id for i in failed[:20]) + (f" and {len(failed) - 20} more" if len(failed) > 20 else "")
    worst = max(i.error.exit_code for i in failed if i.error is not None)
    return PartialFailure(f"{len(failed)} of {len(items)} {what} failed: {names}", worst)


def batch_summary(items: Sequence[BatchItem]) -> str:
    """``2 registered, 1 unchanged, 1 failed (of 4 tenants)``: outcomes in the order first met,
    failed last (then, after a Ctrl-C, interrupted and not run)."""
    last = {"failed": 1, INTERRUPTED: 2, NOT_RUN: 3}
    counts: dict[str, int] = {}
    for item in sorted(items, key=lambda i: last.get(i.outcome, 0)):
        counts[item.outcome] = counts.get(item.outcome, 0) + 1
    parts = ", ".join(f"{n} {outcome}" for outcome, n in counts.items()) or "nothing to do"
    return f"{parts} (of {len(items)} tenants)"
