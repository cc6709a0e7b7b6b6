"""An audit entry: its fields, its canonical body, its leaf hash (RFC 6962: SHA-256(0x00 || body)).

The body is the entry; everything the store keeps beside it (tenant, action, leaf) is an index
derived from it.  ``prev`` is the leaf of the host's previous entry (64 zeros for the first), so
an edit, a deletion, an insertion or a reordering anywhere breaks the chain at that point.
"""

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from colibri.audit.canonical import MAX_INT, canonical, quote, stdlib_text

VERSION = 1
GENESIS = "0" * 64
ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){1,3}$")  # e.g. tenant.register, task.claim
OUTCOMES = ("ok", "failed", "refused")
MAX_SUBJECT = 255
MAX_DETAIL_BYTES = 4096


class BadEntry(ValueError):
    """An entry colibri itself must never write (a programming error, not a tenant's input)."""


@dataclass(frozen=True)
class Event:
    """What a service records: ``action`` (``noun.verb``), ``subject`` (``tenant:acme``,
    ``task:42``, ``host:osa``...), ``outcome`` and a small ``detail`` (names, digests, counts:
    never a secret value)."""

    action: str
    subject: str
    outcome: str = "ok"
    tenant: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    actor: str | None = None
    """Who acted, when it is not the origin's actor: a batch of one daemon turn (claims, results)
    names each entry's own agent.  None: the origin's (audit.origin)."""

    def check(self) -> None:
        if not ACTION.fullmatch(self.action) or len(self.action) > 64:  # whole: ``$`` passes a final newline
            raise BadEntry(f"bad audit action {self.action!r}")
        if self.outcome not in OUTCOMES:
            raise BadEntry(f"bad audit outcome {self.outcome!r}")
        if not self.subject or len(self.subject) > MAX_SUBJECT:
            raise BadEntry("audit subject empty or too long")
        if self.tenant is not None and (not self.tenant or len(self.tenant) > 64):
            raise BadEntry("bad audit tenant")


def body(seq: int, ts: str, host: str, actor: str, event: Event, prev: str) -> bytes:
    """The canonical bytes of one entry (raises BadEntry / NotCanonical).

    An entry's own fields are written in their RFC 8785 order by hand, each string by the stdlib's
    C encoder, and the detail by canonical's fast path: on the daemon's hot paths this is what an
    append costs most.  Anything that path cannot say (a key beyond the BMP, a lone surrogate, a
    field of another type) goes through ``canonical`` whole (tests/unit/audit/test_entry_bytes.py:
    byte for byte RFC 8785 either way)."""
    event.check()
    who = (event.actor or actor)[:160]
    detail = dict(event.detail)
    encoded = None
    if _plain(seq, ts, host, who, event, prev) and (text := stdlib_text(detail, 1)) is not None:
        tenant = "null" if event.tenant is None else quote(event.tenant)
        try:
            encoded = (
                f'{{"action":{quote(event.action)},"actor":{quote(who)},"detail":{text},"host":{quote(host)},'
                f'"outcome":{quote(event.outcome)},"prev":{quote(prev)},"seq":{seq},'
                f'"subject":{quote(event.subject)},"tenant":{tenant},"ts":{quote(ts)},"v":{VERSION}}}'
            ).encode()
        except UnicodeEncodeError:  # a lone surrogate: canonical refuses it as rfc8785 does
            encoded = None
    if encoded is None:
        value = {
            "v": VERSION,
            "seq": seq,
            "ts": ts,
            "host": host,
            "actor": who,
            "action": event.action,
            "subject": event.subject,
            "outcome": event.outcome,
            "tenant": event.tenant,
            "detail": detail,
            "prev": prev,
        }
        encoded = canonical(value)
    if len(encoded) > MAX_DETAIL_BYTES + 1024:
        raise BadEntry(f"audit entry of {len(encoded)} bytes: detail too large")
    return encoded


def _plain(seq: int, ts: str, host: str, who: str, event: Event, prev: str) -> bool:
    """Whether the entry's own fields are all of the types ``body`` writes by hand (else ``canonical``)."""
    return (
        type(seq) is int
        and -MAX_INT <= seq <= MAX_INT
        and type(ts) is str
        and type(host) is str
        and type(who) is str
        and type(prev) is str
        and type(event.subject) is str
        and (event.tenant is None or type(event.tenant) is str)
    )


def leaf_hash(encoded: bytes) -> str:
    """RFC 6962 leaf hash of an entry body, hex."""
    return hashlib.sha256(b"\x00" + encoded).hexdigest()


MAC_CONTEXT = b"colibri-audit-entry-mac\n"


def entry_mac(key: bytes, encoded: bytes) -> str:
    """The HMAC-SHA256 of an entry body under its host's entry key, hex: what its signer checks
    before signing an entry as its own (an entry another host wrote under its name has none)."""
    return hmac.digest(key, MAC_CONTEXT + encoded, "sha256").hex()  # one call into OpenSSL's HMAC
