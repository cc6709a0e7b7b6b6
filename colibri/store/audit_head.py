"""A host's audit head, read without the ORM: what every command reads when it opens the store
(cli/context.py), to sign at its end only if it recorded something; the light read path
(``list-tenants``) must not import SQLModel for it (docs/PERFORMANCE.md)."""

from sqlalchemy import column, select, table
from sqlalchemy.engine import Connection

_HEADS = table("audit_heads", column("host"), column("seq"))


def head_seq(conn: Connection, host: str) -> int:
    """``host``'s newest seq (0 before its first entry)."""
    found = conn.execute(select(_HEADS.c.seq).where(_HEADS.c.host == host)).first()
    return int(found[0]) if found is not None else 0
