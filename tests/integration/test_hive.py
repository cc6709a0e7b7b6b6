"""The hive for real: the daemon process on Unix sockets, real mother.py agents, real faults.

Intervals are short (heartbeat 0.2 s); the liveness windows are long (hive_harness.FAST) except in
the test that watches an agent go stale (1 s) and lost (2 s); nothing here asserts a duration
(timings live in bench/).
"""

import json
import signal
import sqlite3
import threading
from collections.abc import Iterator

import pytest

from colibri.errors import NotFound, StoreError, TaskNotFound
from tests.integration.hive_harness import WATCHED, Hive, Raw, raw_exchange, wait_until

pytestmark = pytest.mark.integration


def _hive(env: dict[str, str] | None = None) -> Iterator[Hive]:
    hive = Hive(env)
    hive.tenant("demo")
    hive.tenant("other")
    hive.start()
    try:
        yield hive
    finally:
        hive.close()


@pytest.fixture(name="hive")
def hive_fixture() -> Iterator[Hive]:
    yield from _hive()


@pytest.fixture(name="watched")
def watched_fixture() -> Iterator[Hive]:
    """The hive with the short liveness windows (hive_harness.WATCHED), for a test that watches them."""
    yield from _hive(WATCHED)


def test_register_heartbeat_route_result_and_cli(hive: Hive) -> None:
    assert hive.socket("demo").is_socket() and hive.socket("other").is_socket()  # active at start
    mother = hive.mother("demo", "demo-1")
    wait_until(lambda: hive.agent_state("demo/demo-1") == "active")
    done = hive.colibri("submit-task", "echo", "--payload", '{"hello": "hive"}', "--tenant", "demo", "--wait", "--json")
    task = json.loads(done.stdout)["data"]
    assert task["state"] == "succeeded"
    assert task["result"] == {"hello": "hive"}
    assert task["agent"] == "demo/demo-1"
    assert task["exit_status"] == 0
    listed = json.loads(hive.colibri("tasks", "--json").stdout)["data"]
    assert [t["id"] for t in listed] == [task["id"]]
    agents = json.loads(hive.colibri("agents", "--tenant", "demo", "--json").stdout)["data"]
    assert agents[0]["capabilities"] == [{"name": "echo", "version": "1"}]
    status = json.loads(hive.colibri("daemon", "status", "--json").stdout)["data"]
    assert status["agents"]["active"] == 1 and status["store"] == "ok" and status["queue_depth"] == 0
    shown = hive.colibri("task", str(task["id"]))
    assert "succeeded" in shown.stdout
    missing = hive.colibri("task", "999", check=False)
    assert missing.returncode == 4 and "task not found: 999" in missing.stderr
    metrics = hive.admin.metrics()
    assert 'colibri_tasks_finished_total{outcome="succeeded"} 1' in metrics
    mother.send_signal(signal.SIGTERM)
    assert mother.wait(15) == 0
    assert hive.agent_state("demo/demo-1") == "left"
    assert "deregistered" in hive.mother_log("demo", "demo-1")


def test_a_stopped_agent_goes_stale_then_lost_and_its_task_is_requeued(watched: Hive) -> None:
    hive = watched
    mother = hive.mother("demo", "demo-1", capabilities=("slow",))
    wait_until(lambda: hive.agent_state("demo/demo-1") == "active")
    task = hive.admin.submit("slow", {"n": 1}, tenant="demo")
    wait_until(lambda: hive.admin.task(task["id"])["state"] == "running")
    mother.send_signal(signal.SIGSTOP)  # frozen: no heartbeat, no deregistration
    seen = set()
    wait_until(lambda: seen.add(hive.agent_state("demo/demo-1")) or "lost" in seen)
    assert "stale" in seen  # stale came first: never lost on the first miss
    requeued = hive.admin.task(task["id"])
    assert requeued["state"] == "queued"
    assert requeued["attempts"] == 1
    assert "was lost" in requeued["error"]
    assert "no active agent" in requeued["waiting"]
    mother.kill()
    mother.wait(10)
    hive.mother("demo", "demo-2", capabilities=("slow",))
    finished = wait_until(lambda: (t := hive.admin.task(task["id"], wait=5))["state"] == "succeeded" and t, 30)
    assert finished["agent"] == "demo/demo-2" and finished["attempts"] == 2


