"""``audit log``, ``audit prove``, ``audit keys``: reading the trail (no key needed, except to know
which key is this host's own)."""

import base64
import json
from datetime import UTC, datetime
from typing import Any

from colibri.audit import merkle, note
from colibri.audit.entry import MAX_DETAIL_BYTES, leaf_hash
from colibri.errors import AuditError, InvalidInput, NotFound
from colibri.store.audit import timestamp
from colibri.store.audit_trail import AuditCheckpoint, TrailRepo
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
        rows = TrailRepo(session).log(tenant, since, host, limit, MAX_BODY)
    entries = []
    for found_host, seq, body in rows:
        value = _entry(body)
        if value is None:  # edited in the store: shown as what it is, never as an entry (or a traceback)
            value = dict.fromkeys(SHOWN) | {"host": found_host, "seq": seq, "outcome": "junk"}
            value["junk"] = "not an audit entry (edited in the store?)"
        else:
            value["leaf"] = leaf_hash(body.encode()) if body is not None else None
        entries.append(value)
    return entries


MAX_BODY = MAX_DETAIL_BYTES + 1024  # the longest entry colibri writes (audit.entry.body)


def _entry(body: str | None) -> dict[str, Any] | None:
    if body is None:
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) and all(name in value for name in SHOWN) else None


SHOWN = ("ts", "host", "seq", "actor", "action", "subject", "outcome")
"""What ``audit log`` shows of an entry: a body without any of them is not one."""


def prove(store: Store, host: str, seq: int) -> dict[str, Any]:
    """An inclusion proof of entry ``host#seq`` against the host's newest checkpoint."""
    with store.session() as session:
        repo = TrailRepo(session)
        latest = _newest_sound(repo, host)
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


def _newest_sound(repo: TrailRepo, host: str) -> "AuditCheckpoint | None":
    """``host``'s largest checkpoint row whose note parses and says what its columns say (a junk
    row under its name, however large its size, is passed over; verify judges the signature)."""
    for row in repo.recent_checkpoints(host, 64):
        if len(row.note) > note.MAX_NOTE:
            continue
        try:
            checkpoint, _ = note.parse(row.note)
        except note.BadNote:
            continue
        if (checkpoint.host, checkpoint.size, checkpoint.root.hex()) == (row.host, row.size, row.root):
            return row
    return None


def keys(store: Store, own: note.PublicKey | None) -> list[dict[str, Any]]:
    """Every key row; ``problem`` names what is wrong with one colibri did not write (a key that does
    not parse, or whose id or host is not its row's, an endorsement that is not one): such a row is
    shown, never given as a key to verify with (``--verifier-keys`` prints only rows without one)."""
    with store.session() as session:
        rows = TrailRepo(session).public_keys(max_text=MAX_KEY_TEXT)
    found = []
    for row in rows:
        problem: str | None = None
        try:
            key = note.parse_vkey(row.public_key)
            if key.key_id != row.key_id or key.host != row.host:
                problem = "its key id or host is not its key's"
        except note.BadNote as exc:
            problem = f"not a public key ({exc})"
        endorsed_by = _endorser(row.endorsement)
        if row.endorsement and endorsed_by is None:
            problem = problem or "its endorsement is not one colibri writes"
        found.append(
            {
                "host": row.host,
                "key_id": row.key_id,
                "public_key": row.public_key,
                "created_at": row.created_at,
                "retired_at": row.retired_at,
                "endorsed_by": endorsed_by,
                "this_host": own is not None and own.vkey == row.public_key,
                "problem": problem,
            }
        )
    return found


MAX_KEY_TEXT = 8192


def _endorser(text: str | None) -> str | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    by = value.get("by") if isinstance(value, dict) else None
    return by if isinstance(by, str) and len(by) <= 64 else None
