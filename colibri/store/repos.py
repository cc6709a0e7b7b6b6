"""Repositories: the only SQL.  Queries, and one checked state change (its rule is domain.py's)."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import DateTime, RowMapping, type_coerce
from sqlalchemy import select as select_table
from sqlmodel import Session, col, select

from colibri.domain import TenantStatus, check_transition
from colibri.errors import TenantNotFound
from colibri.store.audit_hooks import record
from colibri.store.models import Tenant, utcnow


class TenantRepo:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, tenant_id: str) -> Tenant | None:
        return self._session.get(Tenant, tenant_id)

    def get_for_update(self, tenant_id: str) -> Tenant | None:
        return self._session.get(Tenant, tenant_id, with_for_update=True)

    def change(
        self, tenant_id: str, status: TenantStatus | None = None, *, audit: str = "tenant.change", **fields: Any
    ) -> Tenant:
        """The one checked state change of a tenant: load it for update, check ``status`` against
        the state machine (domain.check_transition; the same status again is no change), set it
        and ``fields``, stamp ``updated_at``, and append its audit entry (action ``audit``, the
        states before and after, the fields set).  Raises TenantNotFound, StateConflict.  The
        caller's session commits it, as one transaction with whatever else it did."""
        tenant = self.get_for_update(tenant_id)
        if tenant is None:
            raise TenantNotFound(tenant_id)
        before = tenant.status
        if status is not None and tenant.status != status:
            check_transition(tenant_id, TenantStatus(tenant.status), status)
            tenant.status = status
        for name, value in fields.items():
            if name not in Tenant.model_fields:
                raise AttributeError(f"tenants has no column {name}")
            setattr(tenant, name, value)
        tenant.updated_at = utcnow()
        outcome = "failed" if tenant.status == TenantStatus.FAILED and before != tenant.status else "ok"
        record(self._session, audit, f"tenant:{tenant_id}", tenant=tenant_id, outcome=outcome,
               status=[before, tenant.status], set=fields)  # fmt: skip
        return tenant

    def find(self, status: str | None = None, include_removed: bool = False) -> Sequence[Tenant]:
        query = select(Tenant).order_by(col(Tenant.tenant_id))
        if status is not None:
            query = query.where(Tenant.status == status)
        elif not include_removed:
            query = query.where(Tenant.status != "removed")
        return self._session.exec(query).all()

    def find_rows(self, status: str | None = None) -> Sequence[RowMapping]:
        """``find`` as plain rows (column name -> value), no ORM objects: for long listings."""
        table = Tenant.metadata.tables[Tenant.__tablename__]
        # timestamps as the plain (naive, UTC) values stored: sqlmodel's tz-aware type would
        # call datetime.replace on each, a fifth of the time of a long listing
        columns = [
            type_coerce(c, DateTime()).label(c.name) if isinstance(getattr(c.type, "impl", None), DateTime) else c
            for c in table.c
        ]
        query = select_table(*columns).order_by(table.c.tenant_id)
        query = query.where(table.c.status == status if status is not None else table.c.status != "removed")
        return self._session.connection().execute(query).mappings().all()

    def ids(self) -> list[str]:
        return list(self._session.exec(select(Tenant.tenant_id)).all())

    def add(self, tenant: Tenant, audit: str = "tenant.register") -> None:
        self._session.add(tenant)
        self._session.flush()
        record(self._session, audit, f"tenant:{tenant.tenant_id}", tenant=tenant.tenant_id, host=tenant.host,
               collection=tenant.collection_name, status=tenant.status)  # fmt: skip
