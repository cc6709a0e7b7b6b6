"""The audit trail's other rows (migration 0007): checkpoints, cosignatures, keys, and the reads
of entries that signing, exporting, proving and ``audit log`` need.

Writes here run in the caller's session (the service commits).  Reads of entries stream in
pages, so an export or a first signature over a million entries never holds them all as rows.
"""

from collections.abc import Iterator
from typing import Any

from sqlalchemy import BigInteger, Column, Text, and_, case, func, select, update
from sqlmodel import Field, Session, SQLModel, col
from sqlmodel import select as orm_select

from colibri.audit.note import MAX_NOTE
from colibri.store.audit import AuditEntry, AuditHead

PAGE = 5000


class AuditCheckpoint(SQLModel, table=True):
    __tablename__ = "audit_checkpoints"

    host: str = Field(primary_key=True, max_length=64)
    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root: str = Field(max_length=64)
    key_id: str = Field(max_length=64)
    note: str = Field(sa_column=Column(Text, nullable=False))
    signed_at: str = Field(max_length=32)


class AuditCosignature(SQLModel, table=True):
    __tablename__ = "audit_cosignatures"

    host: str = Field(primary_key=True, max_length=64)
    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    witness: str = Field(primary_key=True, max_length=64)
    root: str = Field(max_length=64)
    key_id: str = Field(max_length=64)
    signature: str = Field(sa_column=Column(Text, nullable=False))
    signed_at: str = Field(max_length=32)


class AuditKey(SQLModel, table=True):
    __tablename__ = "audit_keys"

    host: str = Field(primary_key=True, max_length=64)
    key_id: str = Field(primary_key=True, max_length=64)
    public_key: str = Field(sa_column=Column(Text, nullable=False))
    created_at: str = Field(max_length=32)
    retired_at: str | None = Field(default=None, max_length=32)
    endorsement: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


_E = AuditEntry.__table__  # type: ignore[attr-defined]
_H = AuditHead.__table__  # type: ignore[attr-defined]
_C = AuditCheckpoint.__table__  # type: ignore[attr-defined]
_S = AuditCosignature.__table__  # type: ignore[attr-defined]
_K = AuditKey.__table__  # type: ignore[attr-defined]
_SANE_NOTE = func.length(_C.c.note) <= MAX_NOTE


