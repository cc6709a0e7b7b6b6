"""Who gets an agent socket: declared lanes, and the tenants the hive serves.  Queries only."""

from collections.abc import Sequence

from sqlmodel import Session, col, select

from colibri.domain import TenantStatus
from colibri.store.db import Store, translate_errors
from colibri.store.models import Lane, Tenant


class OwnerRepo:
    def __init__(self, session: Session) -> None:
        self._session = session

    def tenant(self, tenant_id: str) -> Tenant | None:
        return self._session.get(Tenant, tenant_id)

    def active_tenant_ids(self, host: str | None = None) -> list[str]:
        """Active tenants (only those living on ``host`` when it is given)."""
        query = select(Tenant.tenant_id).where(Tenant.status == TenantStatus.ACTIVE)
        if host is not None:
            query = query.where(Tenant.host == host)
        return list(self._session.exec(query).all())

    def kept_tenant_ids(self, candidates: Sequence[str]) -> set[str]:
        """Which of these tenants exist and are not removed."""
        query = select(Tenant.tenant_id).where(col(Tenant.tenant_id).in_(list(candidates)),
                                               Tenant.status != TenantStatus.REMOVED)  # fmt: skip
        return set(self._session.exec(query).all())

    def lane(self, name: str) -> Lane | None:
        return self._session.get(Lane, name)

    def lane_names(self) -> list[str]:
        return list(self._session.exec(select(Lane.name).order_by(col(Lane.name))).all())

    def add_lane(self, name: str) -> None:
        self._session.add(Lane(name=name))


def check_writable(store: Store) -> None:
    """Can the store take a write?  On SQLite, take the write lock and let it go at once (a
    database another process holds EXCLUSIVE answers "locked"); elsewhere a plain round trip."""
    if store.engine.dialect.name != "sqlite":
        store.check()
        return
    with translate_errors(store.url), store.engine.connect() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        conn.exec_driver_sql("ROLLBACK")
