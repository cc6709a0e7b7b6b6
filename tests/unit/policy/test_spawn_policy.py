"""The spawn policy's service on SQLite and on the real PostgreSQL (issue 14, part A1): decide and
reserve in one transaction, never over-admitting; every decision an audit entry, written first."""

import json
import threading
from collections import Counter

import pytest
from sqlalchemy import text

from colibri.errors import InvalidInput, PolicyDenied, StateConflict
from colibri.services.policy.admin import PolicyAdmin, PolicyChange
from colibri.services.policy.service import BIND_TTL, ChildRequest, SpawnPolicyService
from colibri.store.db import Store
from tests.unit.audit.test_audit_hooks import refuse_audit_writes

ACTOR = "agent:queen/a1"


def decisions(store: Store, tenant: str = "queen") -> list[dict[str, object]]:
    query = "SELECT body FROM audit_entries WHERE action = 'policy.decide' AND tenant = :t ORDER BY host, seq"
    with store.engine.connect() as conn:
        return [json.loads(row[0]) for row in conn.execute(text(query), {"t": tenant})]


def reservations(store: Store) -> Counter[str]:
    with store.engine.connect() as conn:
        return Counter(str(r[0]) for r in conn.execute(text("SELECT state FROM spawn_reservations")))


def link(store: Store, child: str, parent: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE tenants SET parent = :p WHERE tenant_id = :c"), {"p": parent, "c": child})


def ask(service: SpawnPolicyService, parent: str = "queen", **asked: object) -> object:
    return service.decide(ChildRequest(parent, "a1", **asked), actor=ACTOR)  # type: ignore[arg-type]


def test_off_by_default_and_every_decision_is_logged(world: Store) -> None:
    service = SpawnPolicyService(world)
    decision = service.decide(ChildRequest("queen", "a1"), actor=ACTOR)
    assert (decision.allowed, decision.rule, decision.reservation) == (False, "default-off", None)
    PolicyAdmin(world).set("queen", PolicyChange(allowed=True, max_children=2))
    granted = service.decide(ChildRequest("queen", "a1"), actor=ACTOR)
    assert granted.allowed and granted.rule == "allow" and granted.depth == 1 and granted.reservation
    PolicyAdmin(world).set("queen", PolicyChange(allowed=False))
    assert service.decide(ChildRequest("queen", "a1"), actor=ACTOR).rule == "tenant-off"
    logged = decisions(world)
    assert [(e["outcome"], e["detail"]["rule"]) for e in logged] == [  # type: ignore[index]
        ("refused", "default-off"), ("ok", "allow"), ("refused", "tenant-off"),
    ]  # fmt: skip
    assert logged[1]["detail"]["reservation"] == granted.reservation  # type: ignore[index]
    assert logged[1]["actor"] == ACTOR and logged[1]["detail"]["lineage"] == ["queen"]  # type: ignore[index]
    listed = PolicyAdmin(world).decisions("queen")
    assert [d["rule"] for d in listed if d["action"] == "policy.decide"] == ["default-off", "allow", "tenant-off"]


def test_100_concurrent_requests_against_5_give_exactly_5(world: Store) -> None:
    PolicyAdmin(world).set("queen", PolicyChange(allowed=True, max_children=5, rate="1000/h"))
    service = SpawnPolicyService(world)
    results: list[object] = []
    start = threading.Barrier(100)

    def worker(n: int) -> None:
        start.wait()
        results.append(service.decide(ChildRequest("queen", f"a{n}"), actor=ACTOR))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rules = Counter(d.rule for d in results)  # type: ignore[attr-defined]
    assert rules == {"allow": 5, "max-children": 95}
    assert reservations(world) == {"reserved": 5}
    logged = Counter(e["detail"]["rule"] for e in decisions(world))  # type: ignore[index]
    assert logged == {"allow": 5, "max-children": 95}
    counted = sorted(e["detail"]["children"] for e in decisions(world))  # type: ignore[index]
    assert counted[-95:] == [5] * 95  # every denial saw the 5 made before it, none saw fewer


def test_a_released_place_is_free_again_and_a_used_one_counts(world: Store) -> None:
    PolicyAdmin(world).set("queen", PolicyChange(allowed=True, max_children=2))
    service = SpawnPolicyService(world)
    first, second = ask(service), ask(service)
    assert ask(service).rule == "max-children"  # type: ignore[attr-defined]
    service.bind(first.reservation, "worker")  # type: ignore[attr-defined]
    service.use(first.reservation)  # type: ignore[attr-defined]
    service.use(first.reservation)  # type: ignore[attr-defined]  # again: nothing changes
    service.release(second.reservation, why="the jail could not be created")  # type: ignore[attr-defined]
    with pytest.raises(StateConflict):
        service.release(first.reservation, why="too late")  # type: ignore[attr-defined]
    with pytest.raises(StateConflict):
        service.use(second.reservation)  # type: ignore[attr-defined]
    assert reservations(world) == {"used": 1, "released": 1}
    assert PolicyAdmin(world).show("worker")["parent"] == "queen"  # use linked the child
    assert ask(service).allowed  # type: ignore[attr-defined]
    assert ask(service).rule == "max-children"  # type: ignore[attr-defined]
    assert service.retire("worker", why="removed") and not service.retire("worker", why="again")
    assert ask(service).allowed  # type: ignore[attr-defined]


def test_depth_1_holds_and_a_child_never_exceeds_its_lineage(world: Store) -> None:
    admin = PolicyAdmin(world)
    admin.set("queen", PolicyChange(allowed=True, max_children=3, capabilities="echo,fetch", templates="*"))
    link(world, "worker", "queen")
    service = SpawnPolicyService(world)
    with pytest.raises(InvalidInput, match="max-depth"):
        admin.set("worker", PolicyChange(allowed=True, max_depth=1))  # queen's depth 1: the child gets 0
    admin.set("worker", PolicyChange(allowed=True, max_depth=0, capabilities="echo"))
    assert ask(service, "worker").rule == "max-depth"  # type: ignore[attr-defined]
    with pytest.raises(InvalidInput, match="capabilities shell"):
        admin.set("worker", PolicyChange(capabilities="echo,shell"))
    with pytest.raises(InvalidInput, match="max-children"):
        admin.set("worker", PolicyChange(max_children=4))
    with pytest.raises(InvalidInput, match="rate"):
        admin.set("worker", PolicyChange(rate="11/h"))
    # the parent allows depth 2: the child may spawn, never past the lineage's lists
    admin.set("queen", PolicyChange(max_depth=2))
    admin.set("worker", PolicyChange(max_depth=1))
    granted = ask(service, "worker", capabilities=("echo",))
    assert granted.allowed and granted.depth == 2  # type: ignore[attr-defined]
    assert ask(service, "worker", capabilities=("fetch",)).rule == "capability"  # type: ignore[attr-defined]
    link(world, "grand", "worker")
    admin.set("grand", PolicyChange(allowed=True, max_depth=0))
    assert ask(service, "grand").rule == "max-depth"  # type: ignore[attr-defined]
    admin.set("queen", PolicyChange(capabilities="fetch"))  # narrowing the parent narrows the child at once
    assert ask(service, "worker", capabilities=("echo",)).rule == "capability"  # type: ignore[attr-defined]
    admin.set("queen", PolicyChange(allowed=False))
    assert ask(service, "worker").rule == "ancestor-off"  # type: ignore[attr-defined]


def test_the_global_switch_denies_everything(world: Store) -> None:
    admin = PolicyAdmin(world)
    admin.set("queen", PolicyChange(allowed=True))
    service = SpawnPolicyService(world)
    admin.set_global(True)
    assert ask(service).rule == "global-forbid"  # type: ignore[attr-defined]
    assert ask(service, "other").rule == "global-forbid"  # type: ignore[attr-defined]
    assert admin.show("queen")["enabled"] is False and admin.global_state()["forbid"] is True
    admin.set_global(False)
    assert ask(service).allowed  # type: ignore[attr-defined]
    assert reservations(world) == {"reserved": 1}


def test_the_rate_counts_denials_too(world: Store) -> None:
    PolicyAdmin(world).set("queen", PolicyChange(allowed=True, max_children=1, rate="3/h"))
    now = [1_000_000.0]
    service = SpawnPolicyService(world, clock=lambda: now[0])
    rules = [ask(service).rule for _ in range(5)]  # type: ignore[attr-defined]
    assert rules == ["allow", "max-children", "max-children", "rate", "rate"]
    now[0] += 3600  # a new window
    assert ask(service).rule == "max-children"  # type: ignore[attr-defined]
    assert ask(service, "other").rule == "default-off"  # type: ignore[attr-defined]  # other tenants unaffected


def test_a_request_outside_the_lists_is_denied_by_the_rule_naming_it(world: Store) -> None:
    PolicyAdmin(world).set(
        "queen", PolicyChange(allowed=True, templates="small", capabilities="echo", skills="mother", hosts="h")
    )
    service = SpawnPolicyService(world)
    assert ask(service, template="big").rule == "template"  # type: ignore[attr-defined]
    assert ask(service, capabilities=("echo", "shell")).rule == "capability"  # type: ignore[attr-defined]
    assert ask(service, skills=("browser",)).rule == "skill"  # type: ignore[attr-defined]
    assert ask(service, host="osb").rule == "host"  # type: ignore[attr-defined]
    assert ask(service, capabilities=("x\x1b[2J",)).rule == "request"  # type: ignore[attr-defined]
    whole = ask(service, template="small", capabilities=("echo",), skills=("mother",), host="h")
    assert whole.allowed  # type: ignore[attr-defined]
    held = service.reservation(whole.reservation)  # type: ignore[attr-defined]
    assert held.request == {"template": "small", "capabilities": ["echo"], "skills": ["mother"], "host": "h"}


def test_an_audit_write_failure_denies_and_reserves_nothing(world: Store) -> None:
    PolicyAdmin(world).set("queen", PolicyChange(allowed=True))
    refuse_audit_writes(world)
    with pytest.raises(PolicyDenied, match="could not be recorded") as denied:
        ask(SpawnPolicyService(world))
    assert denied.value.exit_code == 23 and denied.value.rule == "audit-failed"
    assert reservations(world) == {}


def test_a_reservation_never_bound_is_released_after_the_bind_window_a_bound_one_keeps_the_spawns(
    world: Store,
) -> None:
    PolicyAdmin(world).set("queen", PolicyChange(allowed=True, max_children=2))
    now = [2_000_000.0]
    service = SpawnPolicyService(world, reservation_ttl=900, clock=lambda: now[0])
    lone, bound = ask(service), ask(service)  # the daemon killed after deciding lone, before its bind
    now[0] += 10
    service.bind(bound.reservation, "worker")  # type: ignore[attr-defined]
    now[0] += BIND_TTL - 5  # lone: the window is over; bound: 900 s from its bind
    assert service.sweep() == 1
    assert service.reservation(lone.reservation).state == "released"  # type: ignore[attr-defined]
    assert service.reservation(bound.reservation).state == "reserved"  # type: ignore[attr-defined]
    assert ask(service).allowed  # the place the killed daemon held is free again, 15 minutes early
    now[0] += 900
    assert service.sweep() == 2  # bound: its child exists, used; the new one never bound, released


def test_sweep_settles_expired_reservations_and_never_a_live_one(world: Store) -> None:
    PolicyAdmin(world).set("queen", PolicyChange(allowed=True, max_children=3))
    now = [2_000_000.0]
    service = SpawnPolicyService(world, reservation_ttl=60, clock=lambda: now[0])
    bound, lone, fresh = ask(service), ask(service), None
    service.bind(bound.reservation, "worker")  # type: ignore[attr-defined]  # its tenant exists
    service.bind(lone.reservation, "nobody-made-me")  # type: ignore[attr-defined]
    now[0] += 30
    fresh = ask(service)
    assert service.sweep() == 0
    now[0] += 31
    assert service.sweep() == 2 and service.sweep() == 0
    assert service.reservation(bound.reservation).state == "used"  # type: ignore[attr-defined]
    assert service.reservation(lone.reservation).state == "released"  # type: ignore[attr-defined]
    assert service.reservation(fresh.reservation).state == "reserved"  # type: ignore[attr-defined]
    with pytest.raises(StateConflict):
        service.use(lone.reservation)  # type: ignore[attr-defined]  # the late spawner learns it
