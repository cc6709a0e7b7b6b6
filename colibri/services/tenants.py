"""Tenants: register, list, show, remove.  tenant id == jail name == collection name."""

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from colibri.adapters.locks import host_lock
from colibri.domain import (
    TenantStatus,
    check_transition,
    prefix_clash,
    validate_collection_name,
    validate_host_name,
    validate_tenant_id,
)
from colibri.errors import StateConflict, TenantExists, TenantNotFound
from colibri.store.db import Store
from colibri.store.models import Tenant, tenant_public, tenant_public_row, utcnow
from colibri.store.repos import TenantRepo

# States in which the tenant may still own a jail on its host.
HAS_JAIL = frozenset({TenantStatus.SPAWNING, TenantStatus.ACTIVE, TenantStatus.STOPPED, TenantStatus.FAILED})


@dataclass(frozen=True)
class Registration:
    tenant: dict[str, Any]
    created: bool


class TenantService:
    def __init__(
        self,
        store: Store,
        default_host: str,
        destroy_jail: Callable[[str], Any] | None = None,
        locks_dir: Path | None = None,
    ) -> None:
        self._store = store
        self._default_host = default_host
        self._destroy_jail = destroy_jail
        self._locks = locks_dir

    def register(self, tenant_id: str, collection: str | None, host: str | None) -> Registration:
        """Record a tenant.  Same fields again: no-op.  Other fields: TenantExists.

        ``collection`` defaults to the tenant id (1:1:1); pass ``""`` for a tenant with no
        collection (provisioning is then a no-op).  Raises InvalidTenantId, TenantExists.
        """
        validate_tenant_id(tenant_id)
        wanted_collection = tenant_id if collection is None else (collection or None)
        if wanted_collection is not None:
            validate_collection_name(wanted_collection)
        wanted_host = validate_host_name(host) if host else self._default_host
        with self._store.session() as session:
            repo = TenantRepo(session)
            existing = repo.get_for_update(tenant_id)
            if existing is not None and existing.status != TenantStatus.REMOVED:
                return Registration(self._same_or_conflict(existing, wanted_collection, wanted_host), False)
            clash = prefix_clash(tenant_id, [t for t in repo.ids() if t != tenant_id])
            if clash is not None:
                raise TenantExists(
                    f"tenant id {tenant_id} clashes with tenant {clash}: bastille would match one "
                    "as a prefix of the other; choose another id"
                )
            if existing is not None:  # a removed tenant comes back
                check_transition(tenant_id, TenantStatus(existing.status), TenantStatus.REGISTERED)
                existing.collection_name = wanted_collection
                existing.collection_id = None
                existing.host = wanted_host
                existing.status = TenantStatus.REGISTERED
                existing.last_error = None
                existing.updated_at = utcnow()
                return Registration(tenant_public(existing), True)
            tenant = Tenant(
                tenant_id=tenant_id,
                jail_name=tenant_id,
                collection_name=wanted_collection,
                host=wanted_host,
                status=TenantStatus.REGISTERED,
            )
            repo.add(tenant)
            return Registration(tenant_public(tenant), True)

    @staticmethod
    def _same_or_conflict(existing: Tenant, collection: str | None, host: str) -> dict[str, Any]:
        differences = []
        if existing.collection_name != collection:
            differences.append(f"collection {existing.collection_name!r} (asked {collection!r})")
        if existing.host != host:
            differences.append(f"host {existing.host!r} (asked {host!r})")
        if differences:
            raise TenantExists(f"tenant {existing.tenant_id} is already registered with " + ", ".join(differences))
        return tenant_public(existing)

    def all(self, status: TenantStatus | None = None) -> list[dict[str, Any]]:
        """All tenants (removed ones only when asked for by status), ordered by id."""
        with self._store.session() as session:
            return [tenant_public_row(row) for row in TenantRepo(session).find_rows(status)]

    def show(self, tenant_id: str) -> dict[str, Any]:
        """One tenant.  Raises TenantNotFound."""
        with self._store.session() as session:
            tenant = TenantRepo(session).get(tenant_id)
            if tenant is None:
                raise TenantNotFound(tenant_id)
            return tenant_public(tenant)

    def remove(self, tenant_id: str, destroy_jail: bool = False) -> dict[str, Any]:
        """Mark a tenant removed.  While it may still have a jail: StateConflict, or with
        ``destroy_jail`` its jail is destroyed first (never an adopted one: that refusal stands)."""
        if destroy_jail and self._destroy_jail is not None:
            with self._store.session() as session:
                tenant = TenantRepo(session).get(tenant_id)
                if tenant is not None and TenantStatus(tenant.status) in HAS_JAIL:
                    self._destroy_jail(tenant_id)
        lock = host_lock(self._locks, f"spawn-{tenant_id}", wait=None) if self._locks else contextlib.nullcontext()
        with lock, self._store.session() as session:  # not while a spawn of it is in flight
            tenant = TenantRepo(session).get_for_update(tenant_id)
            if tenant is None or tenant.status == TenantStatus.REMOVED:
                raise TenantNotFound(tenant_id)
            status = TenantStatus(tenant.status)
            if status in HAS_JAIL:
                raise StateConflict(
                    f"tenant {tenant_id} is {status} and may still have a jail; "
                    f"destroy it first: colibri remove-tenant {tenant_id} --destroy-jail"
                )
            check_transition(tenant_id, status, TenantStatus.REMOVED)
            tenant.status = TenantStatus.REMOVED
            tenant.updated_at = utcnow()
            return tenant_public(tenant)
