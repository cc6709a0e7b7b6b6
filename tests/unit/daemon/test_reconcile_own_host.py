"""The daemon's reconcile reports only the tenants of its own host (issue 11): a tenant living on
another host has no jail here, and that is not a drift."""

from pathlib import Path

from sqlmodel import Session

from colibri.daemon.reconcile import daemon_reconcile
from colibri.services.tenants import TenantService
from colibri.settings import Settings
from colibri.store.db import Store
from colibri.store.models import Tenant


def test_a_tenant_on_another_host_is_not_a_missing_jail_here(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, run_dir=tmp_path / "run", jail_backend="sandbox",
                        sandbox_dir=tmp_path / "sandbox")  # fmt: skip
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        for name, host in (("mine", settings.host), ("theirs", "elsewhere")):
            TenantService(store, host).register(name, None, None)
        with Session(store.engine) as session:
            for name in ("mine", "theirs"):
                tenant = session.get(Tenant, name)
                assert tenant is not None
                tenant.status, tenant.backend = "active", "sandbox"
                session.add(tenant)
            session.commit()
        drifts = daemon_reconcile(settings, store)
    finally:
        store.close()
    assert [(d["kind"], d["tenant"]) for d in drifts] == [("missing_jail", "mine")]
