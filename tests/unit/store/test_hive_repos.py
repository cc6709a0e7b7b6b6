"""The agent and task repositories (store/agents.py, tasks.py, owners.py), on SQLite and on a real
PostgreSQL server: the hive's rules over them, the dialect-specific heartbeat UPDATE, the claim's
row lock, the write check and the leases a restarted daemon gives back."""

import time
from datetime import timedelta

from colibri.services.hive.rules import AgentRef, Policy, Scope
from colibri.services.hive.service import HiveService
from colibri.store.agents import AgentRepo
from colibri.store.db import Store
from colibri.store.models import utcnow
from colibri.store.owners import check_writable
from colibri.store.tasks import TaskRepo
from tests.unit.daemon.hive_world import active_tenants

ECHO = [{"name": "echo", "version": "1"}]
ACME = Scope("tenant", "acme")


def _store(db_url: str) -> Store:
    return active_tenants(db_url, {"acme": "h"})


def test_agents_heartbeats_and_states(db_url: str) -> None:
    store = _store(db_url)
    try:
        hive = HiveService(store, Policy(max_agents=2))
        hive.register(ACME, "a1", ECHO, "1")
        hive.register(ACME, "a2", ECHO, "1")
        assert hive.set_states([("acme/a2", "stale")]) == []
        at = (utcnow() + timedelta(seconds=30)).timestamp()
        assert hive.flush_heartbeats([("acme/a1", at), ("acme/a2", at)]) == 2  # the driver's executemany
        with store.session() as session:
            agents = AgentRepo(session)
            assert agents.live_count("tenant", "acme") == 2
            one = agents.get("acme/a2")
            assert one is not None and one.state == "active"  # a heartbeat makes it active again
            assert one.last_seen_at > one.registered_at  # written: 30 s after the registration
        assert [a["key"] for a in hive.load_agents()] == ["acme/a1", "acme/a2"]
        hive.deregister("acme/a2")
        assert [a["state"] for a in hive.agents("acme")] == ["active", "left"]
        assert hive.socket_owners() == (["acme"], [])
        assert hive.removed_tenants(["acme", "gone"]) == ["gone"]
        assert hive.declare_lane("shared") and not hive.declare_lane("shared")
        check_writable(store)
    finally:
        store.close()


def test_tasks_claim_finish_requeue_and_give_back(db_url: str) -> None:
    store = _store(db_url)
    try:
        hive = HiveService(store, Policy(lease_seconds=60, max_attempts=2))
        hive.register(ACME, "a1", ECHO, "1")
        agent = AgentRef("acme/a1", "acme", None, frozenset({"echo"}))
        first, second = hive.submit(ACME, "echo", 1), hive.submit(ACME, "echo", 2)
        claimed = hive.claim(agent)
        assert claimed is not None and claimed["id"] == first["id"] and claimed["state"] == "running"
        assert hive.task_counts() == {"queued": 1, "running": 1, "succeeded": 0, "failed": 0}
        later = time.time() + 0.001  # a restart right after the claim
        given = hive.release_undelivered("acme/a1", later)
        assert [(g.task_id, g.state) for g in given] == [(first["id"], "queued")]
        assert hive.task(ACME, first["id"])["attempts"] == 0
        assert hive.release_undelivered("acme/a1", later) == []
        again = hive.claim(agent)
        assert again is not None and again["id"] == first["id"]
        assert hive.release_undelivered("acme/a1", time.time() - 1) == []  # a lease of after that start
        done = hive.finish(ACME, "acme/a1", first["id"], again["lease"], True, {"ok": 1}, None, 0)
        assert done["state"] == "succeeded"
        assert hive.claim(agent) is not None
        requeued = hive.register(ACME, "a1", ECHO, "1")[1]  # a new instance: what it held goes back
        assert [(r.task_id, r.state) for r in requeued] == [(second["id"], "queued")]
        with store.session() as session:
            tasks = TaskRepo(session)
            assert [t.id for t in tasks.find("acme", None, 10)] == [second["id"], first["id"]]
            assert tasks.queued_refs() == [(second["id"], "acme", "echo")]
            assert {row[0] for row in tasks.usage_rows("acme")} == {"queued", "succeeded"}
        assert hive.usage("acme").queued == 1 and hive.usage("acme").finished == 1
    finally:
        store.close()
