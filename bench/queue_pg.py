"""Issue 11 queue benchmark: three hosts' daemons on one PostgreSQL, lane agents claiming and completing.

    .venv/bin/python bench/queue_pg.py [--tasks 6000] [--agents 8] [--samples 200]

Runs, in one go, against real ``colibri daemon`` processes (one per host: its own COLIBRI_HOST,
state and run directories, the same COLIBRI_DATABASE_URL) and a real PostgreSQL server started
for the run (tests/servers/postgres.py, fsync off as in the tests):

1. throughput: ``--tasks`` operator tasks queued at once (one INSERT, then one NOTIFY), then
   ``--agents`` lane agents per host, each a thread of one client process per host speaking the
   agent API on its host's lane socket (``POST /v1/tasks/claim`` with a long-poll, ``POST /v1/tasks/{id}/result``):
   claim + complete per second across the three hosts, from the first claim to the last result;
2. cross-host pickup on an idle hive: one lane agent long-polling on host c, the operator
   submitting on host a's admin socket; the time from sending the submit to the agent holding
   the lease (``--samples`` of them, one at a time), p50 / p99.  Host c's poll fallback is set to
   an hour here, so what is measured is the NOTIFY path.

The agents are not the mother skill: a mother adds a handler process per task, which is not what
the queue's figure is about.  Prints a Markdown table for docs/PERFORMANCE.md.
"""

import argparse
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.integration.fleet import Agent, Fleet  # noqa: E402
from tests.servers.postgres import PostgresServer, _pg_bindir  # noqa: E402

ENV = {  # liveness at its defaults (the agents here heartbeat); leases long enough for the run
    "COLIBRI_HEARTBEAT_INTERVAL": "10",
    "COLIBRI_AGENT_STALE_AFTER": "30",
    "COLIBRI_AGENT_LOST_AFTER": "90",
    "COLIBRI_TASK_LEASE_SECONDS": "300",
    "COLIBRI_TASK_POLL_INTERVAL": "1.0",
    "COLIBRI_TENANT_MAX_QUEUED_TASKS": "100000",
    "COLIBRI_TENANT_MAX_FINISHED_TASKS": "100000",
    # one lane socket per host carries all its lane agents: its request-rate gate (200/s by
    # default, for a tenant's socket) would be the figure, not the queue
    "COLIBRI_DAEMON_SOCKET_REQUEST_RATE": "0",
}


def _host_agents(socket: str, host: str, per_host: int, tasks: int, go: Any, out: Any) -> None:
    """One process per host (no GIL shared between the hosts' clients): its lane agents' threads."""
    done = [0]
    refused = [0]
    firsts: list[float] = []
    lock = threading.Lock()

    def work(agent: Agent) -> None:
        while True:
            status, lease = agent.claim(1)
            if status == 204:
                if int(fleet_done.value) >= tasks:
                    return
                continue
            if status != 200:
                continue
            if not firsts:
                firsts.append(time.time())
            status, _ = agent.result(lease, result=None)
            while status == 429:  # a gate, not the queue: the same report again
                status, _ = agent.result(lease, result=None)
            with lock:
                if status == 200:
                    done[0] += 1
                    with fleet_done.get_lock():
                        fleet_done.value += 1
                else:
                    refused[0] += 1

    fleet_done = go
    agents = [Agent(Path(socket), f"{host}-{n}", ("bench",)) for n in range(per_host)]
    for agent in agents:
        agent.register()
    threads = [threading.Thread(target=work, args=(a,)) for a in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    last = time.time()
    for agent in agents:
        agent.close()
    out.put((host, done[0], refused[0], firsts[0] if firsts else last, last))


def throughput(fleet: Fleet, tasks: int, per_host: int) -> tuple[float, int, int]:
    fleet.sql(
        "INSERT INTO tasks (capability, payload, state, attempts, max_attempts, submitted_by, created_at, "
        "updated_at, fence) SELECT 'bench', n::text, 'queued', 0, 3, 'operator', now(), now(), 0 "
        "FROM generate_series(1, :n) AS n",
        n=tasks,
    )
    counter = multiprocessing.Value("q", 0)
    out: Any = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(
            target=_host_agents, args=(str(fleet.lane_socket(h, "linux")), h, per_host, tasks, counter, out)
        )
        for h in "abc"
    ]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(30)
    done = sum(r[1] for r in results)
    refused = sum(r[2] for r in results)
    elapsed = max(r[4] for r in results) - min(r[3] for r in results)
    rows = fleet.sql("SELECT count(*) FROM tasks WHERE capability = 'bench' AND state = 'succeeded'")
    assert rows[0][0] == tasks == done and not refused, (rows, done, refused)
    print("tasks per host:", ", ".join(f"{r[0]}: {r[1]}" for r in sorted(results)), flush=True)
    return done / elapsed, done, refused


