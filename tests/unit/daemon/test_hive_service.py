"""HiveService on a real SQLite store in a tmp dir: routing, isolation, leases, retries."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session

from colibri.domain import capabilities_from_objects as parse_capabilities
from colibri.errors import (
    Conflict,
    InvalidInput,
    LimitExceeded,
    PermissionDenied,
    StateConflict,
    TaskNotFound,
    TenantNotFound,
)
from colibri.services.hive.rules import AgentRef, Policy, Scope
from colibri.services.hive.service import HiveService
from colibri.store.db import Store
from colibri.store.models import Agent
from tests.unit.daemon.hive_world import Clock, active_tenants


@pytest.fixture(name="store")
def store_fixture(tmp_path: Path, clock: "Clock") -> Iterator[Store]:
    store = active_tenants(f"sqlite:///{tmp_path / 'hive.db'}", {"acme": "h", "zed": "h"})
    store.clock = clock  # leases are on the database's clock (review R3): the tests move it
    yield store
    store.close()


@pytest.fixture(name="clock")
def clock_fixture() -> Clock:
    return Clock()


@pytest.fixture(name="hive")
def hive_fixture(store: Store, clock: Clock) -> HiveService:
    return HiveService(store, Policy(lease_seconds=60, max_attempts=2), clock=clock)


ACME, ZED, ADMIN = Scope("tenant", "acme"), Scope("tenant", "zed"), Scope("admin")
ECHO = [{"name": "echo", "version": "1"}]


def ref(key: str, tenant: str | None, lane: str | None = None) -> AgentRef:
    return AgentRef(key, tenant, lane, frozenset({"echo"}))


def test_a_tenants_task_goes_only_to_its_own_agents(hive: HiveService) -> None:
    hive.register(ACME, "a1", ECHO, "1")
    hive.register(ZED, "z1", ECHO, "1")
    task = hive.submit(ADMIN, "echo", {"x": 1}, tenant="acme")
    assert hive.claim(ref("zed/z1", "zed")) is None
    claimed = hive.claim(ref("acme/a1", "acme"))
    assert claimed is not None and claimed["id"] == task["id"] and claimed["attempts"] == 1
    assert hive.claim(ref("acme/a1", "acme")) is None  # leased once, never twice


def test_lane_agents_take_any_tenant_and_operator_tasks(hive: HiveService) -> None:
    assert hive.declare_lane("gpu") and not hive.declare_lane("gpu")
    hive.register(Scope("lane", "gpu"), "g1", ECHO, None)
    first = hive.submit(ADMIN, "echo", 1, tenant="zed")
    second = hive.submit(ADMIN, "echo", 2)
    lane = ref("lane:gpu/g1", None, "gpu")
    assert [hive.claim(lane)["id"], hive.claim(lane)["id"]] == [first["id"], second["id"]]  # type: ignore[index]
    assert hive.claim(ref("acme/a1", "acme")) is None


def test_an_agent_socket_cannot_name_another_tenant(hive: HiveService) -> None:
    with pytest.raises(PermissionDenied):
        hive.submit(ACME, "echo", 1, tenant="zed")
    mine = hive.submit(ACME, "echo", 1)
    assert mine["tenant"] == "acme" and mine["submitted_by"] == "tenant:acme"
    with pytest.raises(TaskNotFound):
        hive.task(ZED, mine["id"])
    assert hive.task(ADMIN, mine["id"])["id"] == mine["id"]


def test_finish_needs_the_current_lease(hive: HiveService) -> None:
    hive.register(ACME, "a1", ECHO, "1")
    task = hive.submit(ADMIN, "echo", {"in": 1}, tenant="acme")
    claimed = hive.claim(ref("acme/a1", "acme"))
    assert claimed is not None
    with pytest.raises(StateConflict):
        hive.finish(ACME, "acme/a1", task["id"], "wrong", True, None, None, 0)
    with pytest.raises(TaskNotFound):
        hive.finish(ZED, "zed/z1", task["id"], claimed["lease"], True, None, None, 0)
    done = hive.finish(ACME, "acme/a1", task["id"], claimed["lease"], True, {"out": 1}, None, 0)
    assert done["state"] == "succeeded" and done["result"] == {"out": 1}
    # finished is final: the same report again (its answer was lost) gets the recorded task back
    again = hive.finish(ACME, "acme/a1", task["id"], claimed["lease"], False, None, "late", 1)
    assert again["state"] == "succeeded" and again["result"] == {"out": 1} and again["error"] is None
    with pytest.raises(StateConflict):  # another lease, or another agent, still may not
        hive.finish(ACME, "acme/a1", task["id"], "wrong", False, None, "late", 1)
    with pytest.raises(StateConflict):
        hive.finish(ACME, "acme/a2", task["id"], claimed["lease"], False, None, "late", 1)


def test_expired_leases_requeue_then_fail_after_max_attempts(hive: HiveService, clock: Clock) -> None:
    hive.register(ACME, "a1", ECHO, "1")
    task = hive.submit(ADMIN, "echo", 1, tenant="acme")
    for attempt in (1, 2):
        claimed = hive.claim(ref("acme/a1", "acme"))
        assert claimed is not None and claimed["attempts"] == attempt
        assert hive.expire_leases() == []  # not yet
        clock.now += 61
        [requeued] = hive.expire_leases()
        assert requeued.task_id == task["id"]
    shown = hive.task(ADMIN, task["id"])
    assert shown["state"] == "failed" and shown["error"].startswith("gave up after 2 attempts: lease expired")


def test_lost_deregistered_or_reregistered_agents_give_their_tasks_back(hive: HiveService) -> None:
    hive.register(ACME, "a1", ECHO, "1")
    task = hive.submit(ADMIN, "echo", 1, tenant="acme")
    assert hive.claim(ref("acme/a1", "acme")) is not None
    [requeued] = hive.set_states([("acme/a1", "lost")])
    assert requeued.state == "queued" and "was lost" in str(hive.task(ADMIN, task["id"])["error"])
    record, again = hive.register(ACME, "a1", ECHO, "1")
    assert record["state"] == "active" and again == []
    assert hive.claim(ref("acme/a1", "acme")) is not None
    [failed] = hive.deregister("acme/a1")
    assert failed.state == "failed"  # two attempts spent: it fails, with the reason, never silently
    assert hive.agents(state="left")[0]["key"] == "acme/a1"


def test_heartbeats_flush_in_one_batch(hive: HiveService, store: Store) -> None:
    hive.register(ACME, "a1", ECHO, "1")
    hive.register(ACME, "a2", ECHO, "1")
    assert hive.flush_heartbeats([("acme/a1", 2_000_000_000.0), ("acme/a2", 2_000_000_001.0)]) == 2
    with Session(store.engine) as session:
        agent = session.get(Agent, "acme/a2")
        assert agent is not None and agent.last_seen_at.year == 2033
    assert {a["key"] for a in hive.load_agents()} == {"acme/a1", "acme/a2"}


def test_validation(hive: HiveService) -> None:
    with pytest.raises(TenantNotFound):
        hive.register(Scope("tenant", "ghost"), "a", ECHO, None)
    with pytest.raises(InvalidInput):
        hive.register(ACME, "../etc", ECHO, None)
    with pytest.raises(InvalidInput):
        parse_capabilities([{"name": "echo"}, {"name": "echo"}])
    with pytest.raises(InvalidInput):
        hive.submit(ADMIN, "echo", "x" * 300_000)
    with pytest.raises(TenantNotFound):
        hive.submit(ADMIN, "echo", 1, tenant="ghost")
    assert hive.task_counts() == {"queued": 0, "running": 0, "succeeded": 0, "failed": 0}
    assert hive.socket_owners() == (["acme", "zed"], [])
    assert hive.removed_tenants(["acme", "ghost"]) == ["ghost"]


def test_a_tenants_live_agents_are_capped_and_its_gone_ones_pruned(store: Store, clock: Clock) -> None:
    hive = HiveService(store, Policy(max_agents=2), clock=clock)
    hive.register(ACME, "a1", ECHO, "1")
    hive.register(ACME, "a2", ECHO, "1")
    with pytest.raises(LimitExceeded, match="already has 2 live agents"):
        hive.register(ACME, "a3", ECHO, "1")
    hive.register(ACME, "a1", ECHO, "1")  # a live agent registering again is not a new one
    hive.register(ZED, "z1", ECHO, "1")  # another tenant is not affected
    for n in range(6):  # churn: new ids, each deregistered; the table keeps at most max_agents gone rows
        hive.deregister("acme/a2" if n == 0 else f"acme/c{n - 1}")
        hive.register(ACME, f"c{n}", ECHO, "1")
    rows = [a for a in hive.agents("acme") if a["state"] in ("left", "lost")]
    assert len(rows) <= 2


def test_unfinished_tasks_and_their_payload_bytes_are_capped_per_tenant(store: Store, clock: Clock) -> None:
    hive = HiveService(store, Policy(max_queued_tasks=3, max_queued_bytes=2000), clock=clock)
    for n in range(3):
        hive.submit(ACME, "echo", n)
    with pytest.raises(LimitExceeded, match="3 unfinished tasks"):
        hive.submit(ACME, "echo", 4)
    with pytest.raises(LimitExceeded, match="unfinished tasks"):
        hive.submit(ADMIN, "echo", 4, tenant="acme")  # the tenant's queue is full, whoever submits
    hive.submit(ZED, "echo", "x" * 1500)  # another tenant is not affected
    with pytest.raises(LimitExceeded, match="payload bytes"):
        hive.submit(ZED, "echo", "x" * 600)
    hive.register(ACME, "a1", ECHO, "1")
    claimed = hive.claim(ref("acme/a1", "acme"))
    assert claimed is not None
    with pytest.raises(LimitExceeded):  # running still counts: it is not finished
        hive.submit(ACME, "echo", 4)
    hive.finish(ACME, "acme/a1", claimed["id"], claimed["lease"], True, None, None, 0)
    assert hive.submit(ACME, "echo", 4)["state"] == "queued"


def test_submit_with_an_idempotency_key_returns_the_first_task(hive: HiveService) -> None:
    first = hive.submit(ACME, "echo", {"a": 1}, idempotency_key="k-1")
    again = hive.submit(ACME, "echo", {"a": 1}, idempotency_key="k-1")
    assert first["created"] is True and again["created"] is False and again["id"] == first["id"]
    with pytest.raises(Conflict, match="another body"):
        hive.submit(ACME, "echo", {"a": 2}, idempotency_key="k-1")
    other = hive.submit(ZED, "echo", {"a": 1}, idempotency_key="k-1")  # keys are per submitter
    assert other["id"] != first["id"]
    assert hive.submit(ACME, "echo", {"a": 1})["id"] != first["id"]  # no key: a new task each time
    with pytest.raises(InvalidInput, match="idempotency_key"):
        hive.submit(ACME, "echo", 1, idempotency_key="bad key\x1b")


def test_release_gives_a_lease_back_without_spending_an_attempt(hive: HiveService) -> None:
    hive.register(ACME, "a1", ECHO, "1")
    task = hive.submit(ACME, "echo", 1)
    claimed = hive.claim(ref("acme/a1", "acme"))
    assert claimed is not None and claimed["attempts"] == 1
    assert not hive.release(task["id"], "another lease")
    assert hive.release(task["id"], claimed["lease"])
    shown = hive.task(ADMIN, task["id"])
    assert shown["state"] == "queued" and shown["attempts"] == 0 and shown["agent"] is None
    assert not hive.release(task["id"], claimed["lease"])  # once only


def _finish_one(hive: HiveService, scope: Scope, key: str, result: object) -> int:
    task = hive.submit(scope, "echo", 1)
    claimed = hive.claim(ref(key, scope.name))
    assert claimed is not None and claimed["id"] == task["id"]
    hive.finish(scope, key, claimed["id"], claimed["lease"], True, result, None, 0)
    return int(claimed["id"])


def test_finished_tasks_are_kept_per_tenant_within_their_caps(store: Store, clock: Clock) -> None:
    hive = HiveService(store, Policy(max_finished_tasks=3, max_finished_bytes=5000), clock=clock)
    hive.register(ACME, "a1", ECHO, "1")
    hive.register(ZED, "z1", ECHO, "1")
    zed = [_finish_one(hive, ZED, "zed/z1", "ok") for _ in range(2)]
    acme = [_finish_one(hive, ACME, "acme/a1", "ok") for _ in range(6)]
    assert [t["id"] for t in hive.tasks("acme")] == acme[:2:-1]  # the newest 3, oldest pruned first
    big = [_finish_one(hive, ACME, "acme/a1", "r" * 2000) for _ in range(3)]
    assert [t["id"] for t in hive.tasks("acme")] == big[:0:-1]  # 2 x 2,002 bytes fit in 5,000
    assert [t["id"] for t in hive.tasks("zed")] == zed[::-1]
    usage = hive.usage("acme")
    assert (usage.queued, usage.finished) == (0, 2)
    # A fresh service reads the same usage from the store.
    assert HiveService(store, Policy(), clock=clock).usage("acme") == usage


def test_a_refused_submit_does_not_touch_the_store(store: Store, clock: Clock) -> None:
    hive = HiveService(store, Policy(max_queued_tasks=2), clock=clock)
    hive.submit(ACME, "echo", 1)
    hive.submit(ACME, "echo", 2)
    store.engine.dispose()
    real, store.session = store.session, None  # type: ignore[assignment,method-assign]
    try:
        with pytest.raises(LimitExceeded, match="2 unfinished tasks"):
            hive.submit(ACME, "echo", 3)
    finally:
        store.session = real  # type: ignore[method-assign]


def test_a_result_over_the_cap_is_refused(hive: HiveService) -> None:
    from colibri.errors import ResultTooLarge

    small = HiveService(hive._store, Policy(max_result_bytes=1024))
    small.register(ACME, "a1", ECHO, "1")
    small.submit(ACME, "echo", 1)
    claimed = small.claim(ref("acme/a1", "acme"))
    assert claimed is not None
    with pytest.raises(ResultTooLarge, match="1024 bytes"):
        small.finish(ACME, "acme/a1", claimed["id"], claimed["lease"], True, "r" * 1100, None, 0)


def test_finished_tasks_past_their_retention_are_deleted(store: Store, clock: Clock) -> None:
    hive = HiveService(store, Policy(retention_seconds=60), clock=clock)
    hive.register(ACME, "a1", ECHO, "1")
    done = _finish_one(hive, ACME, "acme/a1", "ok")
    queued = hive.submit(ACME, "other", 1)["id"]
    assert hive.prune_expired() == 0
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE tasks SET finished_at = '2000-01-01 00:00:00.000000' WHERE id = :i"), {"i": done})
    assert hive.prune_expired() == 1
    assert [t["id"] for t in hive.tasks("acme")] == [queued]
    assert hive.usage("acme").finished == 0


def test_a_lease_given_back_is_recorded_with_the_agent_it_was_leased_to(store: Store, hive: HiveService) -> None:
    import json

    from sqlalchemy import text

    hive.register(ZED, "z1", ECHO, "1")
    task = hive.submit(ZED, "echo", 1)
    claimed = hive.claim(ref("zed/z1", "zed"))
    assert claimed is not None and hive.release(task["id"], claimed["lease"])
    with store.engine.connect() as conn:
        bodies = [json.loads(b) for (b,) in conn.execute(text("SELECT body FROM audit_entries ORDER BY seq"))]
    given = [e for e in bodies if e["action"] == "task.requeue" and e["subject"] == f"task:{task['id']}"]
    assert [e["detail"]["agent"] for e in given] == ["zed/z1"], given


def test_a_move_records_each_agent_it_retires_by_the_operator_and_no_other(store: Store, hive: HiveService) -> None:
    import json

    from sqlalchemy import text

    from colibri.audit import origin
    from colibri.services.hive.moves import leave_old_host

    hive.register(ACME, "a1", ECHO, "1")
    hive.register(ACME, "a2", ECHO, "1")
    hive.register(ZED, "z1", ECHO, "1")
    task = hive.submit(ACME, "echo", 1)
    assert hive.claim(ref("acme/a2", "acme")) is not None
    with store.engine.connect() as conn:
        seen = conn.execute(text("SELECT max(seq) FROM audit_entries")).scalar_one()
    with origin.acting("operator:uid=0"), store.session() as session:
        assert leave_old_host(session, "acme", "domedog") == [task["id"]]
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT body FROM audit_entries WHERE seq > :s ORDER BY seq"), {"s": seen}).all()
    after = [json.loads(b) for (b,) in rows]
    assert sorted((e["action"], e["subject"], e["actor"]) for e in after) == [
        ("agent.leave", "agent:acme/a1", "operator:uid=0"),
        ("agent.leave", "agent:acme/a2", "operator:uid=0"),
        ("task.requeue", f"task:{task['id']}", "operator:uid=0"),
    ]  # zed's agent is not the move's
    assert [e["detail"]["agent"] for e in after if e["action"] == "task.requeue"] == ["acme/a2"]
