"""Liveness across hosts (issue 11), with real parts: two or three daemons as processes, each its own
COLIBRI_HOST, state and run directories, on one real PostgreSQL server; real mothers.

A host is frozen with SIGSTOP on its daemon (its mothers keep running): past its lease + grace
another daemon declares it lost and requeues its task, which finishes once on a lane of another
host; after SIGCONT the frozen host's late completion is refused, and it is ``up`` again with a
new term while its agents register again.
"""

import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from colibri.services.tenants import TenantService
from colibri.store.db import Store
from colibri.store.models import Agent, Host, Tenant
from tests.integration.hive_harness import Hive, Raw, wait_until
from tests.servers.postgres import PostgresServer

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
ECHO = [{"name": "echo", "version": "1"}]
LEASE = {"COLIBRI_HOST_LEASE_SECONDS": "2", "COLIBRI_HOST_LEASE_GRACE": "1"}


class Fleet:
    """Daemons on one PostgreSQL database (a minimal stand-in for part Q's tests/integration/fleet.py)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.store = Store(url)
        self.hives: dict[str, Hive] = {}

    def host(self, name: str, **env: str) -> Hive:
        hive = Hive({"COLIBRI_DATABASE_URL": self.url, "COLIBRI_HOST": name, **LEASE, **env})
        self.hives[name] = hive
        return hive

    def tenant(self, name: str, host: str) -> None:
        TenantService(self.store, host).register(name, None, None)
        with Session(self.store.engine) as session:
            tenant = session.get(Tenant, name)
            assert tenant is not None
            tenant.status = "active"
            session.add(tenant)
            session.commit()

    def row(self, model: type, key: str) -> Any:
        with Session(self.store.engine) as session:
            found = session.get(model, key)
            if found is not None:
                session.expunge(found)
            return found

    def close(self) -> None:
        for hive in self.hives.values():
            if hive.daemon is not None and hive.daemon.poll() is None:
                hive.daemon.send_signal(signal.SIGCONT)
            hive.close()
        self.store.close()


@pytest.fixture(name="fleet")
def fleet_fixture(postgres_server: PostgresServer) -> Iterator[Fleet]:
    fleet = Fleet(postgres_server.create_database())
    try:
        yield fleet
    finally:
        fleet.close()


def _task(hive: Hive, task_id: int) -> Callable[[], dict[str, Any]]:
    return lambda: hive.admin.task(task_id)


def test_a_frozen_host_is_lost_its_task_finishes_once_elsewhere_and_it_comes_back(fleet: Fleet) -> None:
    fleet.tenant("acme", "hosta")
    a, b, c = fleet.host("hosta"), fleet.host("hostb"), fleet.host("hostc")
    a.start()
    a.admin.declare_lane("build")
    b.start()
    c.start()  # a third daemon races b to declare a lost
    assert a.socket("acme").exists() and not b.socket("acme").exists()  # each daemon serves its own tenants
    a.mother("acme", "m1", capabilities=("slow",))
    wait_until(lambda: a.agent_state("acme/m1") == "active")
    assert fleet.row(Agent, "acme/m1").host == "hosta"
    term = fleet.row(Host, "hosta").lease_term
    task = a.admin.submit("slow", {"n": 1}, tenant="acme")
    wait_until(lambda: a.admin.task(task["id"])["state"] == "running")

    assert a.daemon is not None
    a.daemon.send_signal(signal.SIGSTOP)  # host A frozen while its agent holds the task
    b.mother("build", "l1", capabilities=("slow",), socket_path=b.root / "run" / "lanes" / "build" / "agent.sock")
    done = wait_until(lambda: (t := b.admin.task(task["id"]))["state"] == "succeeded" and t, 30)
    assert done["agent"] == "lane:build/l1" and done["attempts"] == 2
    assert fleet.row(Host, "hosta").state == "lost"
    assert fleet.row(Agent, "acme/m1").state in ("lost", "active")  # lost, or registered again below
    assert [h.log().count("host hosta is lost") for h in (b, c)] in ([1, 0], [0, 1])  # one of them, once

    a.daemon.send_signal(signal.SIGCONT)
    wait_until(lambda: "refused" in a.mother_log("acme", "m1"), 30)  # the late completion
    again = b.admin.task(task["id"])
    assert (again["state"], again["agent"], again["result"], again["attempts"]) == (
        "succeeded", "lane:build/l1", done["result"], 2
    )  # fmt: skip
    wait_until(lambda: (h := fleet.row(Host, "hosta")).state == "up" and h.lease_term > term)
    wait_until(lambda: a.agent_state("acme/m1") == "active")  # it registered again with host A


def test_a_host_frozen_for_less_than_its_lease_and_grace_loses_nothing(fleet: Fleet) -> None:
    """A blip (the daemon frozen 2 s, under a 6 s lease + 2 s grace): no host lost, no requeue."""
    fleet.tenant("acme", "hosta")
    env = {"COLIBRI_HOST_LEASE_SECONDS": "6", "COLIBRI_HOST_LEASE_GRACE": "2"}
    a, b = fleet.host("hosta", **env), fleet.host("hostb", **env)
    a.start()
    b.start()
    raw = Raw(a.socket("acme"))
    try:
        assert raw("POST", "/v1/agent/register", {"agent_id": "r1", "capabilities": ECHO})[0] == 200
        task = a.admin.submit("echo", {"n": 4}, tenant="acme")
        status, lease = raw("POST", "/v1/tasks/claim", {"agent_id": "r1", "wait": 5})
        assert status == 200, lease
        term = fleet.row(Host, "hosta").lease_term
        assert a.daemon is not None
        a.daemon.send_signal(signal.SIGSTOP)
        time.sleep(2.0)  # the blip itself (not an assertion on time)
        a.daemon.send_signal(signal.SIGCONT)
        body = {"agent_id": "r1", "lease": lease["lease"], "ok": True, "result": "after the blip"}
        status, done = raw("POST", f"/v1/tasks/{task['id']}/result", body)
        assert status == 200 and (done["state"], done["attempts"]) == ("succeeded", 1), done
    finally:
        raw.close()
    row = fleet.row(Host, "hosta")
    assert (row.state, row.lease_term) == ("up", term)
    assert "is lost" not in b.log()


def test_a_live_agents_long_task_outlives_its_task_lease(fleet: Fleet) -> None:
    """Rescue follows liveness, not a fixed window: an agent that keeps beating holds its task past
    several task leases (the heartbeat flush extends them) and its answer is taken, first attempt."""
    fleet.tenant("acme", "hosta")
    a = fleet.host("hosta", COLIBRI_TASK_LEASE_SECONDS="2")
    a.start()
    raw = Raw(a.socket("acme"))
    try:
        assert raw("POST", "/v1/agent/register", {"agent_id": "r1", "capabilities": ECHO})[0] == 200
        task = a.admin.submit("echo", {"n": 2}, tenant="acme")
        status, lease = raw("POST", "/v1/tasks/claim", {"agent_id": "r1", "wait": 5})
        assert status == 200 and lease["id"] == task["id"], lease
        deadline = time.monotonic() + 5  # two and a half task leases, beating as told
        while time.monotonic() < deadline:
            status, beat = raw("POST", "/v1/agent/heartbeat", {"agent_id": "r1"})
            assert status == 200, beat
            time.sleep(min(float(beat["interval"]), 0.2))
        body = {"agent_id": "r1", "lease": lease["lease"], "ok": True, "result": "late but alive"}
        status, done = raw("POST", f"/v1/tasks/{task['id']}/result", body)
        assert status == 200 and (done["state"], done["attempts"]) == ("succeeded", 1), done
    finally:
        raw.close()
    assert "lease expired" not in a.log()


def _pg_ctl(server: PostgresServer, action: str) -> None:
    """pg_ctl stop (fast) or start on the server's existing data directory, as an operator would."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    options = f"-p {server.port} -k {server.root} -c listen_addresses=127.0.0.1 -c fsync=off"
    extra = ["-m", "fast"] if action == "stop" else ["-o", options, "-l", str(server.root / "log")]
    subprocess.run([*prefix, str(server.bindir / "pg_ctl"), "-D", str(server.data), *extra, "-w", action],
                   check=True, capture_output=True, timeout=120)  # fmt: skip


