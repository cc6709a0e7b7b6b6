"""What colibri gives each tenant from the host's pools: a block of host ids, and a jail IP.

Both are kept while the tenant's row exists (even removed), so no id or address is handed to
another tenant while files or firewall rules may still name it."""

import ipaddress
from collections.abc import Callable
from typing import TypeVar

from colibri.adapters.jail import UID_BLOCK, JailIds
from colibri.errors import JailError, StoreError
from colibri.services.lifecycle.layout import SpawnPaths, ip_pool_lock, uid_pool_lock
from colibri.store.audit_hooks import record
from colibri.store.db import Store
from colibri.store.repos import TenantRepo

T = TypeVar("T")
ATTEMPTS = 8


def _retried(allocate: Callable[[], T]) -> T:
    """``allocate()`` again when its commit met another host's allocation of the same block or
    address (the pool locks are this host's files; with many hosts on one database another
    host may take the lowest free one between our read and our commit: the unique column
    refuses the second, and the next try reads it as taken)."""
    from sqlalchemy.exc import IntegrityError

    for attempt in range(ATTEMPTS):
        try:
            return allocate()
        except StoreError as exc:
            if not isinstance(exc.__context__, IntegrityError) or attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def allocate_ids(store: Store, paths: SpawnPaths, tenant_id: str) -> JailIds:
    """The tenant's block of host ids: kept once allocated (while the tenant row exists, even
    removed, so no id is reused for another tenant's files), else the lowest free block."""
    return _retried(lambda: _allocate_ids(store, paths, tenant_id))


def _allocate_ids(store: Store, paths: SpawnPaths, tenant_id: str) -> JailIds:
    with uid_pool_lock(paths.locks), store.session() as session:
        repo = TenantRepo(session)
        tenant = repo.get_for_update(tenant_id)
        assert tenant is not None
        if tenant.uid_base is not None:
            return JailIds(tenant.uid_base)
        held = [t.uid_base for t in repo.find(include_removed=True) if t.uid_base is not None]
        start = paths.uid_base
        aligned = {b for b in held if (b - start) % UID_BLOCK == 0}
        odd = [b for b in held if b not in aligned]  # adopted jails' blocks: no overlap either
        for n in range(paths.uid_blocks):
            candidate = start + n * UID_BLOCK
            if candidate not in aligned and not any(abs(b - candidate) < UID_BLOCK for b in odd):
                tenant.uid_base = candidate
                record(session, "spawn.allocate", f"tenant:{tenant_id}", tenant=tenant_id, uid_base=candidate)
                return JailIds(candidate)
    raise JailError(
        f"the tenant id pool is exhausted ({paths.uid_blocks} blocks of {UID_BLOCK} from "
        f"{paths.uid_base}): raise tenant_uid_blocks"
    )


def allocate_ip(store: Store, paths: SpawnPaths, tenant_id: str) -> str:
    """The tenant's IP from the pool: kept if it has one, else the lowest free address."""
    return _retried(lambda: _allocate_ip(store, paths, tenant_id))


def _allocate_ip(store: Store, paths: SpawnPaths, tenant_id: str) -> str:
    with ip_pool_lock(paths.locks), store.session() as session:
        repo = TenantRepo(session)
        tenant = repo.get_for_update(tenant_id)
        assert tenant is not None
        if tenant.ip_address:
            return tenant.ip_address
        used = {t.ip_address for t in repo.find(include_removed=True) if t.ip_address}
        network = ipaddress.ip_network(paths.ip_pool, strict=False)
        hosts = network.hosts()  # lazy: a /8 is 16M addresses
        next(hosts, None)  # the first host is the gateway by convention
        for candidate in hosts:
            if str(candidate) not in used:
                tenant.ip_address = str(candidate)
                record(session, "spawn.allocate", f"tenant:{tenant_id}", tenant=tenant_id, ip_address=str(candidate))
                return str(candidate)
    raise JailError(f"the jail IP pool {paths.ip_pool} is exhausted")
