"""Issue 11, the queue on many hosts: several daemons (one per host) on one PostgreSQL database.

Real parts only: the PostgreSQL server of tests/servers/postgres.py, the daemons and the lane
agents' API calls on their real Unix sockets (tests/integration/fleet.py).
"""

import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from colibri.adapters.daemon_client import DaemonClient
from colibri.errors import ColibriError, PermissionDenied
from tests.integration.fleet import Agent, Fleet, restart_postgres
from tests.integration.hive_harness import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

OPEN_STORE = "import sys; from colibri.store.db import Store; Store(sys.argv[1]).close()"


def test_three_processes_migrate_one_empty_database_once(postgres_server) -> None:
    url = postgres_server.create_database()
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN_STORE, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    outcomes = [(p.wait(120), p.stderr.read().decode() if p.stderr else "") for p in procs]
    for proc in procs:
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            tables = conn.execute(text("SELECT count(*) FROM pg_tables WHERE tablename = 'tasks'")).scalar()
    finally:
        engine.dispose()
    assert len(versions) == 1 and tables == 1


# ---- three hosts on one database -------------------------------------------------------------
# a and c never poll the queue (a wake-up from another host reaches them by NOTIFY or not at all);
# b polls it every 0.2 s (the fallback for a task queued without a NOTIFY).

NO_POLL = {"COLIBRI_TASK_POLL_INTERVAL": "3600"}


@pytest.fixture(name="fleet", scope="module")
def fleet_fixture(postgres_server) -> Iterator[Fleet]:
    fleet = Fleet(postgres_server.create_database(), ["a", "b", "c"], host_env={"a": NO_POLL, "c": NO_POLL})
    try:
        fleet.start()
        fleet.tenant("acme", "a")
        fleet.tenant("zed", "b")
        fleet.lane("linux")
        yield fleet
    finally:
        fleet.close()


def claim_in_thread(agent: Agent, wait: float) -> tuple[threading.Thread, list[Any]]:
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(agent.claim(wait)))
    thread.start()
    return thread, got


def test_a_tenants_task_submitted_on_one_host_runs_on_a_lane_of_another(fleet: Fleet) -> None:
    lane_c = Agent(fleet.lane_socket("c", "linux"), "c-cross", ("cross",))
    lane_c.register()
    waiting, got = claim_in_thread(lane_c, 25)
    wait_until(lambda: "colibri_claims_waiting 1" in fleet["c"].admin.metrics())
    task = fleet["b"].admin.submit("cross", {"n": 1}, tenant="acme")  # submitted on b, for a's tenant
    waiting.join(30)
    status, lease = got[0]
    assert status == 200 and lease["id"] == task["id"], got  # woken by NOTIFY: host c never polls
    assert (lease["host"], lease["fence"], lease["tenant"]) == ("c", 1, "acme")
    assert lane_c.result(lease, result={"ran": "c"})[0] == 200
    shown = fleet["a"].admin.task(task["id"])  # read on the tenant's own host
    assert (shown["state"], shown["result"], shown["host"], shown["fence"]) == ("succeeded", {"ran": "c"}, "c", 1)
    cli = fleet["a"].colibri("task", str(task["id"]), "--json")
    data = json.loads(cli.stdout)["data"]
    assert (data["host"], data["fence"]) == ("c", 1) and list(shown)[-2:] == ["host", "fence"]
    assert "host" in fleet["a"].colibri("task", str(task["id"])).stdout
    lane_c.close()


def test_a_task_queued_without_a_notify_is_found_by_the_poll(fleet: Fleet) -> None:
    lane_b = Agent(fleet.lane_socket("b", "linux"), "b-poll", ("polled",))
    lane_b.register()
    waiting, got = claim_in_thread(lane_b, 25)
    wait_until(lambda: "colibri_claims_waiting 1" in fleet["b"].admin.metrics())
    (task_id,) = fleet.sql(
        "INSERT INTO tasks (capability, payload, state, attempts, max_attempts, submitted_by, created_at, "
        "updated_at, fence) VALUES ('polled', '1', 'queued', 0, 3, 'operator', now(), now(), 0) RETURNING id"
    )[0]
    waiting.join(30)
    assert got[0][0] == 200 and got[0][1]["id"] == task_id, got
    assert lane_b.result(got[0][1])[0] == 200
    lane_b.close()


