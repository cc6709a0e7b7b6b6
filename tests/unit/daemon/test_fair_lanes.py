"""Fair lanes (review R14): a shared lane takes the tenants' tasks in turn, each tenant's oldest
first, on SQLite and on PostgreSQL (one claim at a time, and a batch of claims in one statement)."""

from collections.abc import Iterator

import pytest
from sqlmodel import Session

from colibri.services.hive.rules import AgentRef, Policy, Scope
from colibri.services.hive.service import HiveService
from colibri.store.db import Store
from colibri.store.models import Task
from tests.unit.daemon.hive_world import Clock, active_tenants

ECHO = [{"name": "echo", "version": "1"}]


@pytest.fixture(name="hive")
def hive_fixture(db_url: str) -> Iterator[HiveService]:
    store = active_tenants(db_url, {"acme": "a", "bolt": "a", "cork": "a"})
    hive = HiveService(store, Policy(lease_seconds=60), clock=Clock(), host="a")
    hive.hosts.start()
    hive.declare_lane("linux")
    yield hive
    store.close()


def _lanes(count: int) -> list[AgentRef]:
    return [AgentRef(f"lane:linux/x{n}", None, "linux", frozenset({"echo"})) for n in range(count)]


def _submit(hive: HiveService, tenant: str | None, count: int) -> list[int]:
    scope = Scope("admin") if tenant is None else Scope("tenant", tenant)
    return [int(hive.submit(scope, "echo", n)["id"]) for n in range(count)]


def _who(claims: list[dict[str, object] | None]) -> list[tuple[object, object]]:
    return [(c["tenant"], c["payload"]) for c in claims if c is not None]


ROUND_ROBIN = [("acme", 0), ("bolt", 0), (None, 0), ("acme", 1), ("bolt", 1), ("acme", 2)]


def test_a_lane_takes_the_tenants_in_turn_one_claim_at_a_time(hive: HiveService) -> None:
    _submit(hive, "acme", 3)
    _submit(hive, "bolt", 2)
    _submit(hive, None, 1)  # the operator's tasks take their turn as one more tenant
    lane = _lanes(1)[0]
    claims = [hive.claim(lane) for _ in range(7)]
    assert _who(claims) == ROUND_ROBIN and claims[-1] is None


def test_a_batch_of_lane_claims_keeps_the_same_order(hive: HiveService) -> None:
    _submit(hive, "acme", 3)
    _submit(hive, "bolt", 2)
    _submit(hive, None, 1)
    assert _who(hive.claim_many(_lanes(6))) == ROUND_ROBIN  # PostgreSQL: one statement (claim_several)


def test_a_tenant_arriving_behind_a_backlog_waits_one_round_not_the_whole_backlog(hive: HiveService) -> None:
    _submit(hive, "acme", 50)
    lanes = _lanes(2)
    assert _who(hive.claim_many(lanes)) == [("acme", 0), ("acme", 1)]
    _submit(hive, "bolt", 2)  # at the head's round, after acme's task of that round
    _submit(hive, "cork", 1)
    claims = [hive.claim(lanes[0]) for _ in range(5)]
    assert _who(claims) == [("acme", 2), ("bolt", 0), ("cork", 0), ("acme", 3), ("bolt", 1)]


def test_a_requeued_task_keeps_its_round_and_a_tenants_own_agent_still_takes_its_oldest(hive: HiveService) -> None:
    acme = _submit(hive, "acme", 3)
    _submit(hive, "bolt", 3)
    lane = _lanes(1)[0]
    first = hive.claim(lane)
    assert first is not None and first["id"] == acme[0]
    assert hive.release(acme[0], str(first["lease"]))  # given back: its round is still the first
    assert _who([hive.claim(lane), hive.claim(lane)]) == [("acme", 0), ("bolt", 0)]
    hive.register(Scope("tenant", "acme"), "m1", ECHO, None)
    mine = hive.claim(AgentRef("acme/m1", "acme", None, frozenset({"echo"})))
    assert mine is not None and mine["id"] == acme[1]


def test_rows_queued_before_the_rounds_existed_go_first_oldest_first(hive: HiveService, db_url: str) -> None:
    early = _submit(hive, "acme", 2)
    with Session(hive._ledger.store.engine) as session:  # as migration 0008 leaves them: round 0
        for task_id in early:
            task = session.get(Task, task_id)
            assert task is not None
            task.turn = 0
            session.add(task)
        session.commit()
    _submit(hive, "bolt", 1)
    assert _who(hive.claim_many(_lanes(3))) == [("acme", 0), ("acme", 1), ("bolt", 0)]  # one round 0, by id


def test_the_round_is_set_in_the_store_per_tenant_and_capability(db_url: str) -> None:
    store: Store = active_tenants(db_url, {"acme": "a"})
    try:
        hive = HiveService(store, Policy(), clock=Clock(), host="a")
        ids = [hive.submit(Scope("tenant", "acme"), cap, 0)["id"] for cap in ("echo", "echo", "build", "echo")]
        with Session(store.engine) as session:
            turns = [session.get(Task, i).turn for i in ids]  # type: ignore[union-attr]
        assert turns == [0, 1, 0, 2]
    finally:
        store.close()


def test_a_lane_of_several_capabilities_takes_the_tenants_in_turn_across_them(hive: HiveService) -> None:
    for n in range(3):
        hive.submit(Scope("tenant", "acme"), "echo", n)
    hive.submit(Scope("tenant", "bolt"), "build", 0)
    hive.submit(Scope("tenant", "cork"), "other", 0)  # a capability the lane does not offer
    wide = [AgentRef(f"lane:linux/w{n}", None, "linux", frozenset({"echo", "build"})) for n in range(3)]
    one = [hive.claim(wide[0]), hive.claim(wide[0])]  # PostgreSQL: one index walk a capability
    assert _who(one) == [("acme", 0), ("bolt", 0)]
    assert _who(hive.claim_many(wide)) == [("acme", 1), ("acme", 2)]  # the batch, the same order
    assert hive.claim(wide[0]) is None
