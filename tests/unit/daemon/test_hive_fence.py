"""Issue 11: the queue shared by several hosts' daemons on one store (SQLite and PostgreSQL).

Each ``HiveService`` here is one host's daemon (its ``host``), all on the same database: the
fencing token of a claim, the host it names, a late answer from a superseded claim, and the
kept usage of a tenant whose tasks other hosts finish.
"""

import threading
from collections.abc import Iterator

import pytest

from colibri.errors import Conflict, PermissionDenied, StateConflict
from colibri.services.hive.rules import AgentRef, Policy, Scope
from colibri.services.hive.service import HiveService
from colibri.store.db import Store
from colibri.store.models import Task
from tests.unit.daemon.hive_world import Clock, active_tenants

ADMIN, ACME, LANE = Scope("admin"), Scope("tenant", "acme"), Scope("lane", "linux")
ECHO = [{"name": "echo", "version": "1"}]


@pytest.fixture(name="store")
def store_fixture(db_url: str, clock: "Clock") -> Iterator[Store]:
    store = active_tenants(db_url, {"acme": "a"})
    store.clock = clock  # leases are on the database's clock (review R3): the tests move it
    yield store
    store.close()


@pytest.fixture(name="clock")
def clock_fixture() -> Clock:
    return Clock()


def daemon(store: Store, clock: Clock, host: str, **policy: float) -> HiveService:
    """One host's daemon, holding its host lease (a daemon claims nothing without one)."""
    hive = HiveService(store, Policy(lease_seconds=60, max_attempts=3, **policy), clock=clock, host=host)  # type: ignore[arg-type]
    hive.hosts.start()
    return hive


def lane(key: str) -> AgentRef:
    return AgentRef(key, None, "linux", frozenset({"echo"}))


def test_a_claim_takes_the_next_fence_and_names_its_host(store: Store, clock: Clock) -> None:
    a, b = daemon(store, clock, "a"), daemon(store, clock, "b")
    a.declare_lane("linux")
    submitted = b.submit(ADMIN, "echo", {"n": 1}, tenant="acme")
    assert (submitted["host"], submitted["fence"]) == (None, 0)
    assert list(submitted)[-3:] == ["host", "fence", "created"]  # new keys after the existing ones
    claimed = a.claim(lane("lane:linux/x1"))
    assert claimed is not None
    assert list(claimed)[-4:] == ["lease", "lease_seconds", "host", "fence"]
    assert (claimed["host"], claimed["fence"]) == ("a", 1)
    shown = b.task(ADMIN, claimed["id"])
    assert (shown["host"], shown["fence"], shown["state"]) == ("a", 1, "running")
    assert b.tasks()[0]["host"] == "a" and b.tasks()[0]["fence"] == 1


def test_a_late_answer_from_a_superseded_claim_changes_nothing(store: Store, clock: Clock) -> None:
    a, b = daemon(store, clock, "a"), daemon(store, clock, "b")
    a.declare_lane("linux")
    task = a.submit(ADMIN, "echo", {"n": 1})
    first = a.claim(lane("lane:linux/x1"))
    assert first is not None and first["fence"] == 1
    clock.now += 61  # host a went quiet past the lease: host b's daemon (renewing its own) requeues it
    b.hosts.renew()
    assert [r.task_id for r in b.expire_leases()] == [task["id"]]
    second = b.claim(lane("lane:linux/y1"))
    assert second is not None and (second["host"], second["fence"]) == ("b", 2)
    with pytest.raises(StateConflict):  # host a's agent answers late, with its old lease
        a.finish(LANE, "lane:linux/x1", task["id"], first["lease"], True, {"late": 1}, None, 0, 1)
    assert not a.release(task["id"], first["lease"], 1)
    done = b.finish(LANE, "lane:linux/y1", task["id"], second["lease"], True, {"ok": 1}, None, 0, 2)
    assert done["state"] == "succeeded" and done["result"] == {"ok": 1}
    with pytest.raises(StateConflict):  # and after it finished, still nothing from host a
        a.finish(LANE, "lane:linux/x1", task["id"], first["lease"], False, None, "late", 1, 1)
    assert b.task(ADMIN, task["id"])["result"] == {"ok": 1}


