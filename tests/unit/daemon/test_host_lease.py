"""Host leases and host loss (issue 11) on a real store, SQLite and PostgreSQL: terms, trust,
renewal, rescue after TTL + grace only, lease extension by liveness."""

from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import Session

from colibri.errors import StateConflict
from colibri.services.hive.rules import AgentRef, Policy, Scope
from colibri.services.hive.service import HiveService
from colibri.store.db import Store
from colibri.store.models import Agent, Host, Task
from tests.unit.daemon.hive_world import Clock, active_tenants

LEASE, GRACE = 30.0, 10.0
ECHO = [{"name": "echo", "version": "1"}]


@pytest.fixture(name="store")
def store_fixture(db_url: str, clock: "Clock") -> Iterator[Store]:
    store = active_tenants(db_url, {"acme": "a", "bolt": "b"})
    store.clock = clock  # the database's clock, which every host's leases are on (review R3)
    yield store
    store.close()


@pytest.fixture(name="clock")
def clock_fixture() -> Clock:
    return Clock()


def _hive(store: Store, clock: Clock, host: str) -> HiveService:
    return HiveService(store, Policy(lease_seconds=60, max_attempts=3), clock=clock, host=host,
                       host_lease=(LEASE, GRACE))  # fmt: skip


def _row(store: Store, model: type, key: object) -> Any:
    with Session(store.engine) as session:
        row = session.get(model, key)
        assert row is not None
        session.expunge(row)
        return row


def _pass(clock: Clock, seconds: float, *renewing: HiveService) -> None:
    """``seconds`` go by while the ``renewing`` daemons renew every third of a lease, as their loop does."""
    end = clock.now + seconds
    while clock.now < end:
        clock.now = min(end, clock.now + LEASE / 3)
        for hive in renewing:
            assert hive.hosts.renew() == (True, [])


def _ref(record: dict[str, object]) -> AgentRef:
    return AgentRef(str(record["key"]), "acme", None, frozenset({"echo"}))


def test_a_daemon_takes_a_new_term_at_each_start(store: Store, clock: Clock) -> None:
    a = _hive(store, clock, "a")
    assert a.hosts.start() == []
    row = _row(store, Host, "a")
    assert isinstance(row, Host) and (row.state, row.lease_term, row.lease_expires_at) == ("up", 1, clock.now + LEASE)
    a.hosts.stop()
    assert _row(store, Host, "a").state == "down"
    again = _hive(store, clock, "a")
    again.hosts.start()
    assert _row(store, Host, "a").lease_term == 2 and again.hosts.lease.term == 2


def test_no_claim_without_a_trusted_lease(store: Store, clock: Clock) -> None:
    a = _hive(store, clock, "a")
    agent, _ = a.register(Scope("tenant", "acme"), "m1", ECHO, None)
    a.submit(Scope("admin"), "echo", {}, tenant="acme")
    assert a.claim(_ref(agent)) is None and a.claim_many([_ref(agent)]) == [None]  # no term taken yet
    a.hosts.start()
    clock.now += LEASE - a.hosts.margin  # the lease is no longer trusted from its end minus the margin
    assert not a.hosts.trusted() and a.claim(_ref(agent)) is None
    assert a.claim_many([_ref(agent)]) == [None]  # the batch the dispatcher uses, too
    assert a.hosts.renew() == (True, [])
    assert a.hosts.trusted() and a.claim_many([_ref(agent)])[0] is not None


def test_a_host_past_its_lease_and_grace_is_lost_its_tasks_requeued_once(store: Store, clock: Clock) -> None:
    a, b = _hive(store, clock, "a"), _hive(store, clock, "b")
    a.hosts.start()
    b.hosts.start()
    agent, _ = a.register(Scope("tenant", "acme"), "m1", ECHO, None)
    assert _row(store, Agent, "acme/m1").host == "a"
    task = a.submit(Scope("admin"), "echo", {}, tenant="acme")
    lease = a.claim(_ref(agent))
    assert lease is not None
    _pass(clock, LEASE + GRACE, b)  # a is frozen: it renews nothing; b does
    assert b.hosts.rescue() == []  # not before TTL + grace have passed
    clock.now += 0.5
    [lost] = b.hosts.rescue()
    assert (lost.host, lost.agents, [r.task_id for r in lost.requeued]) == ("a", ["acme/m1"], [task["id"]])
    assert b.hosts.rescue() == []  # once
    row = _row(store, Task, task["id"])
    assert isinstance(row, Task) and (row.state, row.attempts, row.lease_token) == ("queued", 1, None)
    assert _row(store, Host, "a").state == "lost"
    assert _row(store, Agent, "acme/m1").state == "lost"
    with pytest.raises(StateConflict):  # the late answer from the lost host
        a.finish(Scope("tenant", "acme"), "acme/m1", task["id"], str(lease["lease"]), True, "late", None, 0)
    a.flush([("acme/m1", clock.now)])  # a's pending heartbeats do not bring the lost agent back
    assert _row(store, Agent, "acme/m1").state == "lost"
    assert a.hosts.renew() == (False, ["acme/m1"])  # a comes back: a new term, its agents to re-register
    row = _row(store, Host, "a")
    assert isinstance(row, Host) and (row.state, row.lease_term) == ("up", 2) and a.hosts.trusted()


