"""Review R (issue 11): the host lease, task leases and the outbox attacked with skewed clocks, a
second daemon under one host's name and a tenant filling the outbox.  Each test is a finding:
strict xfail until the coordinator fixes it."""

import asyncio
import contextlib
from pathlib import Path

import pytest
from sqlmodel import Session

from colibri.daemon.outbox import Outbox
from colibri.daemon.server import Daemon
from colibri.errors import ColibriError, InvalidInput, StoreError
from colibri.services.hive.rules import AgentRef, Scope
from colibri.services.hive.service import HiveService
from colibri.settings import Settings
from colibri.store.db import Store
from colibri.store.models import Task, Tenant
from tests.unit.daemon.hive_world import active_tenants
from tests.unit.daemon.test_host_lease import (  # noqa: F401 (fixtures)
    ECHO,
    GRACE,
    LEASE,
    Clock,
    _hive,
    _ref,
    _row,
    clock_fixture,
    store_fixture,
)


def test_r3_a_healthy_host_whose_clock_is_behind_is_never_declared_lost(store: Store, clock: Clock) -> None:
    behind = Clock()
    behind.now = clock.now - (LEASE + GRACE + 5)  # 45 s slow: NTP broken on host a
    a, b = _hive(store, behind, "a"), _hive(store, clock, "b")
    a.hosts.start()
    b.hosts.start()
    agent, _ = a.register(Scope("tenant", "acme"), "m1", ECHO, None)
    a.submit(Scope("admin"), "echo", {}, tenant="acme")
    assert a.claim(_ref(agent)) is not None
    for _ in range(6):  # both alive and renewing on time, past b's own first lease + grace
        clock.now += LEASE / 3
        behind.now += LEASE / 3
        assert a.hosts.renew() == (True, []) and b.hosts.renew() == (True, [])
    assert b.hosts.rescue() == []  # fails: b declares a lost, a's agents lost, its task requeued


def test_r3_a_daemon_whose_clock_is_ahead_does_not_requeue_a_live_hosts_task(store: Store, clock: Clock) -> None:
    ahead = Clock()
    ahead.now = clock.now + 61  # b's clock 61 s ahead (the tests' task lease is 60 s)
    a, b = _hive(store, clock, "a"), _hive(store, ahead, "b")
    a.hosts.start()
    b.hosts.start()
    agent, _ = a.register(Scope("tenant", "acme"), "m1", ECHO, None)
    task = a.submit(Scope("admin"), "echo", {}, tenant="acme")
    assert a.claim(_ref(agent)) is not None
    a.flush([("acme/m1", clock.now)])  # a's agent beats: its lease is kept by liveness
    assert b.expire_leases() == []  # fails: b requeues a's task; a's agent's answer is then refused
    assert _row(store, Task, task["id"]).state == "running"


def test_r7_a_daemon_under_another_live_hosts_name_does_not_take_its_lease(store: Store, clock: Clock) -> None:
    real, imposter = _hive(store, clock, "a"), _hive(store, clock, "a")
    real.hosts.start()
    clock.now += 1
    with contextlib.suppress(ColibriError):  # should be refused while a's lease is live (a clear Conflict)
        imposter.hosts.start()
    assert real.hosts.renew() == (True, [])  # fails: a's own daemon lost its term; the two flap forever


def test_r5_one_tenant_cannot_fill_the_outbox_for_the_others(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "state", 64 * 1024)
    hog = {"scope": ["tenant", "hog"], "agent": "hog/m1", "lease": "x", "ok": True}
    with pytest.raises(StoreError):  # while the database is down: results for made-up task ids
        for task in range(1, 100_000):
            outbox.append({**hog, "task": task})
    acme = {"task": 7, "scope": ["tenant", "acme"], "agent": "acme/m1", "lease": "y" * 32, "ok": True}
    outbox.append(acme)  # fails: StoreError (503) for acme's real completion, until the database is back


BIG = 2**63  # a JSON integer an agent may send as its exit status (the body is checked as "an integer")


def test_r10_a_result_with_a_huge_exit_status_is_refused_as_input_not_a_store_error(store: Store, clock: Clock) -> None:
    a = _hive(store, clock, "a")
    a.hosts.start()
    agent, _ = a.register(Scope("tenant", "acme"), "m1", ECHO, None)
    task = a.submit(Scope("admin"), "echo", {}, tenant="acme")
    lease = a.claim(_ref(agent))
    assert lease is not None
    with contextlib.suppress(InvalidInput):  # fails: StoreError, which the result route answers 202 "outbox"
        a.finish(Scope("tenant", "acme"), "acme/m1", task["id"], str(lease["lease"]), True, None, None, BIG)


