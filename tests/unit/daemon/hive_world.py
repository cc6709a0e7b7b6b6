"""What the hive's unit tests share: a clock they move by hand, and a store with active tenants."""

from collections.abc import Mapping

from sqlmodel import Session

from colibri.services.tenants import TenantService
from colibri.store.db import Store
from colibri.store.models import Tenant


class Clock:
    """Seconds since the epoch that move only when a test says so (``clock.now += 61``)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def active_tenants(url: str, tenants: Mapping[str, str]) -> Store:
    """A store at ``url`` with each tenant (name → its host) registered and set active, as spawn would."""
    store = Store(url)
    for name, host in tenants.items():
        TenantService(store, host).register(name, None, None)
    with Session(store.engine) as session:
        for name in tenants:
            tenant = session.get(Tenant, name)
            assert tenant is not None
            tenant.status = "active"
            session.add(tenant)
        session.commit()
    return store