def test_tenant_a_socket_cannot_act_as_tenant_b(hive: Hive) -> None:
    agent = Raw(hive.socket("demo"))
    try:
        status, body = agent("POST", "/v1/agent/register", {"agent_id": "x", "tenant": "other", "capabilities": []})
        assert status == 403 and body["error"]["type"] == "PermissionDenied"
        status, body = agent("POST", "/v1/agent/register", {"agent_id": "x", "capabilities": [{"name": "echo"}]})
        assert status == 200 and body["agent"]["key"] == "demo/x" and body["agent"]["tenant"] == "demo"
        theirs = hive.admin.submit("echo", {"secret": "of other"}, tenant="other")
        status, _ = agent("POST", "/v1/tasks/claim", {"agent_id": "x", "wait": 0.2})
        assert status == 204  # another tenant's task is never routed here
        status, body = agent("GET", f"/v1/tasks/{theirs['id']}")
        assert status == 404 and body["error"]["type"] == "TaskNotFound"
        status, body = agent("POST", f"/v1/tasks/{theirs['id']}/result", {"agent_id": "x", "lease": "x", "ok": True})
        assert status == 404
        status, body = agent("POST", "/v1/tasks", {"capability": "echo", "payload": 1, "tenant": "other"})
        assert status == 403
        status, body = agent("POST", "/v1/tasks", {"capability": "echo", "payload": 1})
        assert status == 201 and body["tenant"] == "demo"
        status, body = agent("GET", "/v1/agents")
        assert status == 404  # the fleet is visible on the admin socket only
        assert hive.admin.task(theirs["id"])["state"] == "queued"
    finally:
        agent.close()


def test_lane_agents_take_any_tenants_task(hive: Hive) -> None:
    lane = hive.admin.declare_lane("gpu")
    hive.mother("gpu", "gpu-1", socket_path=hive.root / "run" / "lanes" / "gpu" / "agent.sock")
    wait_until(lambda: hive.agent_state("lane:gpu/gpu-1") == "active")
    assert lane["created"]
    for tenant in ("demo", None):
        task = hive.admin.submit("echo", {"for": tenant}, tenant=tenant)
        done = wait_until(lambda t=task: (x := hive.admin.task(t["id"], wait=5))["state"] == "succeeded" and x)
        assert done["agent"] == "lane:gpu/gpu-1" and done["result"] == {"for": tenant}


