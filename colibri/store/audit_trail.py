"""The audit trail's other rows (migration 0007): checkpoints, cosignatures, keys, and the reads
of entries that signing, exporting, proving and ``audit log`` need.

Writes here run in the caller's session (the service commits).  Reads of entries stream in
pages, so an export or a first signature over a million entries never holds them all as rows.
"""

from collections.abc import Iterator
from typing import Any

from sqlalchemy import BigInteger, Column, Text, and_, func, select, update
from sqlmodel import Field, Session, SQLModel, col
from sqlmodel import select as orm_select

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

    def log(self, tenant: str | None, since: str | None, host: str | None, limit: int) -> list[str]:
        """The newest ``limit`` entry bodies matching, oldest first."""
        query = select(_E.c.body)
        if tenant is not None:
            query = query.where(_E.c.tenant == tenant)
        if since is not None:
            query = query.where(_E.c.ts >= since)
        if host is not None:
            query = query.where(_E.c.host == host)
        rows = self._rows(query.order_by(_E.c.ts.desc(), _E.c.host, _E.c.seq.desc()).limit(limit))
        return [str(body) for (body,) in reversed(rows)]

    # ---- checkpoints and cosignatures ------------------------------------------------------------
    def latest_checkpoint(self, host: str) -> AuditCheckpoint | None:
        query = orm_select(AuditCheckpoint).where(AuditCheckpoint.host == host)
        return self._session.exec(query.order_by(col(AuditCheckpoint.size).desc()).limit(1)).first()

    def recent_checkpoints(self, host: str, limit: int) -> list[AuditCheckpoint]:
        """``host``'s ``limit`` largest checkpoint rows, largest first."""
        query = orm_select(AuditCheckpoint).where(AuditCheckpoint.host == host)
        return list(self._session.exec(query.order_by(col(AuditCheckpoint.size).desc()).limit(limit)).all())

    def checkpoints(self, host: str | None = None) -> list[AuditCheckpoint]:
        query = orm_select(AuditCheckpoint)
        if host is not None:
            query = query.where(AuditCheckpoint.host == host)
        return list(self._session.exec(query.order_by(col(AuditCheckpoint.host), col(AuditCheckpoint.size))).all())

    def newest_checkpoints(self, other_than: str) -> list[AuditCheckpoint]:
        """Every other host's newest checkpoint (what a witness cosigns), one row per host."""
        newest = (
            select(_C.c.host, func.max(_C.c.size).label("size")).where(_C.c.host != other_than).group_by(_C.c.host)
        ).subquery()
        on = and_(col(AuditCheckpoint.host) == newest.c.host, col(AuditCheckpoint.size) == newest.c.size)
        query = orm_select(AuditCheckpoint).join(newest, on)
        return list(self._session.exec(query.order_by(col(AuditCheckpoint.host))).all())

    def add_checkpoint(self, row: AuditCheckpoint) -> None:
        self._session.add(row)
        self._session.flush()

    def cosignatures(self) -> list[AuditCosignature]:
        query = orm_select(AuditCosignature).order_by(
            col(AuditCosignature.host), col(AuditCosignature.size), col(AuditCosignature.witness)
        )
        return list(self._session.exec(query).all())

    def add_cosignature(self, row: AuditCosignature) -> None:
        self._session.merge(row)
        self._session.flush()

    # ---- keys ----------------------------------------------------------------------------------
    def public_keys(self) -> list[AuditKey]:
        query = orm_select(AuditKey).order_by(col(AuditKey.host), col(AuditKey.created_at))
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
