"""The listing read path (colibri.store.listing) against the ORM's view of the same tenants."""

import json
import subprocess
import sys

from sqlalchemy import text

from colibri.domain import TenantStatus
from colibri.services.tenants import TenantService
from colibri.store import listing
from colibri.store.db import Store
from colibri.store.models import Tenant
from tests.conftest import REPO


def test_the_listing_columns_are_the_tables() -> None:
    assert tuple(Tenant.model_fields) == listing.TENANT_COLUMNS


def test_the_listing_is_what_show_tenant_gives_for_each(db_url: str) -> None:
    store = Store(db_url)
    tenants = TenantService(store, "host1")
    for tenant in ("alpha", "bravo", "charlie", "delta"):
        tenants.register(tenant, None, None)
    with store.session() as session:
        bravo = session.get(Tenant, "bravo")
        assert bravo is not None
        bravo.adopted, bravo.uid_base, bravo.status = True, 200_000, TenantStatus.STOPPED
        bravo.capabilities = json.dumps([{"name": "echo", "version": "1"}])
        bravo.secrets_status, bravo.jail_root, bravo.ip_address = "ok", "/j/bravo", "10.0.0.2"
    with store.session() as session:  # microseconds; then text SQLAlchemy did not write
        session.execute(text("UPDATE tenants SET secrets_changed_at = created_at WHERE tenant_id = 'bravo'"))
        session.execute(
            text("UPDATE tenants SET secrets_checked_at = :t WHERE tenant_id = 'alpha'"),
            {"t": "2026-02-03 04:05:06.789000"},
        )
        if db_url.startswith("sqlite"):
            session.execute(text("UPDATE tenants SET updated_at = '2026-02-03 04:05:06' WHERE tenant_id = 'charlie'"))
            session.execute(text("UPDATE tenants SET updated_at = '2026-02-03' WHERE tenant_id = 'delta'"))
    tenants.remove("delta")
    listed = tenants.all()
    assert [t["tenant_id"] for t in listed] == ["alpha", "bravo", "charlie"]
    assert listed == [tenants.show(t) for t in ("alpha", "bravo", "charlie")]
    assert [list(view) for view in listed] == [list(tenants.show("alpha"))] * 3  # the keys, in their order
    assert listed[0]["secrets_checked_at"] == "2026-02-03T04:05:06.789000Z"
    assert listed[1]["adopted"] is True and listed[1]["agent_uid"] == 200_000 + listing.AGENT_ID
    assert listed[1]["capabilities"] == [{"name": "echo", "version": "1"}]
    if db_url.startswith("sqlite"):
        assert listed[2]["updated_at"] == "2026-02-03T04:05:06Z"
    assert tenants.all(TenantStatus.REMOVED) == [tenants.show("delta")]
    if db_url.startswith("sqlite"):
        assert tenants.show("delta")["updated_at"] is not None
    assert tenants.all(TenantStatus.STOPPED) == [listed[1]]
    store.close()


def test_list_tenants_imports_no_table_class(tmp_path: object) -> None:
    """list-tenants reads through the listing path: SQLModel's table classes, the repositories
    and the adapters are not imported (about 20 ms of its time), nor SQLModel and SQLAlchemy's ORM
    (about 50 ms: a connection, no session) nor, once the schema is at head, Alembic
    (docs/PERFORMANCE.md)."""
    script = (
        "import sys\n"
        "from colibri.cli.app import run\n"
        "code = run(['list-tenants', '--json'])\n"
        "heavy = sorted(m for m in sys.modules if m in ('colibri.store.models', 'colibri.store.repos')"
        " or m.startswith(('colibri.adapters', 'colibri.services.lifecycle', 'sqlmodel', 'sqlalchemy.orm',"
        " 'alembic')))\n"
        "print(code, heavy, file=sys.stderr)\n"
    )
    for _ in range(2):  # the first run migrates the new database (Alembic); the second only reads
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=False)
    assert done.stderr.strip().splitlines()[-1] == "0 []", done.stderr
