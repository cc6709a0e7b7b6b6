"""``audit log``, ``audit prove``, ``audit keys``: reading the trail (no key needed, except to know
which key is this host's own)."""

import base64
import json
from datetime import UTC, datetime
from typing import Any

from colibri.audit import merkle, note
from colibri.audit.entry import leaf_hash
from colibri.errors import AuditError, InvalidInput, NotFound
from colibri.store.audit import timestamp
from colibri.store.audit_trail import TrailRepo
from colibri.store.db import Store

MAX_LIMIT = 100_000
PROOF_FORMAT = "colibri-audit-proof"


def parse_since(text: str) -> str:
    """``--since``: an ISO 8601 time (UTC if no zone) or a date; as an entry's ``ts`` text."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"--since {text[:40]!r}: not a time like 2026-12-01T17:00:00Z or 2026-12-01") from None
    return timestamp(when if when.tzinfo else when.replace(tzinfo=UTC))


def log(store: Store, tenant: str | None, since: str | None, host: str | None, limit: int) -> list[dict[str, Any]]:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"--limit must be between 1 and {MAX_LIMIT}")
    with store.session() as session:
        bodies = TrailRepo(session).log(tenant, since, host, limit)
    entries = []
    for body in bodies:
        value = json.loads(body)
        value["leaf"] = leaf_hash(body.encode())
        entries.append(value)
    return entries


def prove(store: Store, host: str, seq: int) -> dict[str, Any]:
    """An inclusion proof of entry ``host#seq`` against the host's newest checkpoint."""
    with store.session() as session:
        repo = TrailRepo(session)
        latest = repo.latest_checkpoint(host)
        if latest is None:
            raise NotFound(f"host {host} has no signed checkpoint yet")
        if not 1 <= seq <= latest.size:
            raise NotFound(
                f"entry {host}#{seq} is not covered by host {host}'s newest checkpoint "
                f"(size {latest.size}); the next one is signed within seconds"
            )
        leaves: list[bytes] = []
        body = ""
        for found, text, _stored in repo.entries(host, upto=latest.size):
            if found != len(leaves) + 1:
                raise AuditError(f"entry {host}#{len(leaves) + 1} is missing from the store")
            leaves.append(merkle.leaf(text.encode()))
            if found == seq:
                body = text
    if len(leaves) != latest.size:
        raise AuditError(
            f"host {host}: the store holds {len(leaves)} of the {latest.size} entries its checkpoint covers"
        )
    if merkle.root(leaves).hex() != latest.root:
        raise AuditError(f"host {host}: the store's entries do not hash to its newest checkpoint (tampered?)")
    proof = merkle.inclusion_proof(leaves, seq - 1)
    return {
        "format": PROOF_FORMAT,
        "version": 1,
        "host": host,
        "seq": seq,
        "entry": body,
        "size": latest.size,
        "proof": [base64.b64encode(h).decode() for h in proof],
        "checkpoint": latest.note,
    }


def keys(store: Store, own: note.PublicKey | None) -> list[dict[str, Any]]:
    with store.session() as session:
        rows = TrailRepo(session).public_keys()
    return [
        {
            "host": row.host,
            "key_id": row.key_id,
            "public_key": row.public_key,
            "created_at": row.created_at,
            "retired_at": row.retired_at,
            "endorsed_by": json.loads(row.endorsement)["by"] if row.endorsement else None,
            "this_host": own is not None and own.vkey == row.public_key,
        }
        for row in rows
    ]