def test_the_listener_killed_by_the_server_reconnects_and_the_task_is_still_claimed(fleet: Fleet) -> None:
    lane_c = Agent(fleet.lane_socket("c", "linux"), "c-drop", ("dropped",))
    lane_c.register()
    waiting, got = claim_in_thread(lane_c, 25)
    wait_until(lambda: "colibri_claims_waiting 1" in fleet["c"].admin.metrics())
    # every daemon's LISTEN connection goes; host c, which never polls, misses the NOTIFY below
    killed = fleet.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'")
    assert len(killed) == 3
    task = fleet["a"].admin.submit("dropped", 1)
    waiting.join(30)
    assert got[0][0] == 200 and got[0][1]["id"] == task["id"], got
    assert lane_c.result(got[0][1])[0] == 200
    wait_until(lambda: len(fleet.sql("SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%'")) == 3)
    lane_c.close()


def test_two_hosts_racing_for_tasks_claim_each_exactly_once(fleet: Fleet) -> None:
    agents = [Agent(fleet.lane_socket(h, "linux"), f"{h}-race", ("race",)) for h in ("a", "c")]
    for agent in agents:
        agent.register()
    done: dict[str, list[int]] = {}
    refused: list[Any] = []
    total = 40

    def work(agent: Agent) -> None:
        mine = done.setdefault(agent.agent_id, [])
        while sum(len(v) for v in done.values()) < total:
            status, lease = agent.claim(2)
            if status == 204:
                continue
            assert status == 200, (status, lease)
            status, body = agent.result(lease, result=agent.agent_id)
            (mine if status == 200 else refused).append(lease["id"] if status == 200 else body)

    threads = [threading.Thread(target=work, args=(agent,)) for agent in agents]
    for thread in threads:
        thread.start()
    ids = [fleet["b"].admin.submit("race", n)["id"] for n in range(total)]
    for thread in threads:
        thread.join(60)
    assert refused == [] and sorted(i for v in done.values() for i in v) == sorted(ids)
    rows = fleet.sql("SELECT state, fence, host FROM tasks WHERE capability = 'race'")
    assert {(state, fence) for state, fence, _ in rows} == {("succeeded", 1)} and len(rows) == total
    assert {host for _, _, host in rows} <= {"a", "c"}
    for agent in agents:
        agent.close()


def test_a_late_answer_from_a_superseded_host_is_refused(fleet: Fleet) -> None:
    lane_a = Agent(fleet.lane_socket("a", "linux"), "a-late", ("late",))
    lane_c = Agent(fleet.lane_socket("c", "linux"), "c-late", ("late",))
    lane_a.register()
    lane_c.register()
    task = fleet["b"].admin.submit("late", {"n": 1}, tenant="zed")
    status, first = lane_a.claim(5)
    assert status == 200 and (first["host"], first["fence"]) == ("a", 1)
    fleet.sql("UPDATE tasks SET lease_expires_at = 1 WHERE id = :id", id=task["id"])  # host a's lease ran out
    wait_until(lambda: fleet["b"].admin.task(task["id"])["state"] == "queued")
    status, second = lane_c.claim(10)
    assert status == 200 and (second["id"], second["host"], second["fence"]) == (task["id"], "c", 2)
    status, body = lane_a.result(first, result="late from a")  # the old claim's answer, late
    assert status == 409 and body["error"]["type"] == "StateConflict"
    status, body = lane_a.result({**second}, result="a with c's lease", fence=2)  # c's lease, through a
    assert status == 409 and body["error"]["type"] == "StateConflict"
    assert lane_c.result(second, result="from c", fence=2)[0] == 200
    shown = fleet["b"].admin.task(task["id"])
    assert (shown["state"], shown["result"], shown["host"], shown["fence"]) == ("succeeded", "from c", "c", 2)
    lane_a.close()
    lane_c.close()


