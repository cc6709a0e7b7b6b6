"""Appending audit entries (issue 12): one chain per host, in the caller's transaction."""

import hashlib
import hmac
import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session

from colibri.audit import origin
from colibri.audit.canonical import NotCanonical, canonical
from colibri.audit.entry import GENESIS, MAC_CONTEXT, BadEntry, Event, entry_mac, leaf_hash
from colibri.store.audit import AuditRepo
from colibri.store.db import Store


def chain(store: Store, host: str) -> list[dict[str, object]]:
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT seq, body, leaf FROM audit_entries WHERE host = :h ORDER BY seq"), {"h": host})
        out = []
        for seq, body, leaf in rows:
            assert leaf == leaf_hash(body.encode())
            entry = json.loads(body)
            assert entry["seq"] == seq
            out.append(entry | {"leaf": leaf})
    return out


def test_canonical_is_rfc8785() -> None:
    assert canonical({"b": 1, "a": [True, None, "é"], "\u20ac": 0, "\U0001f600": 1}) == (
        '{"a":[true,null,"é"],"b":1,"€":0,"\U0001f600":1}'.encode()
    )
    with pytest.raises(NotCanonical):
        canonical({"x": 1.5})
    with pytest.raises(NotCanonical):
        canonical({"x": 2**60})


def test_entries_chain_per_host_and_commit_with_the_change(db_url: str) -> None:
    store = Store(db_url)
    try:
        with origin.acting("operator:uid=0", host="osa"):
            for n in range(3):
                with Session(store.engine) as session:
                    AuditRepo(session).append(Event("tenant.register", f"tenant:t{n}", tenant=f"t{n}"))
                    session.commit()
        with origin.acting("daemon", host="domedog"), Session(store.engine) as session:
            claims = [Event("task.claim", "task:1"), Event("task.claim", "task:2")]
            assert AuditRepo(session).append_many(claims) == [1, 2]
            session.commit()
        with origin.acting("operator:uid=0", host="osa"), Session(store.engine) as session:
            AuditRepo(session).append(Event("tenant.remove", "tenant:t0", tenant="t0"))
            session.rollback()  # the change failed: its entry is gone with it
        osa = chain(store, "osa")
        assert [e["seq"] for e in osa] == [1, 2, 3]
        assert osa[0]["prev"] == GENESIS
        assert [e["prev"] for e in osa[1:]] == [e["leaf"] for e in osa[:-1]]
        assert {e["actor"] for e in osa} == {"operator:uid=0"} and osa[2]["tenant"] == "t2"
        assert [e["seq"] for e in chain(store, "domedog")] == [1, 2]
    finally:
        store.close()


def test_concurrent_appends_of_one_host_never_fork_the_chain(db_url: str) -> None:
    store = Store(db_url)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with origin.acting(f"agent:t/{n}", host="osa"):
                for _ in range(10):
                    with Session(store.engine) as session:
                        AuditRepo(session).append(Event("task.finish", f"task:{n}"))
                        session.commit()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        entries = chain(store, "osa")
        assert [e["seq"] for e in entries] == list(range(1, 41))
        assert [e["prev"] for e in entries[1:]] == [e["leaf"] for e in entries[:-1]]
    finally:
        store.close()


def test_a_malformed_event_is_refused_before_anything_is_written(db_url: str) -> None:
    store = Store(db_url)
    try:
        with Session(store.engine) as session:
            with pytest.raises(BadEntry):
                AuditRepo(session).append(Event("Tenant Register", "tenant:x"))
            with pytest.raises(BadEntry):
                AuditRepo(session).append(Event("tenant.register", "tenant:x", outcome="maybe"))
            with pytest.raises(BadEntry):  # ``$`` matched before a final newline: the whole name must match
                AuditRepo(session).append(Event("tenant.register\n", "tenant:x"))
            AuditRepo(session).append(Event("tenant.register", "tenant:x"))  # a good pair remembered as good...
            for refused in (Event("tenant.register", "tenant:x", outcome="maybe"), Event("tenant.register", "")):
                with pytest.raises(BadEntry):  # ...and what is wrong beside it still refused
                    AuditRepo(session).append(refused)
            session.rollback()
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM audit_entries")).scalar() == 0
    finally:
        store.close()


