"""A submit that an agent here is waiting for: the task claimed for that agent in the submit's own
transaction (``Dispatcher.submit``, ``TaskRules.submit_handing``), on a real SQLite store.

One commit and one audit append where a submit and the claim it woke took two each; the agent's
claim call answers with the task as a claim of its own would.  What must not change: a task goes
only to an agent that may take it, none is lost when the claim call goes meanwhile, a refused
submit leaves the agent waiting, and no claim is made without the host's lease.
"""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import Session, col, select

from colibri.daemon.dispatcher import Dispatcher
from colibri.daemon.liveness import Registry
from colibri.daemon.metrics import Metrics
from colibri.errors import ColibriError
from colibri.services.hive.rules import MAX_PAYLOAD_BYTES, AgentRef, Policy, Scope
from colibri.services.hive.service import HiveService
from colibri.store.audit import AuditEntry
from colibri.store.db import Store
from tests.unit.daemon.hive_world import active_tenants

ECHO = [{"name": "echo", "version": "1"}]
ADMIN = Scope("admin")
POLICY = Policy(lease_seconds=300, max_attempts=3)


@pytest.fixture(name="store")
def store_fixture(tmp_path: Path) -> Iterator[Store]:
    store = active_tenants(f"sqlite:///{tmp_path / 'hive.db'}", {"acme": "h", "bob": "h"})
    yield store
    store.close()


class World:
    """A daemon's hive under its host lease, its agents registered, a dispatcher whose database
    calls yield to the loop (as the database thread does) and are named in ``calls``."""

    def __init__(self, store: Store, agents: list[str]) -> None:
        self.hive = hive = HiveService(store, POLICY, host="h")
        hive.hosts.start()
        for key in agents:
            tenant, name = key.split("/")
            hive.register(Scope("tenant", tenant), name, ECHO, "1")
        self.registry = Registry(POLICY)
        for record in hive.load_agents():
            self.registry.upsert(record)
        self.calls: list[str] = []
        self.commits = 0
        event.listen(store.engine, "commit", self._committed)
        self.dispatcher = Dispatcher(self.registry, Metrics(), self._db, lambda: hive, lambda: False)
        self.dispatcher._checked.update(agents)  # no leases from before a start to look at
        self.store = store

    def _committed(self, _conn: Any) -> None:
        self.commits += 1

    async def _db(self, fn: Any, *args: Any) -> Any:
        self.calls.append(getattr(fn, "__name__", "") or getattr(getattr(fn, "func", None), "__name__", ""))
        await asyncio.sleep(0)  # the database thread: the loop runs on while it works
        return fn(*args)

    async def parked(self, key: str, wait: float = 5.0) -> "asyncio.Task[Any]":
        """Agent ``key``'s claim call, waiting for work."""
        claim = asyncio.ensure_future(self.dispatcher.claim(key, wait))
        for _ in range(50):
            await asyncio.sleep(0)
            if any(w.key == key for w in self.dispatcher.waiters):
                return claim
        raise AssertionError(f"{key} never waited")

    def newest_entries(self, count: int) -> list[AuditEntry]:
        with Session(self.store.engine) as session:
            rows = session.exec(select(AuditEntry).order_by(col(AuditEntry.seq).desc()).limit(count)).all()
        return list(reversed(rows))


def test_a_waiting_agent_is_handed_the_task_in_the_submits_own_transaction(store: Store) -> None:
    world = World(store, ["acme/a1"])

    async def run() -> tuple[dict[str, Any], Any, int, list[str]]:
        claim = await world.parked("acme/a1")
        world.calls.clear()
        before = world.commits
        task = await world.dispatcher.submit(ADMIN, "echo", {"n": 1}, "acme", None)
        got = await asyncio.wait_for(claim, 5)
        return task, got, world.commits - before, list(world.calls)

    task, got, commits, calls = asyncio.run(run())
    assert task["created"] is True and got is not None and got["id"] == task["id"]
    assert got["agent"] == "acme/a1" and got["state"] == "running" and got["lease"] and got["host"] == "h"
    assert calls == ["submit_handing"] and commits == 1  # no second turn on the database, one commit
    submit, claim = world.newest_entries(2)
    assert (submit.action, claim.action) == ("task.submit", "task.claim") and claim.seq == submit.seq + 1
    assert '"actor":"agent:acme/a1"' in claim.body and '"actor":"agent:' not in submit.body
    shown = world.hive.task(ADMIN, task["id"])
    assert shown["state"] == "running" and shown["agent"] == "acme/a1" and shown["attempts"] == 1
    world.hive.finish(Scope("tenant", "acme"), "acme/a1", got["id"], got["lease"], True, 1, None, 0, got["fence"])
    assert world.hive.task(ADMIN, task["id"])["state"] == "succeeded"  # the lease is a lease like any


