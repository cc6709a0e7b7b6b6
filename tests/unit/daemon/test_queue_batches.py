"""Claims and results of one database-thread turn, written together (``claim_many``, ``finish_many``):
on PostgreSQL agents of one kind are leased in one statement and held results written in one
statement; every answer is what that claim or that result alone would have got (SQLite and
PostgreSQL alike)."""

from collections.abc import Iterator

import pytest

from colibri.errors import ResultTooLarge, StateConflict, TaskNotFound
from colibri.services.hive.rules import AgentRef, Policy, Scope
from colibri.services.hive.service import HiveService
from tests.unit.daemon.hive_world import active_tenants

ADMIN, ACME, LANE = Scope("admin"), Scope("tenant", "acme"), Scope("lane", "linux")


@pytest.fixture(name="hive")
def hive_fixture(db_url: str) -> Iterator[HiveService]:
    store = active_tenants(db_url, {"acme": "a"})
    hive = HiveService(store, Policy(lease_seconds=60, max_attempts=3, max_result_bytes=64), host="a")
    hive.hosts.start()
    hive.declare_lane("linux")
    yield hive
    store.close()


def lane(n: int, caps: frozenset[str] = frozenset({"echo"})) -> AgentRef:
    return AgentRef(f"lane:linux/x{n}", None, "linux", caps)


def test_agents_of_one_kind_take_the_oldest_tasks_in_order_each_its_own(hive: HiveService) -> None:
    ids = [hive.submit(ADMIN, "echo", n)["id"] for n in range(3)]
    other = hive.submit(ADMIN, "build", "b")["id"]
    agents = [lane(1), lane(2), AgentRef("acme/m1", "acme", None, frozenset({"echo"})), lane(3),
              lane(4, frozenset({"build", "echo"})), lane(5)]  # fmt: skip
    got = hive.claim_many(agents)
    assert [t and t["id"] for t in got] == [ids[0], ids[1], None, ids[2], other, None]  # acme has none queued
    leases = {t["lease"] for t in got if t is not None}
    assert len(leases) == 4
    for agent, task in zip(agents, got, strict=True):
        if task is not None:
            shown = hive.task(ADMIN, task["id"])
            assert (shown["agent"], shown["state"], shown["host"], shown["fence"], shown["attempts"]) == (
                agent.key, "running", "a", 1, 1)  # fmt: skip
            assert (task["agent"], task["fence"], task["lease_seconds"]) == (agent.key, 1, 60)
    assert hive.claim_many([lane(6), lane(7)]) == [None, None]


def test_results_written_together_are_each_answered_as_alone(hive: HiveService) -> None:
    ids = [hive.submit(ADMIN, "echo", n)["id"] for n in range(5)]
    mine = hive.submit(ADMIN, "echo", "acme's", tenant="acme")["id"]
    leases = hive.claim_many([lane(n) for n in range(6)])
    assert all(leases) and leases[1] is not None and leases[1]["id"] == mine  # a lane takes tenants in turn (R14)
    t = [(x["id"], x["lease"], x["agent"]) for x in leases if x is not None]
    t.sort(key=lambda x: x[0] == mine)  # the operator's five, then acme's
    done = hive.finish(LANE, t[4][2], t[4][0], t[4][1], True, {"first": 1}, None, 0)  # already reported
    answers = hive.finish_many([
        (LANE, t[0][2], t[0][0], t[0][1], True, {"ok": 0}, None, 0, 1),
        (LANE, t[1][2], t[1][0], "not-the-lease", True, None, None, 0, None),
        (LANE, t[2][2], t[2][0], t[2][1], False, None, "boom", 3, 2),  # another fence
        (LANE, t[3][2], t[3][0], t[3][1], True, "x" * 100, None, 0, None),  # too large
        (LANE, t[4][2], t[4][0], t[4][1], True, {"again": 1}, None, 0, None),  # a repeat: as recorded
        (LANE, t[0][2], t[0][0], t[0][1], True, {"twice": 1}, None, 0, 1),  # the same task twice
        (ACME, t[2][2], t[2][0], t[2][1], True, None, None, 0, None),  # not acme's task
        (LANE, t[5][2], t[5][0], t[5][1], False, None, "no", 2, None),
    ])  # fmt: skip
    assert isinstance(answers[1], StateConflict) and isinstance(answers[2], StateConflict)
    assert isinstance(answers[3], ResultTooLarge) and isinstance(answers[6], TaskNotFound)
    first, repeat, twice, last = answers[0], answers[4], answers[5], answers[7]
    assert isinstance(first, dict) and (first["state"], first["result"], first["exit_status"]) == (
        "succeeded",
        {"ok": 0},
        0,
    )
    assert isinstance(repeat, dict) and repeat["result"] == {"first": 1} and repeat == done
    assert isinstance(twice, dict) and twice["result"] == {"ok": 0}  # the first report stands
    assert isinstance(last, dict) and (last["state"], last["error"], last["tenant"]) == ("failed", "no", "acme")
    states = {i: hive.task(ADMIN, i)["state"] for i in ids}
    assert states == {ids[0]: "succeeded", ids[1]: "running", ids[2]: "running", ids[3]: "running",
                      ids[4]: "succeeded"}  # fmt: skip
    assert hive.task(ADMIN, mine)["state"] == "failed"
    usage = hive.usage("acme")
    assert (usage.queued, usage.finished) == (0, 1)