def test_after_a_database_outage_no_live_host_is_declared_lost(store: Store, clock: Clock) -> None:
    """Nobody could renew for longer than lease + grace (the database was down): the first daemon
    back must not declare the others lost; each gets a whole lease + grace to renew first."""
    a, b = _hive(store, clock, "a"), _hive(store, clock, "b")
    a.hosts.start()
    b.hosts.start()
    _pass(clock, LEASE + GRACE, a, b)
    clock.now += 3 * (LEASE + GRACE)  # the outage: no daemon reaches the store
    assert b.hosts.renew() == (True, [])  # b is back first; a's row says its lease ended long ago
    assert b.hosts.rescue() == []
    _pass(clock, 1.0, b)
    assert b.hosts.rescue() == []  # still within a's grace after b's own lapse
    assert a.hosts.renew() == (True, [])  # a is back too: nothing of it was lost
    _pass(clock, LEASE + GRACE + 1, a, b)
    assert b.hosts.rescue() == [] and _row(store, Host, "a").state == "up"
    _pass(clock, LEASE + GRACE + 1, b)  # now a really stops renewing
    assert [lost.host for lost in b.hosts.rescue()] == ["a"]


def test_a_cleanly_stopped_host_is_not_declared_lost(store: Store, clock: Clock) -> None:
    a, b = _hive(store, clock, "a"), _hive(store, clock, "b")
    a.hosts.start()
    b.hosts.start()
    a.hosts.stop()
    clock.now += LEASE + GRACE + 1
    b.hosts.renew()
    assert b.hosts.rescue() == []


def test_a_live_agents_task_keeps_its_lease_a_silent_ones_does_not(store: Store, clock: Clock) -> None:
    a = _hive(store, clock, "a")
    a.hosts.start()
    agent, _ = a.register(Scope("tenant", "acme"), "m1", ECHO, None)
    a.submit(Scope("admin"), "echo", {}, tenant="acme")
    lease = a.claim(_ref(agent))
    assert lease is not None
    for _ in range(4):  # four half-leases: the heartbeat flush extends it, nothing expires
        clock.now += 31
        assert a.flush([("acme/m1", clock.now)]) == (1, 1)
        assert a.expire_leases() == []
    assert a.flush([("acme/m1", clock.now)]) == (1, 0)  # not rewritten while more than half remains
    clock.now += 61  # silence (the backstop: its daemon stopped sweeping)
    [requeued] = a.expire_leases()
    assert requeued.task_id == lease["id"]


def test_a_daemon_serves_the_sockets_of_its_own_hosts_tenants_only(store: Store, clock: Clock) -> None:
    assert _hive(store, clock, "a").socket_owners() == (["acme"], [])
    assert _hive(store, clock, "b").socket_owners() == (["bolt"], [])


def test_a_lease_from_before_the_daemon_started_is_not_extended_but_given_back(store: Store, clock: Clock) -> None:
    """Killed between a claim's commit and its answer: the agent never got that lease.  Its beats
    after the restart must not keep that lease alive; its first claim gives the task back."""
    a = _hive(store, clock, "a")
    a.hosts.start()
    agent, _ = a.register(Scope("tenant", "acme"), "m1", ECHO, None)
    task = a.submit(Scope("admin"), "echo", {}, tenant="acme")
    assert a.claim(_ref(agent)) is not None  # the answer never left: the daemon died here
    clock.now += 40
    started = clock.now  # the new daemon
    again = _hive(store, clock, "a")
    again.hosts.start()
    assert again.flush([("acme/m1", clock.now)], None, started) == (1, 0)  # not extended
    [given] = again.release_undelivered("acme/m1", started)
    assert given.task_id == task["id"] and given.state == "queued"
    lease = again.claim(_ref(agent))
    assert lease is not None
    clock.now += 31
    assert again.flush([("acme/m1", clock.now)], None, started) == (1, 1)  # its own lease is extended
