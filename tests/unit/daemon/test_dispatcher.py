"""The dispatcher on a real SQLite store: what happens to leases across a daemon's SIGKILL.

The race of test_kill_9_under_load_loses_nothing_acknowledged, made deterministic: the old daemon
committed a claim and died before its answer was written, so the agent never got the lease; the
agent stays registered (the new daemon loads it from the store) and goes on polling.  Its lease
must not wait out ``task_lease_seconds``.
"""

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colibri.daemon.dispatcher import Dispatcher
from colibri.daemon.liveness import Registry
from colibri.daemon.metrics import Metrics
from colibri.errors import StateConflict, StoreError
from colibri.services.hive.rules import AgentRef, Policy, Scope
from colibri.services.hive.service import HiveService
from colibri.store.db import Store
from tests.unit.daemon.hive_world import active_tenants

ECHO = [{"name": "echo", "version": "1"}]
ACME = Scope("tenant", "acme")
POLICY = Policy(lease_seconds=300, max_attempts=3)


@pytest.fixture(name="store")
def store_fixture(tmp_path: Path) -> Iterator[Store]:
    store = active_tenants(f"sqlite:///{tmp_path / 'hive.db'}", {"acme": "h"})
    yield store
    store.close()


def restarted(hive: HiveService) -> Dispatcher:
    """A new daemon's dispatcher, started after the old daemon's claims, its registry loaded."""
    registry = Registry(POLICY)
    for record in hive.load_agents():
        registry.upsert(record)

    async def db(fn: Any, *args: Any) -> Any:
        return fn(*args)

    dispatcher = Dispatcher(registry, Metrics(), db, lambda: hive, lambda: False)
    dispatcher.started = time.time()  # after the old daemon's claims, however close
    return dispatcher


def test_a_lease_claimed_before_the_restart_goes_to_the_agents_first_claim(store: Store) -> None:
    old = HiveService(store, POLICY)
    old.register(ACME, "a1", ECHO, "1")
    first = old.submit(ACME, "echo", {"n": 1})
    second = old.submit(ACME, "echo", {"n": 2})
    lost = old.claim(AgentRef("acme/a1", "acme", None, frozenset({"echo"})))  # committed, never answered
    assert lost is not None and lost["id"] == first["id"]

    hive = HiveService(store, POLICY)
    dispatcher = restarted(hive)
    got = asyncio.run(dispatcher.claim("acme/a1", 0))
    assert got is not None and got["id"] == first["id"]  # not the second: the lost one, at once
    assert got["lease"] != lost["lease"] and got["attempts"] == 1  # the undelivered attempt not spent
    assert 'colibri_tasks_requeued_total{outcome="undelivered"} 1' in dispatcher.metrics.render({})
    again = asyncio.run(dispatcher.claim("acme/a1", 0))  # this daemon's own lease is kept
    assert again is not None and again["id"] == second["id"]
    assert hive.task(ACME, first["id"])["state"] == "running"
    hive.finish(ACME, "acme/a1", first["id"], got["lease"], True, {"n": 1}, None, 0)
    assert hive.task(ACME, first["id"])["state"] == "succeeded"


def test_a_lease_of_another_agent_or_one_reported_is_left_alone(store: Store) -> None:
    old = HiveService(store, POLICY)
    old.register(ACME, "a1", ECHO, "1")
    old.register(ACME, "a2", ECHO, "1")
    task = old.submit(ACME, "echo", {"n": 1})
    held = old.claim(AgentRef("acme/a2", "acme", None, frozenset({"echo"})))
    assert held is not None

    hive = HiveService(store, POLICY)
    dispatcher = restarted(hive)
    assert asyncio.run(dispatcher.claim("acme/a1", 0)) is None  # a2's lease is a2's
    shown = hive.task(ACME, task["id"])
    assert shown["state"] == "running" and shown["agent"] == "acme/a2"
    hive.finish(ACME, "acme/a2", task["id"], held["lease"], True, 1, None, 0)  # a2 reports after the restart
    assert hive.task(ACME, task["id"])["state"] == "succeeded"


def test_claims_arriving_while_one_is_on_the_database_thread_share_the_next_transaction(store: Store) -> None:
    hive = HiveService(store, POLICY, host="h")
    hive.hosts.start()  # a daemon claims only under its host lease
    for n in range(1, 5):
        hive.register(ACME, f"a{n}", ECHO, "1")
        hive.submit(Scope("admin"), "echo", n, tenant="acme")
    registry = Registry(POLICY)
    for record in hive.load_agents():
        registry.upsert(record)
    batches: list[int] = []

    async def db(fn: Any, *args: Any) -> Any:
        if getattr(fn, "__name__", "") == "claim_many":
            batches.append(len(args[0]))
        await asyncio.sleep(0)  # the database thread: the loop runs on while it works
        return fn(*args)

    dispatcher = Dispatcher(registry, Metrics(), db, lambda: hive, lambda: False)
    dispatcher._checked.update(f"acme/a{n}" for n in range(1, 5))  # no leases from before a start

    async def claims() -> list[Any]:
        return await asyncio.gather(*(dispatcher.claim(f"acme/a{n}", 0) for n in range(1, 5)))

    got = asyncio.run(claims())
    assert sorted(t["id"] for t in got) == sorted({t["id"] for t in got}) and len(got) == 4
    assert batches == [4]  # four claims in one loop turn: one transaction
    assert {t["agent"] for t in got} == {f"acme/a{n}" for n in range(1, 5)}


def test_results_arriving_together_share_one_transaction_each_answered_as_alone(store: Store) -> None:
    hive = HiveService(store, POLICY, host="h")
    hive.hosts.start()
    keys = [f"acme/a{n}" for n in range(1, 4)]
    for n, key in enumerate(keys, 1):
        hive.register(ACME, key.split("/")[1], ECHO, "1")
        hive.submit(Scope("admin"), "echo", n, tenant="acme")
    leases = [hive.claim_many([AgentRef(key, "acme", None, frozenset({"echo"}))])[0] for key in keys]
    assert all(leases)
    batches: list[int] = []
    failing = [False]

    async def db(fn: Any, *args: Any) -> Any:
        if getattr(fn, "__name__", "") == "finish_many":
            batches.append(len(args[0]))
            if failing[0]:
                raise StoreError("database unreachable")
        await asyncio.sleep(0)
        return fn(*args)

    dispatcher = Dispatcher(Registry(POLICY), Metrics(), db, lambda: hive, lambda: False)

    async def results() -> list[Any]:
        reports = [(ACME, keys[i], t["id"], t["lease"] if i != 1 else "stale", True, {"n": i}, None, 0, t["fence"])
                   for i, t in enumerate(leases) if t is not None]  # fmt: skip
        return await asyncio.gather(*(dispatcher.finish(*r) for r in reports), return_exceptions=True)

    got = asyncio.run(results())
    assert batches == [3]  # three results in one loop turn: one transaction
    assert isinstance(got[1], StateConflict)  # the stale lease alone is refused
    assert [got[0]["result"], got[2]["result"]] == [{"n": 0}, {"n": 2}]
    assert [hive.task(ACME, t["id"])["state"] for t in leases if t] == ["succeeded", "running", "succeeded"]
    failing[0] = True
    again = asyncio.run(results())
    assert batches == [3, 3] and all(isinstance(answer, StoreError) for answer in again)
