"""The store suite, run on SQLite and on a real PostgreSQL server (fixture ``db_url``)."""

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from colibri.domain import TenantStatus
from colibri.errors import NotFound, SchemaTooNew, StateConflict, StoreError, TenantExists, TenantNotFound
from colibri.services.tenants import TenantService
from colibri.store.db import Store
from colibri.store.migrations import head
from colibri.store.migrations.history import head_revision, known_revisions


def test_head_constant_matches_the_migration_scripts() -> None:
    assert head_revision() == head()
    assert head() in known_revisions()


def test_migrates_a_new_database_to_head(empty_db_url: str) -> None:
    store = Store(empty_db_url)
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head()
    store.close()
    Store(empty_db_url).close()  # opening again is a no-op


def test_register_list_show_remove(db_url: str) -> None:
    store = Store(db_url)
    tenants = TenantService(store, "host1")
    first = tenants.register("acme", None, None)
    assert first.created
    assert first.tenant["collection_name"] == "acme"
    assert first.tenant["host"] == "host1"
    assert first.tenant["status"] == "registered"
    again = tenants.register("acme", None, None)
    assert not again.created
    assert again.tenant == first.tenant
    with pytest.raises(NotFound, match="host not found: host2"):  # a tenant's host is this one or enrolled
        tenants.register("zed", "", "host2")
    from colibri.store.hosts import HostRepo
    from colibri.store.models import Host

    with store.session() as session:
        HostRepo(session).add(Host(name="host2"))
    tenants.register("zed", "", "host2")
    assert [t["tenant_id"] for t in tenants.all()] == ["acme", "zed"]
    assert tenants.show("zed")["collection_name"] is None
    assert tenants.all(TenantStatus.ACTIVE) == []
    removed = tenants.remove("zed")
    assert removed["status"] == "removed"
    assert [t["tenant_id"] for t in tenants.all()] == ["acme"]
    assert [t["tenant_id"] for t in tenants.all(TenantStatus.REMOVED)] == ["zed"]
    with pytest.raises(TenantNotFound):
        tenants.show("nope")
    with pytest.raises(TenantNotFound):
        tenants.remove("zed")
    revived = tenants.register("zed", None, None)
    assert revived.created and revived.tenant["status"] == "registered"
    store.close()


def test_conflicting_reregistration_changes_nothing(db_url: str) -> None:
    store = Store(db_url)
    tenants = TenantService(store, "host1")
    tenants.register("acme", "acme-vault", None)
    with pytest.raises(TenantExists, match="collection 'acme-vault' \\(asked 'other'\\)"):
        tenants.register("acme", "other", None)
    assert tenants.show("acme")["collection_name"] == "acme-vault"
    with pytest.raises(TenantExists, match="clashes with tenant acme"):
        tenants.register("acme2", None, None)
    assert [t["tenant_id"] for t in tenants.all()] == ["acme"]
    store.close()


def test_remove_refuses_while_a_jail_may_exist(db_url: str) -> None:
    store = Store(db_url)
    tenants = TenantService(store, "h")
    tenants.register("acme", None, None)
    with store.session() as session:
        session.execute(text("UPDATE tenants SET status = 'active' WHERE tenant_id = 'acme'"))
    with pytest.raises(StateConflict, match="may still have a jail"):
        tenants.remove("acme")
    assert tenants.show("acme")["status"] == "active"
    store.close()


def test_newer_schema_is_refused(db_url: str) -> None:
    store = Store(db_url)
    with store.session() as session:
        session.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    store.close()
    with pytest.raises(SchemaTooNew, match=r"database schema \(9999\) is newer"):
        Store(db_url)


def test_empty_version_table_is_migrated_without_a_backup(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
    conn.commit()
    conn.close()
    Store(f"sqlite:///{path}").close()
    assert not list(tmp_path.glob("old.db.before-*"))


def test_unwritable_database_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot create the database directory"):
        Store(f"sqlite:///{blocker}/sub/colibri.db")


def test_locked_database_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    Store(f"sqlite:///{path}").close()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3,sys,time; c=sqlite3.connect(sys.argv[1], isolation_level=None);"
         "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(30)", str(path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        store = Store(f"sqlite:///{path}", timeout=0.3)
        with pytest.raises(StoreError, match="is locked by another process"):
            TenantService(store, "h").register("acme", None, None)
        store.close()
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    store = Store(f"sqlite:///{path}")
    assert TenantService(store, "h").all() == []
    store.close()