def test_r10_a_record_the_store_refuses_does_not_block_the_outbox(tmp_path: Path, db_url: str) -> None:
    settings = Settings(state_dir=tmp_path, run_dir=tmp_path / "run", host="a")
    store = active_tenants(db_url, {"acme": "a"})
    daemon = Daemon(settings)
    try:
        hive = daemon._hive = HiveService(store, daemon.policy, host="a")
        daemon._store = store
        hive.hosts.start()
        ref = AgentRef("acme/m1", "acme", None, frozenset({"echo"}))
        hive.register(Scope("tenant", "acme"), "m1", ECHO, None)
        poison, kept = (hive.submit(Scope("admin"), "echo", n, tenant="acme") for n in (1, 2))
        for task, status in ((poison, BIG), (kept, 0)):  # as the result route wrote them (202 each)
            lease = hive.claim(ref)
            assert lease is not None and lease["id"] == task["id"]
            daemon.outbox.append({"task": task["id"], "scope": ["tenant", "acme"], "agent": "acme/m1",
                                  "lease": lease["lease"], "ok": True, "result": None, "error": None,
                                  "exit_status": status})  # fmt: skip
        for _ in range(3):  # the daemon's replay loop, three rounds
            with contextlib.suppress(StoreError):
                asyncio.run(daemon._replay())
        assert hive.task(Scope("admin"), kept["id"])["state"] == "succeeded"  # fails: stuck behind the poison
    finally:
        daemon._pool.shutdown()
        daemon._side.shutdown()
        store.close()


def test_r11_after_move_tenant_the_mother_registers_on_the_new_host_at_once(store: Store, clock: Clock) -> None:
    a, b = _hive(store, clock, "a"), _hive(store, clock, "b")
    a.hosts.start()
    b.hosts.start()
    a.register(Scope("tenant", "acme"), "acme-1", ECHO, None)  # the mother's agent id is "<tenant>-1"
    with Session(store.engine) as session:  # move-tenant: the jail destroyed on a, then rehome (tenants.host)
        tenant = session.get(Tenant, "acme")
        assert tenant is not None
        tenant.host = "b"
        session.add(tenant)
        session.commit()
    b.register(Scope("tenant", "acme"), "acme-1", ECHO, None)  # fails: Conflict until a marks it lost (~90 s)


def test_r12_an_acknowledged_completion_survives_an_outage_longer_than_its_lease(
    tmp_path: Path, db_url: str, clock: Clock
) -> None:
    settings = Settings(state_dir=tmp_path, run_dir=tmp_path / "run", host="a")
    store = active_tenants(db_url, {"acme": "a"})
    daemon = Daemon(settings)
    try:
        store.clock = clock  # leases are on the database's clock (review R3): the test moves it
        hive = daemon._hive = HiveService(store, daemon.policy, host="a", clock=clock)
        daemon._store = store
        hive.hosts.start()
        hive.register(Scope("tenant", "acme"), "m1", ECHO, None)
        task = hive.submit(Scope("admin"), "echo", 1, tenant="acme")
        lease = hive.claim(AgentRef("acme/m1", "acme", None, frozenset({"echo"})))
        assert lease is not None
        daemon.outbox.append({"task": task["id"], "scope": ["tenant", "acme"], "agent": "acme/m1",
                              "lease": lease["lease"], "ok": True, "result": "done", "error": None,
                              "exit_status": 0, "fence": lease["fence"]})  # fmt: skip
        daemon.store_up = False  # the agent was answered 202: the store had failed
        clock.now += daemon.policy.lease_seconds + 1  # the outage (a failover) outlasted the lease
        hive.hosts.renew()
        asyncio.run(daemon._leases())  # the store is back: the lease loop ticks first (store_up was False)
        asyncio.run(daemon._replay())
        assert hive.task(Scope("admin"), task["id"])["state"] == "succeeded"  # fails: requeued, the result dropped
    finally:
        daemon._pool.shutdown()
        daemon._side.shutdown()
        store.close()


def test_r13_hosts_remove_of_a_host_whose_daemon_is_live_is_refused_or_sticks(store: Store, clock: Clock) -> None:
    from colibri.services.hosts.enrol import HostService
    from colibri.store.hosts import HostRepo

    hosts = HostService(store, clock=clock)
    hosts.add(
        "c",
        "root@192.0.2.12",
        ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMD"],
        None,
    )
    c = _hive(store, clock, "c")
    c.hosts.start()
    with contextlib.suppress(ColibriError):  # refused (Conflict: its daemon holds a live lease) would do
        hosts.remove("c")
    c.hosts.renew()
    with store.session() as session:
        row = HostRepo(session).get("c")
        kept = None if row is None else (row.address, row.state)
    assert kept in (None, ("192.0.2.12", "up"))  # fails: (None, "up"): back, without its SSH reach or its key


def test_r14_one_tenants_backlog_does_not_hold_another_tenants_task_on_a_lane(store: Store, clock: Clock) -> None:
    from colibri.services.hive.rules import AgentRef

    a, b = _hive(store, clock, "a"), _hive(store, clock, "b")
    a.hosts.start()
    a.declare_lane("linux")
    for n in range(3):  # acme's backlog (tenant_max_queued_tasks is 1000 by default)
        a.submit(Scope("tenant", "acme"), "echo", n)
    b.submit(Scope("tenant", "bolt"), "echo", 0)  # bolt's one task, from its own host
    lanes = [AgentRef(f"lane:linux/x{n}", None, "linux", frozenset({"echo"})) for n in (1, 2)]
    claimed = [a.claim(lane) for lane in lanes]
    assert "bolt" in {c["tenant"] for c in claimed if c}  # fails: acme, acme (bolt waits behind all of acme's)
