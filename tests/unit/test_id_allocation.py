"""Each tenant's block of host ids: allocated like its IP, kept, never shared, never reused."""

from pathlib import Path

import pytest

from colibri.adapters import jail
from colibri.adapters.jail import UID_BLOCK, JailIds
from colibri.errors import JailError
from colibri.services.lifecycle.allocation import allocate_ids
from colibri.services.lifecycle.layout import SpawnPaths
from colibri.services.tenants import TenantService
from colibri.store import models
from colibri.store.db import Store
from colibri.store.repos import TenantRepo

BASE = 1_000_000_000


Pool = tuple[Store, SpawnPaths]


def service(tmp_path: Path, blocks: int = 4) -> tuple[Store, Pool]:
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    paths = SpawnPaths(tmp_path / "run", tmp_path / "skills", "agent", "10.17.89.0/24", "colibri/agent", BASE, blocks)
    return store, (store, paths)


def allocate(pool: Pool, tenant: str) -> JailIds:
    return allocate_ids(pool[0], pool[1], tenant)  # the allocator is the unit under test


def test_lowest_free_block_kept_once_allocated(tmp_path: Path) -> None:
    store, spawn = service(tmp_path)
    tenants = TenantService(store, "h")
    for name in ("a", "b", "c"):
        tenants.register(name, None, None)
    assert allocate(spawn, "a") == JailIds(BASE)
    assert allocate(spawn, "b") == JailIds(BASE + UID_BLOCK)
    assert allocate(spawn, "a") == JailIds(BASE)  # kept
    assert tenants.show("a")["uid_base"] == BASE
    assert tenants.show("a")["agent_uid"] == BASE + 1001
    assert tenants.show("c")["uid_base"] is None and tenants.show("c")["agent_uid"] is None


def test_a_removed_tenants_block_is_never_given_to_another(tmp_path: Path) -> None:
    store, spawn = service(tmp_path)
    tenants = TenantService(store, "h")
    tenants.register("a", None, None)
    allocate(spawn, "a")
    tenants.remove("a")
    tenants.register("b", None, None)
    assert allocate(spawn, "b") == JailIds(BASE + UID_BLOCK)


def test_an_adopted_jails_unaligned_block_is_not_overlapped(tmp_path: Path) -> None:
    store, spawn = service(tmp_path)
    tenants = TenantService(store, "h")
    tenants.register("adopted", None, None)
    tenants.register("new", None, None)
    with store.session() as session:
        row = TenantRepo(session).get_for_update("adopted")
        assert row is not None
        row.uid_base = BASE + 100  # overlaps the pool's first two blocks
    assert allocate(spawn, "new") == JailIds(BASE + 2 * UID_BLOCK)


def test_an_exhausted_pool_is_a_clear_error(tmp_path: Path) -> None:
    store, spawn = service(tmp_path, blocks=2)
    tenants = TenantService(store, "h")
    for name in ("a", "b", "c"):
        tenants.register(name, None, None)
    allocate(spawn, "a")
    allocate(spawn, "b")
    with pytest.raises(JailError, match=r"tenant id pool is exhausted .*tenant_uid_blocks"):
        allocate(spawn, "c")
    assert tenants.show("c")["uid_base"] is None


def test_the_store_and_the_adapters_agree_on_the_agents_id() -> None:
    assert models.AGENT_ID == jail.AGENT_ID
    assert JailIds(BASE).agent_uid == BASE + models.AGENT_ID