def test_the_current_lease_through_another_host_or_with_another_fence_is_refused(store: Store, clock: Clock) -> None:
    a, b = daemon(store, clock, "a"), daemon(store, clock, "b")
    a.declare_lane("linux")
    task = a.submit(ADMIN, "echo", 1)
    claimed = a.claim(lane("lane:linux/x1"))
    assert claimed is not None
    with pytest.raises(StateConflict):  # the same key and lease, but on host b's daemon
        b.finish(LANE, "lane:linux/x1", task["id"], claimed["lease"], True, None, None, 0)
    assert not b.release(task["id"], claimed["lease"])
    with pytest.raises(StateConflict):
        a.finish(LANE, "lane:linux/x1", task["id"], claimed["lease"], True, None, None, 0, claimed["fence"] + 1)
    assert a.finish(LANE, "lane:linux/x1", task["id"], claimed["lease"], True, None, None, 0)["state"] == "succeeded"


def test_an_update_of_a_task_read_before_another_claim_matches_no_row(store: Store, clock: Clock) -> None:
    """The fence is in every ORM update's WHERE: a writer holding an old read updates 0 rows."""
    a = daemon(store, clock, "a")
    a.declare_lane("linux")
    task = a.submit(ADMIN, "echo", 1)
    with pytest.raises(StateConflict), store.session() as session:
        stale = session.get(Task, task["id"])
        assert stale is not None and stale.fence == 0
        assert a.claim(lane("lane:linux/x1")) is not None  # another transaction claims it: fence 1
        stale.state, stale.error = "failed", "a stale writer"
    shown = a.task(ADMIN, task["id"])
    assert (shown["state"], shown["fence"], shown["error"]) == ("running", 1, None)


def test_daemons_racing_for_tasks_claim_each_exactly_once(store: Store, clock: Clock) -> None:
    hosts = [daemon(store, clock, f"h{n}") for n in range(4)]
    hosts[0].declare_lane("linux")
    ids = {hosts[0].submit(ADMIN, "echo", n)["id"] for n in range(40)}
    start = threading.Barrier(len(hosts))
    got: dict[str, list[int]] = {}

    def work(hive: HiveService, name: str) -> None:
        start.wait()
        mine = got.setdefault(name, [])
        while True:
            claimed = hive.claim(lane(f"lane:linux/{name}"))
            if claimed is None:
                return
            mine.append(claimed["id"])

    threads = [threading.Thread(target=work, args=(h, f"h{n}")) for n, h in enumerate(hosts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    claims = [i for mine in got.values() for i in mine]
    assert sorted(claims) == sorted(ids)  # every task once, none twice
    assert {hosts[0].task(ADMIN, i)["fence"] for i in ids} == {1}


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # SQLite is one host's store
def test_a_tenants_queue_room_counts_what_other_hosts_finished(store: Store, clock: Clock) -> None:
    a, b = daemon(store, clock, "a", max_queued_tasks=2), daemon(store, clock, "b", max_queued_tasks=2)
    b.declare_lane("linux")
    for round_ in range(3):  # host a submits, host b's lane finishes: a's room comes back each time
        submitted = [a.submit(ADMIN, "echo", [round_, n], tenant="acme")["id"] for n in range(2)]
        for _ in submitted:
            claimed = b.claim(lane("lane:linux/y1"))
            assert claimed is not None
            b.finish(LANE, "lane:linux/y1", claimed["id"], claimed["lease"], True, None, None, 0)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # tenants live on hosts of a shared store
def test_a_tenants_agents_belong_to_the_daemon_of_its_host(store: Store, clock: Clock) -> None:
    a, b = daemon(store, clock, "a"), daemon(store, clock, "b")  # acme was registered on host a
    with pytest.raises(PermissionDenied):
        b.register(ACME, "a1", ECHO, "1")
    with pytest.raises(PermissionDenied):
        b.tenant_for_socket("acme")
    assert b.socket_owners()[0] == [] and a.socket_owners()[0] == ["acme"]
    a.register(ACME, "a1", ECHO, "1")
    a.declare_lane("linux")
    b.register(LANE, "y1", ECHO, None)
    with pytest.raises(Conflict):  # the same lane agent id, live on host b, cannot register on a
        a.register(LANE, "y1", ECHO, None)
    assert [r["key"] for r in a.load_agents()] == ["acme/a1"]
    assert [r["key"] for r in b.load_agents()] == ["lane:linux/y1"]
