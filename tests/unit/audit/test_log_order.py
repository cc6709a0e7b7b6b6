"""``audit log`` without a time or tenant index (migration 0011): each host's chain read newest
first and merged by time gives what one sort of every entry by (ts desc, host, seq desc) gives, with
``--since``, ``--host``, ``--tenant`` and any ``--limit``; ``--since`` is found by halving over a
chain, gaps in it included."""

import random
from collections.abc import Iterator

import pytest
from sqlalchemy import inspect, text
from sqlmodel import Session

from colibri.audit import origin
from colibri.audit.entry import Event
from colibri.store import audit
from colibri.store.audit import AuditRepo
from colibri.store.audit_trail import TrailRepo
from colibri.store.db import Store

HOSTS = ("osa", "domedog", "kea")


@pytest.fixture
def store(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """120 entries over three hosts, interleaved, their times rising with ties between hosts."""
    made = Store(db_url)
    pick = random.Random(12)
    clock = iter(f"2026-12-02T10:{n // 60:02d}:{n % 60:02d}.000000Z" for n in range(10_000))
    now = next(clock)
    for n in range(120):
        if pick.random() < 0.7:  # else the same time as the last entry: a tie between hosts
            now = next(clock)
        monkeypatch.setattr(audit, "timestamp", lambda when=None, now=now: now)
        host = pick.choice(HOSTS)
        with origin.acting("daemon", host=host), Session(made.engine) as session:
            AuditRepo(session).append(Event("task.submit", f"task:{n}", tenant=pick.choice(["acme", "bolt", None])))
            session.commit()
    monkeypatch.undo()
    yield made
    made.close()


def every(store: Store) -> list[tuple[str, str, int, str | None]]:
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT ts, host, seq, tenant FROM audit_entries")).all()
    rows = sorted(rows, key=lambda r: (r[1], -r[2]))
    return [tuple(r) for r in sorted(rows, key=lambda r: r[0], reverse=True)]  # type: ignore[misc]


def logged(store: Store, tenant: str | None, since: str | None, host: str | None, limit: int) -> list[tuple[str, int]]:
    with store.session() as session:
        return [(h, seq) for h, seq, _ in TrailRepo(session).log(tenant, since, host, limit, 10_000)]


def test_the_newest_by_time_across_hosts_as_one_sort_would_give(store: Store) -> None:
    rows = every(store)
    times = sorted({r[0] for r in rows})
    pick = random.Random(3)
    cases = [(None, None, None, 120), (None, None, None, 7)]
    for _ in range(60):
        cases.append((
            pick.choice([None, "acme", "bolt"]), pick.choice([None, *times, "2026-12-02T09:00:00.000000Z", "2027"]),
            pick.choice([None, *HOSTS, "nobody"]), pick.choice([1, 5, 17, 200]),
        ))  # fmt: skip
    for tenant, since, host, limit in cases:
        want = [
            (h, seq)
            for ts, h, seq, t in rows
            if (tenant is None or t == tenant) and (since is None or ts >= since) and (host is None or h == host)
        ][:limit]
        assert logged(store, tenant, since, host, limit) == list(reversed(want)), (tenant, since, host, limit)


def test_since_is_found_over_a_chain_with_gaps(store: Store) -> None:
    with store.engine.begin() as conn:  # entries gone from the middle of each chain (the verifier says so)
        conn.execute(text("DELETE FROM audit_entries WHERE seq % 3 = 1 AND seq > 2"))
    rows = every(store)
    for since in sorted({r[0] for r in rows})[::5]:
        for host in HOSTS:
            want = [(h, seq) for ts, h, seq, _ in rows if ts >= since and h == host][:50]
            assert logged(store, None, since, host, 50) == list(reversed(want))


def test_the_entries_have_no_index_beside_their_key(store: Store) -> None:
    assert inspect(store.engine).get_indexes("audit_entries") == []
