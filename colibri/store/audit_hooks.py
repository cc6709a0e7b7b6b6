"""Recording a state change's audit entry beside the change, in the same session (issue 12).

``record`` is what a repository or a service calls right where it makes a change: the entry goes
in the caller's transaction (store/audit.py), so the change and its entry commit together, and a
failed append (the audit table refusing the write) fails the change: fail closed.

Details are names, states, counts and digests, never a secret value: ``shown`` bounds every
value (a tenant's text, an error message) to a short string, so no entry can grow past the
entry's size limit whatever a tenant or a remote peer sent.
"""

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlmodel import Session

from colibri.audit.entry import MAX_DETAIL_BYTES, Event
from colibri.store.audit import AuditRepo

MAX_SHOWN = 200  # characters of one detail value
MAX_FIELDS = 12  # field values named in one entry (the rest by name only)


def record(
    session: Session,
    action: str,
    subject: str,
    *,
    tenant: str | None = None,
    outcome: str = "ok",
    actor: str | None = None,
    fields: Mapping[str, Any] | None = None,
    **detail: Any,
) -> int:
    """Append one entry for a change made in ``session`` (``detail`` and ``fields`` its details); its seq."""
    found = bounded({k: shown(v) for k, v in {**(fields or {}), **detail}.items()})
    return AuditRepo(session).append(Event(action, subject, outcome, tenant, found, actor))


def event(
    action: str,
    subject: str,
    *,
    tenant: str | None = None,
    outcome: str = "ok",
    actor: str | None = None,
    **detail: Any,
) -> Event:
    """An entry to append later with others (``AuditRepo.append_many``: one head update a batch)."""
    return Event(action, subject, outcome, tenant, bounded({k: shown(v) for k, v in detail.items()}), actor)


def shown(value: Any) -> Any:
    """A detail value as an audit entry may hold it: small JSON scalars and lists of them, text
    cut to MAX_SHOWN characters, a time as ISO 8601, anything else by its type's name."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**53 else str(value)
    if isinstance(value, float):
        return f"{value:.3f}"  # canonical JSON holds no floats (audit/canonical.py)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):  # a lone surrogate (a peer's text) has no UTF-8: escaped, never refused
        return value[:MAX_SHOWN].encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, (list, tuple)):
        return [shown(item) for item in list(value)[:32]]
    if isinstance(value, Mapping):
        return {str(k)[:64]: shown(v) for k, v in list(value.items())[:MAX_FIELDS]}
    return type(value).__name__


def bounded(detail: dict[str, Any]) -> dict[str, Any]:
    """``detail``, or, when it would pass the entry's size limit, its names only: what a peer
    sent (a long list of key names, say) can make an entry shorter, never make a change fail."""
    if len(json.dumps(detail, ensure_ascii=False).encode()) <= MAX_DETAIL_BYTES - 512:
        return detail
    return {"truncated": True, "fields": [str(name)[:64] for name in list(detail)[:32]]}


def agent_actor(key: str) -> str:
    """The actor of an agent's request: ``agent:<tenant>/<id>`` or ``lane:<lane>/<id>`` (its key,
    made of the socket's owner and the id it registered with)."""
    return key if key.startswith("lane:") else f"agent:{key}"