@pytest.fixture(name="own_server")
def own_server_fixture(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """A private server this test may stop and start (the shared one serves the other tests)."""
    root = Path(tempfile.mkdtemp(prefix="colibri-pg-"))
    root.chmod(0o755)
    server = PostgresServer(postgres_server.bindir, root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_with_the_database_down_the_host_is_degraded_and_loses_no_acknowledged_completion(
    own_server: PostgresServer,
) -> None:
    fleet = Fleet(own_server.create_database())
    try:
        fleet.tenant("acme", "hosta")
        a = fleet.host("hosta")
        a.start()
        raw = Raw(a.socket("acme"))
        try:
            assert raw("POST", "/v1/agent/register", {"agent_id": "r1", "capabilities": ECHO})[0] == 200
            task = a.admin.submit("echo", {"n": 3}, tenant="acme")
            status, lease = raw("POST", "/v1/tasks/claim", {"agent_id": "r1", "wait": 5})
            assert status == 200, lease
            fleet.store.close()
            _pg_ctl(own_server, "stop")

            assert raw("POST", "/v1/agent/heartbeat", {"agent_id": "r1"})[0] == 200  # served from memory
            health = a.admin.health()
            assert health["status"] == "degraded" and health["store"].startswith("unavailable")
            status, refused = raw("POST", "/v1/tasks", {"capability": "echo", "payload": 1})
            assert status == 503 and refused["error"]["type"] == "StoreError", refused  # nothing unstored acked
            body = {"agent_id": "r1", "lease": lease["lease"], "ok": True, "result": "kept"}
            status, kept = raw("POST", f"/v1/tasks/{task['id']}/result", body)
            assert status == 202 and kept["outbox"] is True, kept
            outbox = a.root / "db" / "outbox.jsonl"
            assert stat.S_IMODE(outbox.stat().st_mode) == 0o600 and outbox.read_text().count("\n") == 1
            assert "colibri_degraded 1" in a.admin.metrics()
            assert raw("POST", "/v1/agent/heartbeat", {"agent_id": "r1"})[0] == 200

            _pg_ctl(own_server, "start")
            wait_until(lambda: a.admin.task(task["id"])["state"] == "succeeded", 30)
            done = a.admin.task(task["id"])
            assert (done["result"], done["attempts"], done["agent"]) == ("kept", 1, "acme/r1")
            wait_until(lambda: not outbox.exists())
            wait_until(lambda: a.admin.health()["status"] == "ok")
            assert raw("POST", "/v1/agent/heartbeat", {"agent_id": "r1"})[0] == 200  # never told to re-register
        finally:
            raw.close()
    finally:
        fleet.close()