def test_another_tenants_waiting_agent_is_not_handed_the_task(store: Store) -> None:
    world = World(store, ["bob/b1"])

    async def run() -> tuple[dict[str, Any], Any]:
        claim = await world.parked("bob/b1", wait=0.2)
        world.calls.clear()
        task = await world.dispatcher.submit(ADMIN, "echo", {"n": 1}, "acme", None)
        return task, await asyncio.wait_for(claim, 5)

    task, got = asyncio.run(run())
    assert got is None and world.calls[0] == "submit"  # a plain submit: bob's agent may not take acme's
    assert world.hive.task(ADMIN, task["id"])["state"] == "queued"


def test_a_task_claimed_for_an_agent_whose_claim_call_went_meanwhile_is_queued_again(store: Store) -> None:
    world = World(store, ["acme/a1"])

    async def run() -> dict[str, Any]:
        claim = await world.parked("acme/a1")
        submit = asyncio.ensure_future(world.dispatcher.submit(ADMIN, "echo", {"n": 1}, "acme", None))
        await asyncio.sleep(0)  # the submit is on the database, claiming for a1
        assert any(w.handed is not None for w in world.dispatcher.waiters)
        claim.cancel()  # the daemon stops, or the connection's handler went
        task = await submit
        with pytest.raises(asyncio.CancelledError):
            await claim
        for _ in range(50):  # the give-back runs after the submit's transaction
            await asyncio.sleep(0)
        return task

    task = asyncio.run(run())
    shown = world.hive.task(ADMIN, task["id"])
    assert shown["state"] == "queued" and shown["attempts"] == 0 and shown["agent"] is None  # no attempt spent
    assert 'colibri_tasks_requeued_total{outcome="undelivered"} 1' in world.dispatcher.metrics.render({})


def test_a_refused_submit_leaves_the_agent_waiting_for_the_next(store: Store) -> None:
    world = World(store, ["acme/a1"])

    async def run() -> tuple[Any, dict[str, Any]]:
        claim = await world.parked("acme/a1")
        with pytest.raises(ColibriError):
            await world.dispatcher.submit(ADMIN, "echo", "x" * (MAX_PAYLOAD_BYTES + 1), "acme", None)
        for _ in range(20):
            await asyncio.sleep(0)
        assert not claim.done()  # still waiting: nothing was written, nothing handed
        task = await world.dispatcher.submit(ADMIN, "echo", {"n": 2}, "acme", None)
        return await asyncio.wait_for(claim, 5), task

    got, task = asyncio.run(run())
    assert got is not None and got["id"] == task["id"]


def test_an_agent_is_handed_its_older_task_first_and_the_new_one_stays_queued(store: Store) -> None:
    world = World(store, ["acme/a1", "acme/a2"])

    older: dict[str, Any] = {}

    async def run() -> tuple[Any, Any, dict[str, Any]]:
        first = await world.parked("acme/a1")
        older.update(world.hive.submit(ADMIN, "echo", {"n": 0}, "acme"))  # past the dispatcher: nobody woken
        task = await world.dispatcher.submit(ADMIN, "echo", {"n": 1}, "acme", None)
        got = await asyncio.wait_for(first, 5)
        second = await world.dispatcher.claim("acme/a2", 5)  # the new one is there for the next
        return got, second, task

    got, second, task = asyncio.run(run())
    assert got is not None and got["id"] == older["id"]  # the claim's own order: its oldest by turn
    assert second is not None and second["id"] == task["id"]


def test_no_claim_is_made_in_a_submit_without_the_host_lease(store: Store) -> None:
    hive = HiveService(store, POLICY, host="h")  # its lease never taken: not trusted
    hive.register(Scope("tenant", "acme"), "a1", ECHO, "1")
    agent = AgentRef("acme/a1", "acme", None, frozenset({"echo"}))
    task, claimed = hive.submit_handing(ADMIN, "echo", 1, "acme", None, agent)
    assert claimed is None and hive.task(ADMIN, task["id"])["state"] == "queued"
    hive.hosts.start()
    task, claimed = hive.submit_handing(ADMIN, "echo", 2, "acme", "k1", agent)
    assert claimed is not None and claimed["id"] != task["id"]  # the older one first, by turn
    repeat, none = hive.submit_handing(ADMIN, "echo", 2, "acme", "k1", agent)
    assert repeat["created"] is False and none is None  # a repeated key claims nothing
