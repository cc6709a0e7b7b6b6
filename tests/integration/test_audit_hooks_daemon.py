"""The audit through the real daemon (issue 12): its routes and loops record each change under the
socket's owner or the agent the daemon knows, never what a request body claims."""

import json
import signal
import sqlite3
from collections.abc import Iterator

import pytest

from tests.integration.hive_harness import WATCHED, Hive, Raw, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(name="hive")
def hive_fixture() -> Iterator[Hive]:
    hive = Hive(WATCHED)  # its test watches an agent go stale, then lost
    hive.tenant("demo")
    hive.tenant("other")
    hive.start()
    try:
        yield hive
    finally:
        hive.close()


def entries(hive: Hive) -> list[dict[str, object]]:
    with sqlite3.connect(hive.db_path) as conn:
        rows = conn.execute("SELECT body FROM audit_entries WHERE host = 'testhost' ORDER BY seq").fetchall()
    conn.close()
    return [json.loads(row[0]) for row in rows]


def test_the_daemon_records_routes_and_loops_with_the_actor_it_knows(hive: Hive) -> None:
    start = len(entries(hive))  # the tenants registered before the daemon started
    mother = hive.mother("demo", "demo-1")
    wait_until(lambda: hive.agent_state("demo/demo-1") == "active")
    done = hive.colibri("submit-task", "echo", "--payload", '{"k": "s3cr3t"}', "--tenant", "demo", "--wait", "--json")
    task = json.loads(done.stdout)["data"]
    assert task["state"] == "succeeded"
    raw = Raw(hive.socket("demo"))
    try:  # the demo socket's client claims to be tenant other: refused, nothing recorded
        status, _ = raw("POST", "/v1/tasks", {"capability": "echo", "payload": 1, "tenant": "other"})
        assert status == 403
        status, _ = raw("POST", "/v1/tasks", {"capability": "echo", "payload": 2})
        assert status == 201
    finally:
        raw.close()
    hive.colibri("register-lane", "shared")
    mother.send_signal(signal.SIGSTOP)  # frozen: the daemon's liveness loop declares it stale, then lost
    wait_until(lambda: hive.agent_state("demo/demo-1") == "lost")
    mother.kill()
    # the listing can show "lost" a moment before the liveness loop's transaction (the change and
    # its entry) commits: the entry is waited for, and must come
    lost = ("agent.lost", "agent:demo/demo-1", "daemon")
    wait_until(lambda: lost in [(e["action"], e["subject"], e["actor"]) for e in entries(hive)])
    found = entries(hive)[start:]
    got = [(e["action"], e["subject"], e["actor"]) for e in found]
    tid = f"task:{task['id']}"
    for wanted in [
        ("agent.register", "agent:demo/demo-1", "agent:demo/demo-1"),
        ("task.submit", tid, "operator:admin-socket"),
        ("task.claim", tid, "agent:demo/demo-1"),
        ("task.complete", tid, "agent:demo/demo-1"),
        ("task.submit", f"task:{task['id'] + 1}", "tenant:demo"),
        ("lane.declare", "lane:shared", "operator:admin-socket"),
        ("agent.stale", "agent:demo/demo-1", "daemon"),
        ("agent.lost", "agent:demo/demo-1", "daemon"),
    ]:
        assert wanted in got, (wanted, got)
    assert not any(e["tenant"] == "other" for e in found)  # the refused request wrote nothing
    assert all(e["host"] == "testhost" for e in found) and "s3cr3t" not in json.dumps(found)
    assert [e["seq"] for e in entries(hive)] == list(range(1, len(entries(hive)) + 1))  # one chain, no gap
    assert not any(e["action"].startswith("agent.heartbeat") for e in found)  # type: ignore[union-attr]
