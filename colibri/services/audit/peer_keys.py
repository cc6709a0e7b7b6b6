"""The key chain a witness trusts for another host: the keys it pinned, and those a trusted one
endorsed (services/audit/signer.py cosigns with them)."""

import base64
import json
from collections.abc import Iterable

from colibri.audit import keychain, note
from colibri.audit.note import BadNote, PublicKey
from colibri.store.audit_trail import AuditKey


def _peer_keys(host: str, pinned: list[str] | None, rows: Iterable[AuditKey]) -> list[PublicKey]:
    """The keys this witness trusts for ``host``: those it pinned, and those the store holds that
    a trusted one endorsed; on first sight (nothing pinned), every key the store holds for it."""
    return _peer_chain(host, pinned, rows)[0]


def _peer_chain(
    host: str, pinned: list[str] | None, rows: Iterable[AuditKey]
) -> tuple[list[PublicKey], dict[str, str]]:
    """``_peer_keys`` and, per retired key id, when its successor was endorsed (the chain walked
    once, linear in the rows in any order; BadNote when a key endorses two successors)."""
    found: dict[str, PublicKey] = {}
    endorsements: list[keychain.Endorsement] = []
    for row in rows:
        if row.host != host:
            continue
        try:
            key = note.parse_vkey(row.public_key)
        except BadNote:
            continue
        found[key.key_id] = key
        if row.endorsement:
            try:
                value = json.loads(row.endorsement)
                endorsement = keychain.Endorsement(
                    key, str(value["by"]), str(value["time"]), base64.b64decode(value["signature"])
                )
            except (ValueError, KeyError, TypeError):
                continue
            endorsements.append(endorsement)
    roots = list(found.values()) if not pinned else [note.parse_vkey(v) for v in pinned]
    trusted = {(k.name, k.key_id): k for k in roots}
    successors = keychain.follow(trusted, endorsements)
    return list(trusted.values()), {key_id: when for (_, key_id), (_, when) in successors.items()}
