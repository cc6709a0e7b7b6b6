"""Folding a host's entries into the compact range its signer (or a witness) signed before: each
entry checked against the tree it extends (its chain, its own host and seq, and for the host's own
signer its MAC under the host's entry key) before it is signed over."""

import hashlib
import hmac
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from colibri.audit.entry import entry_mac, leaf_hash
from colibri.audit.merkle import CompactRange
from colibri.errors import AuditError
from colibri.store.audit import timestamp
from colibri.store.audit_trail import TrailRepo

log = logging.getLogger("colibri.audit")


class _Partial(Exception):
    """A fold not finished in this run (a cosigner's step): the peer's memory with how far it got."""

    def __init__(self, peer: dict[str, Any]) -> None:
        super().__init__("partial")
        self.peer = peer


def _after(previous: str | None) -> str:
    """Now, or just after ``previous`` if the clock went back (checkpoint times only increase)."""
    now = timestamp()
    if previous is None or now > previous:
        return now
    later = datetime.strptime(previous, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) + timedelta(microseconds=1)
    return timestamp(later)


def _range(memory: dict[str, Any] | None) -> tuple[CompactRange, str, str | None]:
    if not memory:
        return CompactRange(), "0" * 64, None
    hashes = [bytes.fromhex(h) for h in memory["range"]]
    return CompactRange(int(memory["size"]), hashes), str(memory["leaf"]), memory.get("time")


def _remembered(tree: CompactRange, leaf: str, time: str) -> dict[str, Any]:
    return {
        "size": tree.size,
        "range": [h.hex() for h in tree.hashes],
        "root": tree.root().hex(),
        "leaf": leaf,
        "time": time,
    }


def _fold(repo: TrailRepo, host: str, tree: CompactRange, leaf: str, upto: int,
          signed: tuple[int, str] | None = None, mac_key: bytes | None = None) -> str:  # fmt: skip
    """Fold ``host``'s entries after ``tree.size`` up to ``upto`` into ``tree``; the last leaf.
    The entry at ``tree.size`` must still be the one signed before (``leaf``): a store whose tail
    was deleted and written again to the same length is not signed over.  ``signed``: a (size,
    root) passed on the way must be met (a signer without its memory checks its last checkpoint).
    ``mac_key``: the host's own entry key (its signer): every entry must carry its MAC."""
    if tree.size:
        there = [leaf_hash(body.encode()) for _, body, _ in repo.entries(host, after=tree.size - 1, upto=tree.size)]
        if there != [leaf]:
            state = "missing" if not there else "not the one signed before: the store's tail was rewritten"
            raise AuditError(f"host {host}: entry {host}#{tree.size} is {state}")
    token = f',"host":"{host}","outcome":"'
    rows: Iterable[tuple[int, str, str, str]] = (
        repo.entries_macs(host, after=tree.size, upto=upto)
        if mac_key is not None
        else ((seq, body, stored, "") for seq, body, stored in repo.entries(host, after=tree.size, upto=upto))
    )
    for seq, body, stored, mac in rows:
        if seq != tree.size + 1:
            raise AuditError(f"host {host}: entry {host}#{tree.size + 1} is missing from the store")
        raw = body.encode()
        digest = hashlib.sha256(b"\x00" + raw).digest()  # its leaf hash (entry.leaf_hash), computed once
        found = digest.hex()
        at = body.rfind(',"prev":"')  # the top-level prev: canonical keys are sorted, detail comes first
        if found != stored or body[at + 9 : at + 73] != leaf:
            raise AuditError(f"host {host}: entry {host}#{seq} does not chain to the tree signed before it")
        # the body says it is this host's entry at this seq (the row's columns are not the entry)
        if not (body.startswith(f'","seq":{seq},', at + 73) and body.startswith(token, body.rfind(',"host":"', 0, at))):
            raise AuditError(f"host {host}: entry {host}#{seq} says it is another host's or seq's entry")
        if mac_key is not None and not hmac.compare_digest(mac, entry_mac(mac_key, raw)):
            reason = (
                f"entry {host}#{seq} was not written by this host (it lacks this host's MAC): written "
                "under its name with another host's database credentials, or edited"
            )
            log.error("audit: refusing to sign: %s", reason)
            raise AuditError(f"refusing to sign a checkpoint: {reason}")
        tree.append(digest)
        leaf = found
        if signed is not None and tree.size == signed[0] and tree.root().hex() != signed[1]:
            raise AuditError(f"host {host}: its entries 1..{signed[0]} no longer hash to the checkpoint it signed")
    if tree.size != upto:
        raise AuditError(f"host {host}: the store holds {tree.size} entries, {upto} expected")
    return leaf
