"""The audit trail's rows: append an entry inside the caller's transaction (fail closed), read them.

An append takes the host's head row as it advances it (``UPDATE ... RETURNING``: the row locked
on PostgreSQL, the database's write lock taken on SQLite, before the head is read), so the
entries of one host get consecutive ``seq`` and each names its predecessor's leaf.  The state
change and its entry commit together or not at all: if the entry cannot be written, the
caller's transaction fails and the change does not happen.

A process remembers the head it last wrote per store and host (``_SEEN``), and its next append
advances the row only where the row still holds exactly that head (one ``UPDATE ... WHERE seq =
? AND leaf = ?``: the same lock, one statement fewer on the daemon's hot paths).  Where the row
moved (another process appended, or the transaction that wrote the remembered head rolled back)
nothing matched, and the append takes the head as above.  A wrong memory costs a statement,
never a fork: the row decides.
"""

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, String, Text
from sqlmodel import Field, Session, SQLModel

from colibri.audit import origin
from colibri.audit.entry import GENESIS, Event, body, entry_mac, leaf_hash
from colibri.errors import StoreError


class AuditEntry(SQLModel, table=True):
    """One entry (migration 0007); ``body`` is the entry, the other columns say what it holds.  The
    primary key (host, seq) is its one index (migration 0011): a host's entries are in time order
    along its chain, and ``audit log`` picks a tenant's out as it reads a chain newest first."""

    __tablename__ = "audit_entries"

    host: str = Field(primary_key=True, max_length=64)
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    ts: str = Field(max_length=32)
    tenant: str | None = Field(default=None, max_length=64)
    action: str = Field(max_length=64)
    body: str = Field(sa_column=Column(Text, nullable=False))
    leaf: str = Field(max_length=64)
    mac: str | None = Field(default=None, max_length=64)
    """HMAC-SHA256 of ``body`` under its host's entry key (audit.entry.entry_mac): its signer signs
    only entries that carry it; not part of the entry (a bundle and ``verify`` need no secret)."""


class AuditHead(SQLModel, table=True):
    """Each host's newest entry: the row an append locks."""

    __tablename__ = "audit_heads"

    host: str = Field(primary_key=True, max_length=64)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    leaf: str = Field(sa_column=Column(String(64), nullable=False))


def timestamp(now: datetime | None = None) -> str:
    """An entry's time: UTC, microseconds, ``2026-12-01T17:40:00.123456Z`` (sorts as text)."""
    if now is not None:
        return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    micros = time.time_ns() // 1000  # the clock datetime.now reads
    second, fraction = divmod(micros, 1_000_000)
    last = _SECOND[0]
    if last[0] != second:  # the date and time to the second formatted once a second: every append reads one
        last = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        _SECOND[0] = last
    return f"{last[1]}.{fraction:06d}Z"


_SECOND: list[tuple[int, str]] = [(-1, "")]
"""The last second ``timestamp`` formatted, and its text (one tuple, swapped whole: threads share it)."""


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
        dialect = conn.dialect
        statements = _statements(dialect.paramstyle)
        raw = conn.connection.driver_connection  # the driver's own connection, in this transaction
        seen = (id(conn.engine), where.host)
        try:
            return self._append(raw, where, events, statements, seen)
        except dialect.loaded_dbapi.Error as exc:  # the driver's: no SQLAlchemy wrapper to map it
            _SEEN.pop(seen, None)
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"the audit entry could not be written, so nothing was changed: {first}") from None

    @staticmethod
    def _append(
        raw: Any, where: origin.Origin, events: Sequence[Event], statements: "_Statements", seen: tuple[int, str]
    ) -> list[int]:
        cursor = raw.cursor()
        key = where.vouch() if where.vouch is not None else None  # this host's entry key, if it is ours
        remembered = _SEEN.get(seen)
        # the swap's time is read before it takes the head; if another append came first, the swap
        # matches nothing and the time is read again once the head is held
        if remembered is not None:  # the head this process wrote last: advanced only if the row holds it
            seq0, prev0 = remembered
            rows, seqs, leaf = _rows(where, events, timestamp(), key, seq0, prev0)
            cursor.execute(statements.swap, (seqs[-1], leaf, where.host, seq0, prev0))
            if cursor.rowcount == 1:  # the row locked (or the write lock held) and it was that head
                _finish(cursor, statements, rows, seen, seqs[-1], leaf)
                return seqs
        # the head taken as it is advanced, in one write: the row is locked (PostgreSQL) or the
        # database's write lock held (SQLite) before its values are read, so two appends of a
        # host never read the same head
        cursor.execute(statements.take, (len(events), where.host))
        row = cursor.fetchone()
        if row is None:  # a host's first entry: its head row made (once, whoever races), then taken
            cursor.execute(statements.start, (where.host, GENESIS))
            cursor.execute(statements.take, (len(events), where.host))
            row = cursor.fetchone()
        # the time read with the head held: a host's entries are in time order as in seq order
        rows, seqs, leaf = _rows(where, events, timestamp(), key, int(row[0]) - len(events), str(row[1]))
        cursor.execute(statements.advance, (leaf, where.host))
        _finish(cursor, statements, rows, seen, seqs[-1], leaf)
        return seqs


