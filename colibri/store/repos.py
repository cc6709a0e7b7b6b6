"""Repositories: queries only, no business rules."""

from collections.abc import Sequence

from sqlmodel import Session, col, select

from colibri.store.models import Tenant


class TenantRepo:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, tenant_id: str) -> Tenant | None:
        return self._session.get(Tenant, tenant_id)

    def get_for_update(self, tenant_id: str) -> Tenant | None:
        return self._session.get(Tenant, tenant_id, with_for_update=True)

    def find(self, status: str | None = None, include_removed: bool = False) -> Sequence[Tenant]:
        query = select(Tenant).order_by(col(Tenant.tenant_id))
        if status is not None:
            query = query.where(Tenant.status == status)
        elif not include_removed:
            query = query.where(Tenant.status != "removed")
        return self._session.exec(query).all()

    def ids(self) -> list[str]:
        return list(self._session.exec(select(Tenant.tenant_id)).all())

    def add(self, tenant: Tenant) -> None:
        self._session.add(tenant)
        self._session.flush()