class TrailRepo:
    def __init__(self, session: Session) -> None:
        self._session = session

    def _rows(self, query: Any) -> list[Any]:
        return list(self._session.connection().execute(query).all())

    # ---- entries -------------------------------------------------------------------------------
    def heads(self) -> dict[str, tuple[int, str]]:
        """Every host's newest (seq, leaf) as its head row says."""
        return {str(h): (int(s), str(leaf)) for h, s, leaf in self._rows(select(_H.c.host, _H.c.seq, _H.c.leaf))}

    def entry_count(self, host: str) -> int:
        found = self._rows(select(func.max(_E.c.seq)).where(_E.c.host == host))
        return int(found[0][0] or 0)

    def hosts(self) -> list[str]:
        return sorted(str(h) for (h,) in self._rows(select(_E.c.host).distinct()))

    def entries(self, host: str, after: int = 0, upto: int | None = None) -> Iterator[tuple[int, str, str]]:
        """(seq, body, leaf) of ``host`` with after < seq <= upto, by seq, a page at a time."""
        while True:
            query = select(_E.c.seq, _E.c.body, _E.c.leaf).where(_E.c.host == host, _E.c.seq > after)
            if upto is not None:
                query = query.where(_E.c.seq <= upto)
            page = self._rows(query.order_by(_E.c.seq).limit(PAGE))
            for seq, body, leaf in page:
                yield int(seq), str(body), str(leaf)
            if len(page) < PAGE:
                return
            after = int(page[-1][0])

    def entries_macs(self, host: str, after: int = 0, upto: int | None = None) -> Iterator[tuple[int, str, str, str]]:
        """(seq, body, leaf, mac) of ``host`` with after < seq <= upto, by seq (mac "" if none)."""
        while True:
            query = select(_E.c.seq, _E.c.body, _E.c.leaf, _E.c.mac).where(_E.c.host == host, _E.c.seq > after)
            if upto is not None:
                query = query.where(_E.c.seq <= upto)
            page = self._rows(query.order_by(_E.c.seq).limit(PAGE))
            for seq, body, leaf, mac in page:
                yield int(seq), str(body), str(leaf), str(mac or "")
            if len(page) < PAGE:
                return
            after = int(page[-1][0])

    def log(
        self, tenant: str | None, since: str | None, host: str | None, limit: int, max_body: int
    ) -> list[tuple[str, int, str | None]]:
        """The newest ``limit`` entries matching, oldest first: (host, seq, body), the body None when
        longer than ``max_body`` (junk: no entry colibri writes is; never loaded).

        Newest by time (``ts``, then host, then seq).  The entries have no index on time or tenant
        (migration 0011: each append paid for them on the daemon's hot paths): each host's entries
        are read newest first along its chain (the primary key), from the first one at or after
        ``since`` (found by halving: a host's times follow its seqs), a tenant's picked out as they
        come, and the hosts' newest merged by time."""
        shown = case((func.length(_E.c.body) <= max_body, _E.c.body), else_=None)
        query = select(_E.c.ts, _E.c.host, _E.c.seq, shown)
        if since is not None:
            query = query.where(_E.c.ts >= since)
        if tenant is not None:
            query = query.where(_E.c.tenant == tenant)
        rows = []
        for name in [host] if host is not None else self._entry_hosts():
            part = query.where(_E.c.host == name)
            if since is not None:
                part = part.where(_E.c.seq >= self._first_at(name, since))
            rows += self._rows(part.order_by(_E.c.seq.desc()).limit(limit))
        rows.sort(key=lambda row: (row[1], -row[2]))  # host A-Z, newest seq first; then by time,
        rows = sorted(rows, key=lambda row: row[0], reverse=True)[:limit]  # newest first (stable)
        return [(str(h), int(seq), None if body is None else str(body)) for _, h, seq, body in reversed(rows)]

    def _entry_hosts(self) -> list[str]:
        """The hosts with entries, each found by one seek on the primary key (no scan)."""
        hosts: list[str] = []
        while True:
            query = select(func.min(_E.c.host))
            if hosts:
                query = query.where(_E.c.host > hosts[-1])
            found = self._session.execute(query).scalar()
            if found is None:
                return hosts
            hosts.append(str(found))

    def _first_at(self, host: str, since: str) -> int:
        """The smallest seq of ``host`` whose time is ``since`` or later (past its last: no entry),
        by halving over its chain: about 20 seeks for a million entries."""
        low, high = self._session.execute(select(func.min(_E.c.seq), func.max(_E.c.seq)).where(_E.c.host == host)).one()
        if low is None:
            return 0
        low, high = int(low), int(high) + 1  # the answer is in [low, high]
        while low < high:
            middle = (low + high) // 2
            row = self._session.execute(
                select(_E.c.seq, _E.c.ts).where(_E.c.host == host, _E.c.seq >= middle).order_by(_E.c.seq).limit(1)
            ).first()
            if row is not None and str(row[1]) < since:  # so is every seq up to it
                low = int(row[0]) + 1
            else:
                high = middle
        return low

    # ---- checkpoints and cosignatures ------------------------------------------------------------
    def latest_checkpoint(self, host: str) -> AuditCheckpoint | None:
        query = orm_select(AuditCheckpoint).where(AuditCheckpoint.host == host, _SANE_NOTE)
        return self._session.exec(query.order_by(col(AuditCheckpoint.size).desc()).limit(1)).first()

    def recent_checkpoints(self, host: str, limit: int) -> list[AuditCheckpoint]:
        """``host``'s ``limit`` largest checkpoint rows, largest first (a row whose note is longer than
        any note is junk, never loaded)."""
        query = orm_select(AuditCheckpoint).where(AuditCheckpoint.host == host, _SANE_NOTE)
        return list(self._session.exec(query.order_by(col(AuditCheckpoint.size).desc()).limit(limit)).all())

    def checkpoints(self, host: str | None = None, max_note: int | None = None) -> list[AuditCheckpoint]:
        """Every checkpoint row (of ``host``), by host and size; with ``max_note``, only rows whose
        note is at most that long (a longer one is no checkpoint colibri signed: never loaded)."""
        query = orm_select(AuditCheckpoint)
        if host is not None:
            query = query.where(AuditCheckpoint.host == host)
        if max_note is not None:
            query = query.where(func.length(_C.c.note) <= max_note)
        return list(self._session.exec(query.order_by(col(AuditCheckpoint.host), col(AuditCheckpoint.size))).all())

    def oversized(self, limit: int) -> dict[str, int]:
        """Per trail table, how many rows hold a text longer than ``limit`` (junk: colibri writes
        none; counted, never read)."""
        found = {
            "audit_checkpoints": select(func.count()).where(func.length(_C.c.note) > limit),
            "audit_cosignatures": select(func.count()).where(func.length(_S.c.signature) > limit),
            "audit_keys": select(func.count()).where(
                (func.length(_K.c.public_key) > limit) | (func.coalesce(func.length(_K.c.endorsement), 0) > limit)
            ),
        }
        return {name: int(self._rows(query)[0][0]) for name, query in found.items()}

    def newest_checkpoints(self, other_than: str) -> list[AuditCheckpoint]:
        """Every other host's newest checkpoint (what a witness cosigns), one row per host."""
        newest = (
            select(_C.c.host, func.max(_C.c.size).label("size"))
            .where(_C.c.host != other_than, _SANE_NOTE)
            .group_by(_C.c.host)
        ).subquery()
        on = and_(col(AuditCheckpoint.host) == newest.c.host, col(AuditCheckpoint.size) == newest.c.size)
        query = orm_select(AuditCheckpoint).join(newest, on)
        return list(self._session.exec(query.order_by(col(AuditCheckpoint.host))).all())

    def add_checkpoint(self, row: AuditCheckpoint) -> None:
        self._session.add(row)
        self._session.flush()

    def cosignatures(self, max_text: int | None = None) -> list[AuditCosignature]:
        query = orm_select(AuditCosignature).order_by(
            col(AuditCosignature.host), col(AuditCosignature.size), col(AuditCosignature.witness)
        )
        if max_text is not None:
            query = query.where(func.length(_S.c.signature) <= max_text)
        return list(self._session.exec(query).all())

    def add_cosignature(self, row: AuditCosignature) -> None:
        self._session.merge(row)
        self._session.flush()

    # ---- keys ----------------------------------------------------------------------------------
    def public_keys(self, max_text: int | None = None) -> list[AuditKey]:
        query = orm_select(AuditKey).order_by(col(AuditKey.host), col(AuditKey.created_at))
        if max_text is not None:
            query = query.where(
                func.length(_K.c.public_key) <= max_text, func.coalesce(func.length(_K.c.endorsement), 0) <= max_text
            )
        return list(self._session.exec(query).all())

    def add_key(self, row: AuditKey) -> None:
        self._session.merge(row)
        self._session.flush()

    def retire_key(self, host: str, key_id: str, when: str) -> None:
        self._session.connection().execute(
            update(_K)
            .where(_K.c.host == host, _K.c.key_id == key_id, _K.c.retired_at.is_(None))
            .values(retired_at=when)
        )
