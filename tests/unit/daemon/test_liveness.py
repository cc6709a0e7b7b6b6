"""The in-memory registry: interval scaling, jitter, stale then lost, coalesced heartbeats."""

from typing import Any

from colibri.daemon.liveness import Registry
from colibri.services.hive.rules import Policy


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(key: str, tenant: str | None = "acme", lane: str | None = None) -> dict[str, Any]:
    return {"key": key, "tenant": tenant, "lane": lane, "capabilities": [{"name": "echo"}], "state": "active"}


def test_the_interval_grows_with_the_fleet_so_the_rate_stays_bounded() -> None:
    policy = Policy(heartbeat_interval=10, heartbeat_rate_limit=200)
    assert policy.base_interval(100) == 10
    assert policy.base_interval(10_000) == 50  # 10,000 agents / 200 per second
    for rand in (0.0, 0.5, 0.999):
        interval = policy.next_interval(10_000, lambda r=rand: r)
        assert 50 <= interval < 62.5
        assert 10_000 / interval <= 200  # never above the rate limit, whatever the jitter


def test_never_lost_on_the_first_miss() -> None:
    policy = Policy(heartbeat_interval=10, stale_after=5, lost_after=20)
    stale, lost = policy.ttls(10)
    assert stale == 25 and lost == 40  # at least 2.5 intervals, and the configured grace after


def test_stale_then_lost_then_register_again() -> None:
    clock = Clock()
    registry = Registry(Policy(heartbeat_interval=1, stale_after=3, lost_after=6), clock=clock, rand=lambda: 0.0)
    registry.upsert(record("acme/a"))
    clock.now += 2
    assert registry.sweep() == []
    clock.now += 1.5
    assert registry.sweep() == [("acme/a", "stale")]
    assert registry.beat("acme/a") is not None  # a stale agent that beats is active again
    clock.now += 6
    assert registry.sweep() == [("acme/a", "lost")]
    assert registry.beat("acme/a") is None  # lost: it must register again
    assert registry.counts()["lost"] == 1
    registry.upsert(record("acme/a"))
    assert registry.counts() == {"active": 1, "stale": 0, "lost": 0, "left": 0}


def test_a_daemon_that_did_not_run_does_not_lose_its_agents_for_it() -> None:
    """Frozen (SIGSTOP) 5 s under a 2 s lost TTL: the agents could not reach it; not their fault."""
    clock = Clock()
    registry = Registry(Policy(heartbeat_interval=0.2, stale_after=1, lost_after=2), clock=clock, rand=lambda: 0.0)
    registry.upsert(record("acme/a"))
    assert registry.sweep(tick=0.1) == []
    clock.now += 0.5
    assert registry.sweep(tick=0.1) == []
    clock.now += 5.0  # the stall
    assert registry.sweep(tick=0.1) == []  # 0.5 s + 5 s, 4.9 s of it credited: 0.6 s silent
    clock.now += 0.6
    assert registry.sweep(tick=0.1) == [("acme/a", "stale")]  # silence while it ran counts
    clock.now += 5.0
    assert registry.sweep() == [("acme/a", "lost")]  # no pause_after: every second counts


def test_heartbeats_are_coalesced() -> None:
    registry = Registry(Policy(), wall=lambda: 5.0)
    registry.upsert(record("acme/a"))
    registry.upsert(record("acme/b"))
    for _ in range(1000):
        registry.beat("acme/a")
    batch = registry.take_dirty()
    assert batch == [("acme/a", 5.0)] and registry.heartbeats == 1000
    assert registry.take_dirty() == []
    registry.restore_dirty(batch)
    assert registry.take_dirty() == batch


def test_a_beating_agents_row_is_rewritten_once_per_write_interval_its_lease_every_flush() -> None:
    clock = Clock()
    registry = Registry(Policy(heartbeat_interval=1, stale_after=3, lost_after=6), clock=clock, wall=clock)
    registry.write_every = 60.0
    registry.upsert(record("acme/a"))  # registering wrote its row
    for _ in range(5):  # beats: the lease keeps being extended, the row is not rewritten
        clock.now += 1
        registry.beat("acme/a")
        assert registry.take_flush() == ([], ["acme/a"])
    clock.now += 55
    registry.beat("acme/a")
    assert registry.take_flush() == ([("acme/a", 160.0)], ["acme/a"])  # 60 s after the registration
    clock.now += 4
    assert registry.sweep() == [("acme/a", "stale")]  # written as stale by the sweep
    registry.beat("acme/a")
    assert registry.take_flush() == ([("acme/a", 164.0)], ["acme/a"])  # active again: written at once
    assert registry.take_flush() == ([], [])


def test_routing_and_waiting_reason() -> None:
    registry = Registry(Policy())
    acme = registry.upsert(record("acme/a"))
    lane = registry.upsert(record("lane:gpu/g", None, "gpu"))
    assert registry.may_take(acme, "acme", "echo") and not registry.may_take(acme, "zed", "echo")
    assert registry.may_take(lane, "zed", "echo") and registry.may_take(lane, None, "echo")
    assert not registry.may_take(acme, None, "echo")
    assert registry.waiting_reason("acme", "echo") is None
    assert registry.waiting_reason("acme", "ocr") == (
        "waiting: no active agent of tenant acme or a lane offers capability 'ocr'"
    )
    assert registry.queue_action("acme", "reload-secrets") == 1
    beat = registry.beat("acme/a")
    assert beat is not None and registry.take_actions(beat) == ["reload-secrets"]


def test_one_tenants_many_agents_stretch_only_its_own_interval() -> None:
    """Issue 8: 4,000 fake agents of one tenant took every tenant's interval from 0.56 s to 17 s."""
    registry = Registry(Policy(heartbeat_interval=0.5, heartbeat_rate_limit=200), rand=lambda: 0.0)
    registry.upsert(record("good/a", "good"))
    for n in range(4000):
        registry.upsert(record(f"evil/{n}", "evil"))
    good = registry.beat("good/a")
    evil = registry.beat("evil/0")
    assert good is not None and evil is not None
    assert good.interval == 0.5  # one agent: the base, as if evil were not there
    assert evil.interval == 4000 * 2 / 200  # evil shares half the host's rate between its 4,000
    fleet_rate = 1 / good.interval + 4000 / evil.interval
    assert fleet_rate <= 200 + 2  # the host's rate stays bounded (2/s: good's own base)
    assert registry.live_in("evil") == 4000 and registry.scopes == 2
    registry.remove("evil/0")
    assert registry.live_in("evil") == 3999


def test_counts_per_tenant_follow_lost_and_register_again() -> None:
    clock = Clock()
    registry = Registry(Policy(heartbeat_interval=1, stale_after=3, lost_after=6), clock=clock)
    registry.upsert(record("acme/a"))
    registry.upsert(record("lane:gpu/g", None, "gpu"))
    assert registry.live_in("acme") == 1 and registry.live_in("lane:gpu") == 1
    clock.now += 20
    registry.sweep()
    assert registry.live_in("acme") == 0 and registry.scopes == 0
    registry.upsert(record("acme/a"))
    assert registry.live_in("acme") == 1 and registry.scopes == 1
