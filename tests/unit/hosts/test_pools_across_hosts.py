"""Two hosts on one database allocate a tenant's id block or IP at the same moment: each
host's pool lock is its own file, so the database's unique columns decide, and the one that
lost takes the next free one (it failed with a store error, exit 15, before)."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from colibri.adapters.jail import UID_BLOCK, JailIds
from colibri.services.lifecycle import allocation
from colibri.services.lifecycle.layout import SpawnPaths
from colibri.services.tenants import TenantService
from colibri.store.db import Store
from colibri.store.repos import TenantRepo

BASE = 1_000_000_000


def _paths(run: Path) -> SpawnPaths:
    return SpawnPaths(run, run / "skills", "agent", "10.17.89.0/24", "colibri/agent", BASE, 8)


@pytest.mark.parametrize("pool", ["ids", "ip"])
def test_another_host_taking_the_same_block_between_read_and_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pool: str, db_url: str
) -> None:
    url = db_url
    osa, domedog = Store(url), Store(url)  # two hosts' connections to the one database
    tenants = TenantService(osa, "osa")
    tenants.register("ant", "", None)
    tenants.register("bee", "", None)
    allocate: Callable[[Store, SpawnPaths, str], Any] = (
        allocation.allocate_ids if pool == "ids" else allocation.allocate_ip
    )
    first = allocate(domedog, _paths(tmp_path / "domedog"), "bee")  # domedog commits first...
    real_find = TenantRepo.find
    reads: list[int] = []

    def find(self: TenantRepo, *args: Any, **kwargs: Any) -> Any:
        """...after osa read what is taken: its first read does not see bee's."""
        reads.append(1)
        rows = real_find(self, *args, **kwargs)
        return [r for r in rows if r.tenant_id != "bee"] if len(reads) == 1 else rows

    monkeypatch.setattr(TenantRepo, "find", find)
    got = allocate(osa, _paths(tmp_path / "osa"), "ant")
    assert len(reads) == 2  # its commit was refused once, then it read again
    if pool == "ids":
        assert (first, got) == (JailIds(BASE), JailIds(BASE + UID_BLOCK))
    else:
        assert (first, got) == ("10.17.89.2", "10.17.89.3")
    osa.close()
    domedog.close()