def floor(url: str, tasks: int) -> tuple[float, float]:
    """The store layer alone: claim + finish through HiveService in this process, one thread, no
    HTTP and no daemon, on the same database (tasks/s, and this process's CPU ms per task)."""
    from colibri.services.hive.rules import AgentRef, Policy, Scope
    from colibri.services.hive.service import HiveService
    from colibri.store.db import Store

    store = Store(url)
    try:
        hive = HiveService(store, Policy(max_queued_tasks=10**6, max_finished_tasks=10**6), host="floor")
        hive.declare_lane("floor")
        for n in range(tasks):
            hive.submit(Scope("admin"), "floor", n)
        ref, scope = AgentRef("lane:floor/f", None, "floor", frozenset({"floor"})), Scope("lane", "floor")
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(tasks):
            lease = hive.claim(ref)
            assert lease is not None
            hive.finish(scope, ref.key, lease["id"], lease["lease"], True, None, None, 0)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return tasks / wall, cpu / tasks * 1000
    finally:
        store.close()


def pickup(fleet: Fleet, samples: int) -> list[float]:
    agent = Agent(fleet.lane_socket("c", "linux"), "c-pickup", ("ping",))
    agent.register()
    got = threading.Event()
    claimed_at: list[float] = []
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            status, lease = agent.claim(30)
            if status == 200:
                claimed_at.append(time.perf_counter())
                got.set()
                agent.result(lease, result=None)

    thread = threading.Thread(target=work)
    thread.start()
    time.sleep(1.0)  # the agent is waiting
    latencies = []
    for n in range(samples):
        got.clear()
        sent = time.perf_counter()
        fleet["a"].admin.submit("ping", n)
        if not got.wait(10):
            raise SystemExit(f"sample {n}: not claimed within 10 s")
        latencies.append((claimed_at[-1] - sent) * 1000)
        time.sleep(0.05)  # idle between samples: the agent is back to waiting
    stop.set()
    fleet["a"].admin.submit("ping", "last")  # ends the agent's long-poll
    thread.join(40)
    agent.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=6000)
    parser.add_argument("--agents", type=int, default=8, help="lane agents per host")
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    bindir = _pg_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries missing (Debian package postgresql)")
    root = Path(tempfile.mkdtemp(prefix="colibri-pg-bench-"))
    root.chmod(0o755)
    server = PostgresServer(bindir, root)
    server.start()
    fleet = Fleet(server.create_database(), ["a", "b", "c"], extra_env=ENV,
                  host_env={"c": {"COLIBRI_TASK_POLL_INTERVAL": "3600"}})  # fmt: skip
    try:
        fleet.start()
        fleet.lane("linux")
        load = os.getloadavg()[0]
        rate, done, refused = throughput(fleet, args.tasks, args.agents)
        latencies = sorted(pickup(fleet, args.samples))
        floor_rate, floor_cpu = floor(fleet.url, 1000)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"\nload average at start: {load:.2f}; {os.cpu_count()} CPUs\n")
        print("| measure | result |")
        print("|---|---|")
        print(f"| claim + complete, 3 hosts x {args.agents} lane agents, {args.tasks} tasks | "
              f"**{rate:,.0f} tasks/s** ({done} completed, {refused} refused) |")  # fmt: skip
        print(f"| floor: claim + finish in-process (HiveService, one thread, no HTTP), 1000 tasks | "
              f"{floor_rate:,.0f} tasks/s, {floor_cpu:.2f} ms of Python CPU per task |")  # fmt: skip
        print(f"| cross-host submit (host a) -> claimed (host c), idle, {len(latencies)} samples | "
              f"p50 **{statistics.median(latencies):.1f} ms**, p99 **{p99:.1f} ms**, "
              f"max {latencies[-1]:.1f} ms |")  # fmt: skip
    finally:
        fleet.close()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
