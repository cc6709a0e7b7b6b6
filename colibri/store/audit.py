"""The audit trail's rows: append an entry inside the caller's transaction (fail closed), read them.

An append locks the host's head row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite holds the
one write lock already), so the entries of one host get consecutive ``seq`` and each names its
predecessor's leaf.  The state change and its entry commit together or not at all: if the entry
cannot be written, the caller's transaction fails and the change does not happen.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, Index, String, Text
from sqlmodel import Field, Session, SQLModel

from colibri.audit import origin
from colibri.audit.entry import GENESIS, Event, body, leaf_hash


class AuditEntry(SQLModel, table=True):
    """One entry (migration 0007); ``body`` is the entry, the other columns index it."""

    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_entries_tenant", "tenant", "seq"), Index("ix_audit_entries_ts", "ts"))

    host: str = Field(primary_key=True, max_length=64)
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    ts: str = Field(max_length=32)
    tenant: str | None = Field(default=None, max_length=64)
    action: str = Field(max_length=64)
    body: str = Field(sa_column=Column(Text, nullable=False))
    leaf: str = Field(max_length=64)


class AuditHead(SQLModel, table=True):
    """Each host's newest entry: the row an append locks."""

    __tablename__ = "audit_heads"

    host: str = Field(primary_key=True, max_length=64)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    leaf: str = Field(sa_column=Column(String(64), nullable=False))


def timestamp(now: datetime | None = None) -> str:
    """An entry's time: UTC, microseconds, ``2026-12-01T17:40:00.123456Z`` (sorts as text)."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AuditRepo:
    def __init__(self, session: Session) -> None:
        self._session = session

    def append(self, event: Event) -> int:
        """Append ``event`` under the current origin (audit.origin); its seq.  Part of the caller's
        transaction: commit or roll back with it."""
        return self.append_many([event])[-1]

    def append_many(self, events: Sequence[Event]) -> list[int]:
        """Append several entries in order with one head update (the daemon's batched claims)."""
        if not events:
            return []
        where = origin.current()
        conn = self._session.connection()
        postgres = conn.dialect.name == "postgresql"
        sql = _SQL["postgresql" if postgres else "sqlite"]
        # plain statements on the session's own connection (no statement built per call: an append
        # is on every state change's path).  The head row exists before it is locked, so two first
        # appends of a host never both insert it; on SQLite that insert is also the write that takes
        # the lock before the head is read (a read first could meet a writer's commit in between)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        found = None
        if postgres:
            cursor.execute(sql["lock"], {"host": where.host})
            found = cursor.fetchone()
        if found is None:
            cursor.execute(sql["head"], {"host": where.host, "leaf": GENESIS})
            cursor.execute(sql["lock"], {"host": where.host})
            found = cursor.fetchone()
        seq, prev = int(found[0]), str(found[1])
        ts = timestamp()
        rows, seqs = [], []
        for event in events:
            seq += 1
            encoded = body(seq, ts, where.host, where.actor, event, prev)
            prev = leaf_hash(encoded)
            rows.append({"host": where.host, "seq": seq, "ts": ts, "tenant": event.tenant,
                         "action": event.action, "body": encoded.decode(), "leaf": prev})  # fmt: skip
            seqs.append(seq)
        cursor.executemany(sql["entry"], rows)
        cursor.execute(sql["move"], {"host": where.host, "seq": seq, "leaf": prev})
        cursor.close()
        return seqs


_SQL = {
    "postgresql": {
        "lock": "SELECT seq, leaf FROM audit_heads WHERE host = %(host)s FOR UPDATE",
        "head": "INSERT INTO audit_heads (host, seq, leaf) VALUES (%(host)s, 0, %(leaf)s) "
        "ON CONFLICT (host) DO NOTHING",
        "entry": "INSERT INTO audit_entries (host, seq, ts, tenant, action, body, leaf) VALUES "
        "(%(host)s, %(seq)s, %(ts)s, %(tenant)s, %(action)s, %(body)s, %(leaf)s)",
        "move": "UPDATE audit_heads SET seq = %(seq)s, leaf = %(leaf)s WHERE host = %(host)s",
    },
    "sqlite": {  # no FOR UPDATE: the first write takes the database's one write lock
        "lock": "SELECT seq, leaf FROM audit_heads WHERE host = :host",
        "head": "INSERT INTO audit_heads (host, seq, leaf) VALUES (:host, 0, :leaf) ON CONFLICT (host) DO NOTHING",
        "entry": "INSERT INTO audit_entries (host, seq, ts, tenant, action, body, leaf) VALUES "
        "(:host, :seq, :ts, :tenant, :action, :body, :leaf)",
        "move": "UPDATE audit_heads SET seq = :seq, leaf = :leaf WHERE host = :host",
    },
}
