"""The hosts table: queries only, no business rules (like the tenant repository in repos.py)."""

from collections.abc import Sequence

from sqlalchemy import func
from sqlmodel import Session, col, select

from colibri.store.models import Host, Tenant


class HostRepo:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, name: str, for_update: bool = False) -> Host | None:
        return self._session.get(Host, name, with_for_update=for_update)

    def add(self, host: Host) -> None:
        self._session.add(host)
        self._session.flush()

    def remove(self, host: Host) -> None:
        self._session.delete(host)
        self._session.flush()

    def find(self) -> Sequence[Host]:
        return self._session.exec(select(Host).order_by(col(Host.name))).all()

    def tenant_count(self, name: str) -> int:
        """How many tenants live on this host, a removed one's row aside (``hosts remove`` is
        refused while any do)."""
        query = select(func.count()).select_from(Tenant).where(Tenant.host == name, Tenant.status != "removed")
        return int(self._session.exec(query).one())
