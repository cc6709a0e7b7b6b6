"""A tenant moved to another host (review R11): its mother registers on the new host at once,
the old host's daemon can no longer change the row the new host took over, and an agent on a
host the tenant does not live on still gets nothing."""

import pytest
from sqlmodel import Session

from colibri.errors import Conflict, PermissionDenied
from colibri.services.hive.rules import AgentRef, Scope
from colibri.services.lifecycle.placement import Placement
from colibri.store.db import Store
from colibri.store.models import Agent, Task, Tenant
from tests.unit.daemon.hive_world import Clock
from tests.unit.daemon.test_host_lease import (  # noqa: F401 (fixtures)
    ECHO,
    _hive,
    _row,
    clock_fixture,
    store_fixture,
)


def _destroyed(store: Store, tenant_id: str) -> None:
    """What move-tenant's destroy leaves on the old host: the tenant registered, no jail."""
    with Session(store.engine) as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        tenant.status, tenant.jail_root = "registered", None
        session.add(tenant)
        session.commit()


def test_the_move_ends_the_old_hosts_agents_and_gives_their_tasks_back(store: Store, clock: Clock) -> None:
    a, b = _hive(store, clock, "a"), _hive(store, clock, "b")
    a.hosts.start()
    b.hosts.start()
    a.register(Scope("tenant", "acme"), "acme-1", ECHO, None)
    task = a.submit(Scope("admin"), "echo", {}, tenant="acme")
    lease = a.claim(AgentRef("acme/acme-1", "acme", None, frozenset({"echo"})))
    assert lease is not None and lease["id"] == task["id"]
    _destroyed(store, "acme")
    Placement(store, "a", None).rehome("acme", "b")
    assert _row(store, Agent, "acme/acme-1").state == "left"
    row = _row(store, Task, task["id"])
    assert (row.state, row.attempts, row.lease_token) == ("queued", 0, None)
    assert "moved to host b" in row.error
    with pytest.raises(Exception, match="not leased"):  # a late answer from the old host is refused
        a.finish(Scope("tenant", "acme"), "acme/acme-1", task["id"], str(lease["lease"]), True, None, None, 0)
    agent, _ = b.register(Scope("tenant", "acme"), "acme-1", ECHO, None)
    assert agent["state"] == "active" and _row(store, Agent, "acme/acme-1").host == "b"


def test_the_old_hosts_daemon_cannot_mark_the_moved_agent_lost_or_left(store: Store, clock: Clock) -> None:
    a, b = _hive(store, clock, "a"), _hive(store, clock, "b")
    a.hosts.start()
    b.hosts.start()
    a.register(Scope("tenant", "acme"), "acme-1", ECHO, None)
    with Session(store.engine) as session:  # moved without the rehome's cleanup (an older orchestrator)
        tenant = session.get(Tenant, "acme")
        assert tenant is not None
        tenant.host = "b"
        session.add(tenant)
        session.commit()
    b.register(Scope("tenant", "acme"), "acme-1", ECHO, None)  # taken over on its new host
    task = b.submit(Scope("admin"), "echo", {}, tenant="acme")
    assert b.claim(AgentRef("acme/acme-1", "acme", None, frozenset({"echo"}))) is not None
    assert a.set_states([("acme/acme-1", "lost")]) == []  # a's liveness sweep: its old agent went silent
    assert a.deregister("acme/acme-1") == []  # the old mother's last word, late
    assert _row(store, Agent, "acme/acme-1").state == "active"
    assert _row(store, Task, task["id"]).state == "running"


def test_a_tenants_agent_on_a_host_it_does_not_live_on_takes_no_identity(store: Store, clock: Clock) -> None:
    a, c = _hive(store, clock, "a"), _hive(store, clock, "c")
    a.hosts.start()
    c.hosts.start()
    a.register(Scope("tenant", "acme"), "acme-1", ECHO, None)
    with pytest.raises(PermissionDenied, match="lives on host a"):
        c.register(Scope("tenant", "acme"), "acme-1", ECHO, None)
    assert _row(store, Agent, "acme/acme-1").host == "a"


def test_a_lane_agent_id_live_on_another_host_is_still_refused(store: Store, clock: Clock) -> None:
    a, b = _hive(store, clock, "a"), _hive(store, clock, "b")
    a.hosts.start()
    b.hosts.start()
    a.declare_lane("linux")
    a.register(Scope("lane", "linux"), "x1", ECHO, None)
    with pytest.raises(Conflict, match="live on host a"):
        b.register(Scope("lane", "linux"), "x1", ECHO, None)