def test_a_host_cannot_claim_or_complete_another_hosts_tenants_task(fleet: Fleet) -> None:
    acme = Agent(fleet["a"].socket("acme"), "a1", ("fenced",))
    zed = Agent(fleet["b"].socket("zed"), "z1", ("fenced",))
    acme.register()
    zed.register()
    task = fleet["c"].admin.submit("fenced", 1, tenant="acme")
    assert zed.claim(0)[0] == 204  # host b's tenant agent never sees acme's task
    assert not fleet["b"].socket("acme").exists()  # and host b serves no socket for acme (it lives on a)
    with pytest.raises(PermissionDenied, match="lives on host a"):
        fleet["b"].admin.open_tenant_socket("acme")
    status, lease = acme.claim(5)
    assert status == 200 and lease["id"] == task["id"] and lease["host"] == "a"
    status, body = zed.result(lease, result="from zed")  # acme's real lease, through b's zed socket
    assert status == 404 and body["error"]["type"] == "TaskNotFound"
    assert acme.result(lease, result="from acme")[0] == 200
    assert fleet["c"].admin.task(task["id"])["result"] == "from acme"
    acme.close()
    zed.close()


def test_postgresql_restarted_under_load_loses_nothing_and_completes_nothing_twice(
    fleet: Fleet, postgres_server
) -> None:
    total, acknowledged, completions, refused = 60, {}, [], []
    stop = threading.Event()

    def agent_loop(agent: Agent) -> None:
        while not stop.is_set():
            try:
                status, lease = agent.claim(1)
                if status in (404,):  # lost while the store was away: register again
                    agent.register(heartbeat=False)
                if status != 200:
                    continue
                while not stop.is_set():  # report until the daemon records it (503 while the store is away)
                    status, _ = agent.result(lease, result=agent.agent_id)
                    if status == 200:
                        completions.append((lease["id"], agent.agent_id))
                        break
                    if status == 409:
                        refused.append(lease["id"])
                        break
            except (OSError, http.client.HTTPException):
                stop.wait(0.1)

    def submitter() -> None:
        client = DaemonClient(fleet["b"].root / "run" / "admin.sock", timeout=10)
        for n in range(total):
            while n not in acknowledged:
                try:
                    acknowledged[n] = client.submit("load", n, idempotency_key=f"load-{n}", retries=0)["id"]
                except ColibriError:  # the store is restarting: the same key again
                    time.sleep(0.1)

    agents = [Agent(fleet.lane_socket(h, "linux"), f"{h}-load", ("load",)) for h in ("a", "c")]
    for agent in agents:
        agent.register()
    threads = [threading.Thread(target=agent_loop, args=(agent,)) for agent in agents]
    threads.append(threading.Thread(target=submitter))
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(acknowledged) >= total // 3, 60)
        before = fleet.sql("SELECT pg_postmaster_start_time()")[0][0]
        restart_postgres(postgres_server)
        assert fleet.sql("SELECT pg_postmaster_start_time()")[0][0] > before  # a new server under the load
        wait_until(lambda: len(acknowledged) == total, 90)
        ids = sorted(acknowledged.values())
        query = "SELECT count(*) FROM tasks WHERE capability = 'load' AND state = 'succeeded'"
        wait_until(lambda: fleet.sql(query)[0][0] == total, 90)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        for agent in agents:
            agent.close()
    rows = fleet.sql("SELECT id, state, result FROM tasks WHERE capability = 'load' ORDER BY id")
    assert [r[0] for r in rows] == ids and len(set(ids)) == total  # nothing lost, no task twice
    by_task: dict[int, set[str]] = {}
    for task_id, who in completions:
        by_task.setdefault(task_id, set()).add(who)
    assert all(len(who) == 1 for who in by_task.values())  # completed by one agent (a repeat is idempotent)
    assert {r[0]: json.loads(r[2]) for r in rows} == {i: next(iter(by_task[i])) for i in ids}
    for name in ("a", "b", "c"):  # every daemon is back on the store
        wait_until(lambda name=name: fleet[name].admin.health()["status"] == "ok", 30)