def test_the_fast_canonical_path_is_byte_for_byte_rfc8785() -> None:
    """canonical() takes the stdlib's sorted compact JSON when every key is in the BMP; rfc8785 is the
    reference: the two must agree on every value an entry can hold (escapes, non-ASCII, nesting)."""
    import random

    import rfc8785

    rng = random.Random(8785)
    alphabet = ["a", "Z", "é", "\u20ac", "\u2028", "\x00", "\x1f", "\x7f", '"', "\\", "\n", "\ud7ff", "\ue000"]
    alphabet += ["\uffff", "\U0001f600", "\U00010000", " ", "/"]

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 6)))

    def value(depth: int = 0) -> object:
        kind = rng.randrange(7 if depth < 3 else 4)
        if kind == 0:
            return rng.choice([None, True, False])
        if kind == 1:
            return rng.randrange(-(2**53) + 1, 2**53)
        if kind in (2, 3):
            return text()
        if kind in (4, 5):
            return {text(): value(depth + 1) for _ in range(rng.randrange(4))}
        return [value(depth + 1) for _ in range(rng.randrange(4))]

    for _ in range(3000):
        sample = {text(): value() for _ in range(rng.randrange(1, 5))}
        assert canonical(sample) == rfc8785.dumps(sample), sample


def test_two_writers_interleaved_with_rollbacks_keep_one_chain(db_url: str) -> None:
    """Each store (a process's engine) remembers the head it wrote last and advances the row only
    where it still holds that head: after the other writer appended, or after its own transaction
    rolled back, the remembered head is stale and the append takes the row's."""
    one, two = Store(db_url), Store(db_url)
    try:
        with origin.acting("operator:uid=0", host="osa"):
            for n, store, keep in [(0, one, True), (1, one, True), (2, two, True), (3, one, False),
                                   (4, one, True), (5, two, False), (6, two, True), (7, one, True)]:  # fmt: skip
                with Session(store.engine) as session:
                    AuditRepo(session).append(Event("tenant.register", f"tenant:t{n}", tenant=f"t{n}"))
                    session.commit() if keep else session.rollback()
        entries = chain(one, "osa")
        assert [e["subject"] for e in entries] == [f"tenant:t{n}" for n in (0, 1, 2, 4, 6, 7)]
        assert [e["seq"] for e in entries] == list(range(1, 7))
        assert entries[0]["prev"] == GENESIS
        assert [e["prev"] for e in entries[1:]] == [e["leaf"] for e in entries[:-1]]
        with one.engine.connect() as conn:
            head = conn.execute(text("SELECT seq, leaf FROM audit_heads WHERE host = 'osa'")).one()
        assert tuple(head) == (6, entries[-1]["leaf"])
    finally:
        one.close()
        two.close()


def test_an_append_after_this_process_s_own_takes_one_statement_on_the_head(tmp_path: Path) -> None:
    """The daemon's hot paths: a host's next append advances the head it remembers in one UPDATE
    (no ``UPDATE ... RETURNING`` to take it first, no second UPDATE to set its leaf)."""
    store = Store(f"sqlite:///{tmp_path / 'colibri.db'}")
    seen: list[str] = []
    try:
        with origin.acting("daemon", host="osa"):
            for n in range(3):
                with Session(store.engine) as session:
                    raw = session.connection().connection.driver_connection
                    raw.set_trace_callback(seen.append)
                    AuditRepo(session).append(Event("task.claim", f"task:{n}"))
                    raw.set_trace_callback(None)
                    session.commit()
        kinds = [_kind(statement) for statement in seen if "audit_heads" in statement]
        # the store's first append takes the head (made first: the host's first entry) and sets
        # its leaf; the next two swap the remembered head for the new one in one statement each
        assert kinds == ["take", "start", "take", "advance", "swap", "swap"]
        assert [e["seq"] for e in chain(store, "osa")] == [1, 2, 3]
    finally:
        store.close()


def _kind(statement: str) -> str:
    if "RETURNING" in statement:
        return "take"
    if statement.startswith("INSERT"):
        return "start"
    return "swap" if " AND seq = " in statement else "advance"


def test_entry_mac_is_hmac_sha256_of_context_and_body_under_each_key() -> None:
    """An entry's MAC is HMAC-SHA256 over the context line and the body, under each key."""
    bodies = [b"", b'{"seq":1}', "ü".encode() * 700]
    keys = [bytes([n]) * 32 for n in range(5)]
    for key in keys:
        for encoded in bodies:
            want = hmac.new(key, MAC_CONTEXT + encoded, hashlib.sha256).hexdigest()
            assert entry_mac(key, encoded) == want