MAX_SEEN = 64
_SEEN: dict[tuple[int, str], tuple[int, str]] = {}
"""(engine, host) -> the (seq, leaf) this process last advanced that host's head to (a hint: the
head row decides, see the module's text); one entry per store and host this process wrote."""


def _rows(
    where: origin.Origin, events: Sequence[Event], ts: str, key: bytes | None, seq: int, prev: str
) -> tuple[list[tuple[Any, ...]], list[int], str]:
    """The entry rows after the head (seq, prev): rows, their seqs, the last one's leaf."""
    rows, seqs = [], []
    for event in events:
        seq += 1
        encoded = body(seq, ts, where.host, where.actor, event, prev)
        prev = leaf_hash(encoded)
        mac = entry_mac(key, encoded) if key is not None else None
        rows.append((where.host, seq, ts, event.tenant, event.action, encoded.decode(), prev, mac))
        seqs.append(seq)
    return rows, seqs, prev


def _finish(
    cursor: Any, statements: "_Statements", rows: list[tuple[Any, ...]], seen: tuple[int, str], seq: int, leaf: str
) -> None:
    if len(rows) == 1:
        cursor.execute(statements.add, rows[0])
    else:
        cursor.executemany(statements.add, rows)
    cursor.close()
    if len(_SEEN) >= MAX_SEEN and seen not in _SEEN:  # a process that opened many stores (tests)
        _SEEN.clear()
    _SEEN[seen] = (seq, leaf)  # one dict store: atomic between the daemon's threads


@dataclass(frozen=True)
class _Statements:
    """The append's statements as the driver's own SQL (an append is on the daemon's hot paths:
    SQLAlchemy's statement machinery cost more than the statements).  Positional parameters in
    the driver's style; constants only, no value is formatted in."""

    take: str
    """The host's head: its seq advanced, the row locked, the old leaf returned."""
    start: str
    """Make the head row (a host's first entry; two racing first appends both try, one inserts)."""
    add: str
    """Add the entries."""
    advance: str
    """Set the head's new leaf (after ``take``)."""
    swap: str
    """Advance the head to (seq, leaf) where it is still the remembered (seq, leaf)."""


@functools.cache
def _statements(paramstyle: str) -> _Statements:
    mark = "?" if paramstyle == "qmark" else "%s"
    marks = ", ".join([mark] * 8)
    return _Statements(
        take=f"UPDATE audit_heads SET seq = seq + {mark} WHERE host = {mark} RETURNING seq, leaf",  # noqa: S608
        start=f"INSERT INTO audit_heads (host, seq, leaf) VALUES ({mark}, 0, {mark}) ON CONFLICT DO NOTHING",  # noqa: S608
        add=f"INSERT INTO audit_entries (host, seq, ts, tenant, action, body, leaf, mac) VALUES ({marks})",  # noqa: S608
        advance=f"UPDATE audit_heads SET leaf = {mark} WHERE host = {mark}",  # noqa: S608
        swap=(
            f"UPDATE audit_heads SET seq = {mark}, leaf = {mark} "  # noqa: S608
            f"WHERE host = {mark} AND seq = {mark} AND leaf = {mark}"
        ),
    )