def test_malformed_oversized_unknown(hive: Hive) -> None:
    sock = hive.socket("demo")
    bad_json = raw_exchange(
        sock, b"POST /v1/agent/heartbeat HTTP/1.1\r\nHost: c\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{nope"
    )
    assert bad_json.startswith(b"HTTP/1.1 400 ") and b"not valid JSON" in bad_json
    huge = raw_exchange(sock, b"POST /v1/tasks HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n")
    assert huge.startswith(b"HTTP/1.1 413 ")
    chunked = raw_exchange(sock, b"POST /v1/tasks HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert chunked.startswith(b"HTTP/1.1 501 ")
    assert raw_exchange(sock, b"HELLO\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw_exchange(sock, b"GET / HTTP/2.0\r\n\r\n").startswith(b"HTTP/1.1 505 ")
    assert raw_exchange(sock, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 414 ")
    assert raw_exchange(sock, b"GET / HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n").startswith(b"HTTP/1.1 431 ")
    admin = Raw(hive.root / "run" / "admin.sock")
    try:
        status, body = admin("GET", "/v2/tasks")
        assert status == 404 and "unsupported API version 'v2'" in body["error"]["message"]
        status, body = admin("GET", "/nowhere")
        assert status == 404 and body["error"]["type"] == "NotFound"
        status, body = admin("DELETE", "/v1/tasks")
        assert status == 405
        status, body = admin("POST", "/v1/tasks", {"capability": "echo"})
        assert status == 400 and "payload" in body["error"]["message"]
        status, body = admin("POST", "/v1/tasks", {"capability": "echo", "payload": "x" * 300_000})
        assert status == 400 and "larger than" in body["error"]["message"]
        status, body = admin("POST", "/v1/tasks", {"capability": "no/slash", "payload": 1})
        assert status == 400
        assert admin("GET", "/health")[0] == 200  # the connection survived all of it
    finally:
        admin.close()


@pytest.fixture(name="unthrottled")
def unthrottled_fixture() -> Iterator[Hive]:
    hive = Hive(
        {"COLIBRI_DAEMON_SOCKET_REQUEST_RATE": "0", "COLIBRI_DAEMON_SOCKET_BYTE_RATE": "0"}
    )  # this test floods on purpose
    hive.tenant("demo")
    hive.start()
    try:
        yield hive
    finally:
        hive.close()


def test_heartbeat_flood_is_coalesced(unthrottled: Hive) -> None:
    hive = unthrottled
    agent = Raw(hive.socket("demo"))
    try:
        assert agent("POST", "/v1/agent/register", {"agent_id": "loud", "capabilities": []})[0] == 200
        for _ in range(3000):
            status, body = agent("POST", "/v1/agent/heartbeat", {"agent_id": "loud"})
            assert status == 200 and body["interval"] >= 0.2
    finally:
        agent.close()

    def counter(name: str) -> int:
        for line in hive.admin.metrics().splitlines():
            if line.startswith(name + " "):
                return int(line.split()[1])
        return 0

    wait_until(lambda: counter("colibri_heartbeat_flushes_total") >= 1)
    assert counter("colibri_heartbeat_rows_written_total") < 300  # at most one row per flush, not one per beat
    assert "colibri_heartbeats_total 3000" in hive.admin.metrics()
    with pytest.raises(NotFound, match="no such route"):
        hive.admin.request("POST", "/v1/agent/heartbeat", {"agent_id": "loud"})  # not an admin route
    assert hive.admin.health()["agents"]["active"] == 1


def test_a_capability_nobody_has_waits_with_a_clear_status(hive: Hive) -> None:
    hive.mother("demo", "demo-1")
    wait_until(lambda: hive.agent_state("demo/demo-1") == "active")
    task = hive.admin.submit("translate", {"text": "hi"}, tenant="demo")
    assert task["waiting"] == "waiting: no active agent of tenant demo or a lane offers capability 'translate'"
    later = hive.admin.task(task["id"], wait=0.5)
    assert later["state"] == "queued" and later["waiting"] == task["waiting"]
    shown = hive.colibri("task", str(task["id"]))
    assert "no active agent of tenant demo" in shown.stdout


def test_handler_hang_and_crash_are_task_errors(hive: Hive) -> None:
    hive.mother("demo", "demo-1", capabilities=("hang", "crash"), args=("--handler-timeout", "1"))
    wait_until(lambda: hive.agent_state("demo/demo-1") == "active")
    hang = hive.admin.submit("hang", {}, tenant="demo")
    crash = hive.admin.submit("crash", {}, tenant="demo")
    hung = wait_until(lambda: (t := hive.admin.task(hang["id"], wait=5))["state"] == "failed" and t, 30)
    assert "timed out after 1 s" in hung["error"]
    crashed = wait_until(lambda: (t := hive.admin.task(crash["id"], wait=5))["state"] == "failed" and t, 30)
    assert crashed["exit_status"] == 3 and "handler exploded" in crashed["error"]
    assert hive.agent_state("demo/demo-1") == "active"  # the agent survived both


def test_mother_refuses_an_unsafe_env(hive: Hive) -> None:
    proc = hive.mother("demo", "careless", env_mode=0o644)
    assert proc.wait(15) == 6
    assert "mode 0644; it must be 0600" in hive.mother_log("demo", "careless")
    assert hive.agent_state("demo/careless") is None


def test_kill_9_under_load_loses_nothing_acknowledged(hive: Hive) -> None:
    hive.mother("demo", "demo-1")
    wait_until(lambda: hive.agent_state("demo/demo-1") == "active")
    acked: list[int] = []
    lock = threading.Lock()

    def submit(worker: int) -> None:
        for n in range(200):
            try:
                task = hive.admin.submit("echo", {"w": worker, "n": n}, tenant="demo")
            except Exception:
                return  # the daemon died under us: that request was never acknowledged
            with lock:
                acked.append(task["id"])

    threads = [threading.Thread(target=submit, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(acked) >= 60, 60)
    hive.stop(signal.SIGKILL)
    for thread in threads:
        thread.join(60)
    hive.start()
    ids = {t["id"] for t in hive.admin.tasks(limit=1000)}
    assert set(acked) <= ids
    for task_id in acked:  # the mother reconnected and ran every acknowledged task
        wait_until(lambda i=task_id: hive.admin.task(i, wait=5)["state"] == "succeeded", 60)


def test_store_unavailable_for_a_while(hive: Hive) -> None:
    agent = Raw(hive.socket("demo"))
    blocker = sqlite3.connect(hive.db_path, timeout=5, isolation_level=None)
    try:
        assert agent("POST", "/v1/agent/register", {"agent_id": "a", "capabilities": []})[0] == 200
        blocker.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreError, match="locked"):
            hive.admin.submit("echo", 1, tenant="demo")
        for _ in range(20):
            assert agent("POST", "/v1/agent/heartbeat", {"agent_id": "a"})[0] == 200  # memory only
        health = hive.admin.health()
        assert health["status"] == "degraded" and health["store"].startswith("unavailable")
        blocker.execute("ROLLBACK")
        task = hive.admin.submit("echo", 1, tenant="demo")
        assert hive.admin.task(task["id"])["state"] == "queued"
        wait_until(lambda: hive.admin.health()["store"] == "ok")
        assert hive.agent_state("demo/a") == "active"
    finally:
        blocker.close()
        agent.close()


def test_sighup_reloads_and_sigterm_stops_cleanly(hive: Hive) -> None:
    (hive.root / "colibri.toml").write_text("task_lease_seconds = 42.0\n")
    assert hive.daemon is not None
    hive.daemon.send_signal(signal.SIGHUP)
    wait_until(lambda: "settings reloaded" in hive.log())
    agent = Raw(hive.socket("demo"))
    try:
        status, body = agent("POST", "/v1/agent/register", {"agent_id": "a", "capabilities": []})
        assert status == 200 and body["lease_seconds"] == 42.0
    finally:
        agent.close()
    second = hive.colibri("daemon", check=False)
    assert second.returncode == 16 and "another colibri daemon is running" in second.stderr
    assert hive.stop() == 0
    assert not (hive.root / "run" / "admin.sock").exists()
    assert not hive.socket("demo").exists()
    down = hive.colibri("tasks", check=False)
    assert down.returncode == 16 and "not running" in down.stderr


def test_sockets_for_tenants_spawned_while_running(hive: Hive) -> None:
    hive.colibri("register-tenant", "late")
    with pytest.raises(TaskNotFound):
        hive.admin.task(12345)
    opened = hive.admin.open_tenant_socket("late")
    assert opened["socket"] == str(hive.socket("late")) and hive.socket("late").is_socket()
    assert hive.socket("late").stat().st_mode & 0o777 == 0o666
    assert (hive.root / "run" / "admin.sock").stat().st_mode & 0o777 == 0o600
    hive.colibri("register-tenant", "fresh")
    with sqlite3.connect(hive.db_path) as conn:
        conn.execute("UPDATE tenants SET status = 'active' WHERE tenant_id = 'fresh'")
    conn.close()
    wait_until(lambda: hive.socket("fresh").is_socket(), 15)  # the periodic scan found it


def test_once_health_answers_every_tenant_socket_is_open() -> None:
    """CI saw a tenant's first request find no socket: /health answered before the daemon had
    opened the sockets of the tenants the store already named.  The admin socket opens last."""
    hive = Hive()
    try:
        tenants = [f"t{n:02d}" for n in range(40)]
        for tenant in tenants:
            hive.tenant(tenant)
        hive.start()
        missing = [t for t in tenants if not hive.socket(t).is_socket()]
        assert missing == []
    finally:
        hive.close()
