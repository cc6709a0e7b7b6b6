"""An entry's bytes (audit.entry.body: canonical's fast path, the stdlib's C encoder made once) are
byte for byte RFC 8785 (the rfc8785 package) of the same value, for every shape an entry takes: any
text in every string field, a null or a text tenant, any seq, and any detail an entry may hold."""

import json

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colibri.audit import entry
from colibri.audit.canonical import NotCanonical
from colibri.audit.entry import Event, body

# any code point but a lone surrogate (which has no UTF-8, so no RFC 8785: refused, tested below),
# with the characters RFC 8785 escapes and those it must not escape drawn often
AWKWARD = st.sampled_from(['"', "\\", "/", "\x00", "\x1f", "\x7f", "\b\f\n\r\t", "\u2028", "\ufeff", "\U0001f600", "é"])
TEXT = st.lists(st.one_of(st.characters(blacklist_categories=("Cs",)), AWKWARD), max_size=12).map("".join)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), TEXT)
DETAIL = st.dictionaries(
    TEXT,
    st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
                 max_leaves=12),
    max_size=6,
)  # fmt: skip
ACTION = st.from_regex(entry.ACTION, fullmatch=True).filter(lambda a: len(a) <= 64)
SUBJECT = TEXT.filter(lambda s: 0 < len(s) <= entry.MAX_SUBJECT)
TENANT = st.one_of(st.none(), TEXT.filter(lambda s: 0 < len(s) <= 64))


def generic(seq: int, ts: str, host: str, actor: str, event: Event, prev: str) -> bytes:
    value = {
        "v": entry.VERSION, "seq": seq, "ts": ts, "host": host, "actor": (event.actor or actor)[:160],
        "action": event.action, "subject": event.subject, "outcome": event.outcome, "tenant": event.tenant,
        "detail": dict(event.detail), "prev": prev,
    }  # fmt: skip
    return rfc8785.dumps(value)


def depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seq=st.integers(0, 2**53 - 1), ts=TEXT, host=TEXT, actor=TEXT.filter(bool), event_actor=st.one_of(st.none(), TEXT),
    action=ACTION, subject=SUBJECT, outcome=st.sampled_from(entry.OUTCOMES), tenant=TENANT, detail=DETAIL, prev=TEXT,
)  # fmt: skip
def test_an_entrys_bytes_are_rfc8785s(
    seq: int, ts: str, host: str, actor: str, event_actor: str | None, action: str, subject: str, outcome: str,
    tenant: str | None, detail: dict[str, object], prev: str,
) -> None:  # fmt: skip
    event = Event(action, subject, outcome, tenant, detail, event_actor)
    want = generic(seq, ts, host, actor, event, prev)
    if len(want) > entry.MAX_DETAIL_BYTES + 1024:
        return  # refused either way (BadEntry), tested below
    try:
        found = body(seq, ts, host, actor, event, prev)
    except NotCanonical:  # nested past an entry's depth (8): rfc8785 has no such limit
        assert depth(detail) >= 8
        return
    assert found == want
    assert json.loads(found)["seq"] == seq


def test_the_shapes_of_real_entries_are_rfc8785s() -> None:
    from colibri.store.audit_hooks import event as hook_event

    for made in (
        hook_event("task.claim", "task:42", tenant="acme", actor="agent:acme/a1", attempt=1, lane=None),
        hook_event("secrets.provision", "tenant:acme", tenant="acme", keys=["A", "B"], digest="ab" * 32, changed=True),
        hook_event("host.add", "host:osa", address="10.0.0.1", error='bad "quote" \n and \x07 bell'),
        Event("audit.key_create", "host:osa"),
    ):
        args = (7, "2026-12-01T17:40:00.123456Z", "osa", "operator:uid=0", made, "ab" * 32)
        assert body(*args) == generic(*args)


def test_what_rfc8785_refuses_is_refused() -> None:
    for bad in (Event("tenant.register", "tenant:\ud800"), Event("tenant.register", "t:x", detail={"x": 1.5})):
        with pytest.raises((NotCanonical, rfc8785.CanonicalizationError)):
            body(1, "2026-12-01T17:40:00.123456Z", "osa", "operator:uid=0", bad, "0" * 64)
    with pytest.raises(entry.BadEntry):
        body(1, "t", "osa", "operator:uid=0", Event("tenant.register", "t:x", detail={"x": "y" * 6000}), "0" * 64)
