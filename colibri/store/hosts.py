"""The hosts table: queries only, no business rules (like the tenant repository in repos.py)."""

from collections.abc import Sequence

from sqlalchemy import func, text, update
from sqlmodel import Session, col, select

from colibri.store.models import Host, Tenant, utcnow


class HostRepo:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, name: str, for_update: bool = False) -> Host | None:
        return self._session.get(Host, name, with_for_update=for_update)

    def hold(self, name: str, *, exclusive: bool = False) -> bool:
        """Lock the host's row for this transaction, before anything else is read, so placing a
        tenant there and removing the host are serialized (review R9): on PostgreSQL a row lock
        (FOR KEY SHARE to place a tenant, FOR UPDATE to remove the host); SQLite has one writer,
        so a no-op UPDATE takes its write lock now.  False: no such host (any more)."""
        if self._session.get_bind().dialect.name == "postgresql":
            query = select(Host.name).where(col(Host.name) == name)
            query = query.with_for_update(read=not exclusive, key_share=not exclusive)
            return self._session.exec(query).first() is not None
        held = self._session.execute(update(Host).where(col(Host.name) == name).values(name=col(Host.name)))
        return bool(held.rowcount)  # type: ignore[attr-defined]

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

    # ---- the lease its own daemon renews (issue 11) -------------------------------------------

    def take_term(self, host: Host | None, name: str, expires: float) -> int:
        """This host's daemon starts (or comes back after being declared lost): a new term, state
        up, the lease until ``expires``.  ``host``: its row as read FOR UPDATE in this transaction
        (None: a host never enrolled over SSH, whose row is created here)."""
        if host is None:
            host = Host(name=name)
        host.state, host.lease_term, host.lease_expires_at = "up", host.lease_term + 1, expires
        host.updated_at = utcnow()
        self.add(host)
        return host.lease_term

    def renew(self, name: str, term: int, expires: float) -> bool:
        """One small UPDATE; False when the term is no longer this daemon's (it was declared lost,
        another daemon took the name, or the host was removed): the caller looks at the row.  An
        UPDATE, never an insert: a removed host's row is not brought back (review R13)."""
        query = (
            update(Host)
            .where(col(Host.name) == name, col(Host.lease_term) == term, col(Host.state) == "up")
            .values(lease_expires_at=expires, updated_at=utcnow())
        )
        return bool(self._session.execute(query).rowcount)  # type: ignore[attr-defined]

    def bound_lock_waits(self, milliseconds: int) -> None:
        """This transaction waits at most ``milliseconds`` for a row lock (PostgreSQL; SQLite has
        one writer and its busy timeout): a lost host's unfinished transaction may still hold its
        rows until the server drops its connection, and the rescuing daemon must not stall on it."""
        if self._session.get_bind().dialect.name == "postgresql":
            self._session.execute(text(f"SET LOCAL lock_timeout = {int(milliseconds)}"))

    def mark_expired_lost(self, cutoff: float, exclude: str) -> list[str]:
        """Hosts whose lease ended before ``cutoff`` become ``lost``.  A compare-and-set on the
        state: of several daemons racing, exactly one gets each host back (PostgreSQL re-checks
        the WHERE after the row lock the first one held)."""
        query = (
            update(Host)
            .where(col(Host.state) == "up", col(Host.lease_expires_at) < cutoff, col(Host.name) != exclude)
            .values(state="lost", updated_at=utcnow(), last_error="its lease expired (its daemon stopped renewing)")
            .returning(col(Host.name))
        )
        return sorted(str(n) for n in self._session.execute(query).scalars().all())

    def release(self, name: str, term: int) -> None:
        """A clean stop: the lease ends now (state down) so nobody waits out the grace for it; the
        agents' tasks were given back by the daemon already."""
        query = (
            update(Host)
            .where(col(Host.name) == name, col(Host.lease_term) == term, col(Host.state) == "up")
            .values(state="down", updated_at=utcnow())
        )
        self._session.execute(query)
