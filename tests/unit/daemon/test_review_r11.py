"""Review R (issue 11): the host lease, task leases and the outbox attacked with skewed clocks, a
second daemon under one host's name and a tenant filling the outbox.  Each test is a finding:
strict xfail until the coordinator fixes it."""

import contextlib
from pathlib import Path

import pytest

from colibri.daemon.outbox import Outbox
from colibri.errors import ColibriError, StoreError
from colibri.services.hive.rules import Scope
from colibri.store.db import Store
from colibri.store.models import Task
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


@pytest.mark.xfail(strict=True, reason="R3: host leases are written and judged on each host's own clock")
def test_r3_a_healthy_host_whose_clock_is_behind_is_never_declared_lost(store: Store, clock: Clock) -> None:
    behind = Clock()
    behind.now = clock.now - (LEASE + GRACE + 5)  # 45 s slow: NTP broken on host a
    a, b = _hive(store, behind, "a"), _hive(store, clock, "b")
    a.hosts.start()
    b.hosts.start()
    agent, _ = a.register(Scope("tenant", "acme"), "m1", ECHO, None)
    a.submit(Scope("admin"), "echo", {}, tenant="acme")
    assert a.claim(_ref(agent)) is not None
    assert a.hosts.renew() == (True, [])  # a is alive and renewing on time
    assert b.hosts.rescue() == []  # fails: b declares a lost at once, a's agents lost, its task requeued


@pytest.mark.xfail(strict=True, reason="R3: any daemon requeues any host's running task by its own clock")
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


@pytest.mark.xfail(strict=True, reason="R7: a second daemon configured with a host's name takes its lease over")
def test_r7_a_daemon_under_another_live_hosts_name_does_not_take_its_lease(store: Store, clock: Clock) -> None:
    real, imposter = _hive(store, clock, "a"), _hive(store, clock, "a")
    real.hosts.start()
    clock.now += 1
    with contextlib.suppress(ColibriError):  # should be refused while a's lease is live (a clear Conflict)
        imposter.hosts.start()
    assert real.hosts.renew() == (True, [])  # fails: a's own daemon lost its term; the two flap forever


@pytest.mark.xfail(strict=True, reason="R5: one outbox for every tenant: one tenant's results fill it for all")
def test_r5_one_tenant_cannot_fill_the_outbox_for_the_others(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "state", 64 * 1024)
    hog = {"scope": ["tenant", "hog"], "agent": "hog/m1", "lease": "x", "ok": True}
    with pytest.raises(StoreError):  # while the database is down: results for made-up task ids
        for task in range(1, 100_000):
            outbox.append({**hog, "task": task})
    acme = {"task": 7, "scope": ["tenant", "acme"], "agent": "acme/m1", "lease": "y" * 32, "ok": True}
    outbox.append(acme)  # fails: StoreError (503) for acme's real completion, until the database is back
