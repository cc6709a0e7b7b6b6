"""Issue 11 queue benchmark: three hosts' daemons on one PostgreSQL, lane agents claiming and completing.

    .venv/bin/python bench/queue_pg.py [--tasks 6000] [--agents 8] [--samples 200] [--baseline DIR] [--rounds 2]

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

3. the floor: the store layer alone (``HiveService.claim_many`` + ``finish``, one thread, no HTTP,
   no daemon) on the same server, in a process of its own, with this process's CPU per task; and
   before it the submits that queued its tasks (``HiveService.submit``, one thread), per second;
   with ``--behind N`` the floor again, behind ``N`` finished tasks (a hive's kept history: a claim
   that walks the finished rows before the first queued one pays for each of them), with half its
   tasks (and history) a tenant's, claimed by that tenant's agent, and half the operator's, claimed
   by a lane; with ``--wide N`` the floor again, its lane offering two capabilities, ``N`` tasks of
   the second queued ahead (a pick over several capabilities).

With ``--baseline DIR`` (a plain export of an earlier commit's ``colibri`` package, e.g.
``git archive <commit> colibri | tar -x -C DIR``), 1 and 3 run for both codes, alternated
``--rounds`` times in one run on the same server and load (the daemons and the floor take the
package from ``PYTHONPATH``; each round is a fresh database): a before/after ratio of one run.

The agents are not the mother skill: a mother adds a handler process per task, which is not what
the queue's figure is about.  Prints a Markdown table for docs/PERFORMANCE.md.
"""

import argparse
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))  # last: a PYTHONPATH baseline's colibri comes first (tests/ only lives here)

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


HISTORY = (  # finished tasks, half of them tenant acme's
    "INSERT INTO tasks (tenant_id, capability, payload, state, attempts, max_attempts, submitted_by, created_at, "
    "updated_at, fence) SELECT CASE WHEN n % 2 = 0 THEN 'acme' END, CASE WHEN n % 2 = 0 THEN 'mine' ELSE 'floor' END, "
    "'null', 'succeeded', 1, 3, 'operator', "
    "now(), now(), 1 FROM generate_series(1, :n) AS n"
)


def floor(url: str, tasks: int, behind: int = 0, wide: int = 0) -> tuple[float, float, float]:
    """The store layer alone: claim + finish through HiveService in this process, one thread, no
    HTTP and no daemon, on the same database (tasks/s, and this process's CPU ms per task); the
    daemon's calls (``claim_many``, the fence named), with the host lease taken as a daemon does;
    and the submits before it, per second."""
    from sqlalchemy import text

    from colibri.services.hive.rules import AgentRef, Policy, Scope
    from colibri.services.hive.service import HiveService
    from colibri.store.db import Store
    from tests.unit.daemon.hive_world import active_tenants

    store = active_tenants(url, {"acme": "floor"}) if behind else Store(url)
    try:
        hive = HiveService(store, Policy(max_queued_tasks=10**6, max_finished_tasks=10**6), host="floor")
        hive.hosts.start()
        hive.declare_lane("floor")
        if behind:  # the kept history, ahead of every queued task by id
            with store.connect() as conn:
                conn.execute(text(HISTORY), {"n": behind})
                conn.commit()
        for n in range(wide):  # the second capability's queue, ahead
            hive.submit(Scope("admin"), "floor2", n)
        owners = [(None, "floor"), ("acme", "mine")] if behind else [(None, "floor")]
        submits = time.perf_counter()
        for n in range(tasks):
            owner, capability = owners[n % len(owners)]
            hive.submit(Scope("admin"), capability, n, tenant=owner)
        submits = tasks / (time.perf_counter() - submits)
        if behind or wide:  # the planner's statistics as autovacuum's ANALYZE leaves them: a queue behind its history
            with store.connect() as conn:
                conn.execute(text("ANALYZE tasks"))
                conn.commit()
        hive.hosts.renew()  # the submits may have taken most of the host lease (30 s)
        offered = frozenset({"floor", "floor2"} if wide else {"floor"})
        lane = AgentRef("lane:floor/f", None, "floor", offered), Scope("lane", "floor")
        if behind:
            hive.register(Scope("tenant", "acme"), "m1", [{"name": "mine", "version": "1"}], None)
        mine = AgentRef("acme/m1", "acme", None, frozenset({"mine"})), Scope("tenant", "acme")
        wall, cpu = time.perf_counter(), time.process_time()
        for n in range(tasks):
            ref, scope = mine if behind and n % 2 else lane
            lease = hive.claim_many([ref])[0]
            assert lease is not None
            hive.finish(scope, ref.key, lease["id"], lease["lease"], True, None, None, 0, lease["fence"])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return tasks / wall, cpu / tasks * 1000, submits
    finally:
        store.close()


def floor_in(
    code: str | None, url: str, tasks: int, cwd: Path, behind: int = 0, wide: int = 0
) -> tuple[float, float, float]:
    """``floor`` in a process of its own, with ``code``'s colibri package (None: this tree's)."""
    env = {**os.environ, **({"PYTHONPATH": code} if code else {})}
    argv = [sys.executable, __file__, "--floor", url, "--tasks", str(tasks), "--behind", str(behind),
            "--wide", str(wide)]  # fmt: skip
    out = subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True, text=True).stdout.split()
    return float(out[-3]), float(out[-2]), float(out[-1])


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


def hive_of(server: PostgresServer, code: str | None, **kwargs: Any) -> Fleet:
    """Three hosts' daemons on a fresh database, running ``code``'s colibri (None: this tree's)."""
    env = {**ENV, **({"PYTHONPATH": code} if code else {})}
    fleet = Fleet(server.create_database(), ["a", "b", "c"], extra_env=env, **kwargs)
    fleet.start()
    fleet.lane("linux")
    return fleet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=6000)
    parser.add_argument("--agents", type=int, default=8, help="lane agents per host")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--baseline", help="an earlier colibri package's parent directory, for before/after")
    parser.add_argument("--rounds", type=int, default=2, help="before/after rounds, alternated")
    parser.add_argument("--behind", type=int, default=0, help="the floor again behind this many finished tasks")
    parser.add_argument("--wide", type=int, default=0, help="the floor again, a 2-capability lane, this many queued")
    parser.add_argument("--floor", metavar="URL", help=argparse.SUPPRESS)  # the floor's own process
    args = parser.parse_args()
    if args.floor:
        rate, cpu, submits = floor(args.floor, args.tasks, args.behind, args.wide)
        print(f"{rate:.1f} {cpu:.4f} {submits:.1f}")
        return
    if 3 * args.agents > 32:  # one lane: tenant_max_agents (32) live agents across the hosts
        raise SystemExit("--agents: at most 10 per host (a lane has at most 32 live agents)")
    bindir = _pg_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries missing (Debian package postgresql)")
    root = Path(tempfile.mkdtemp(prefix="colibri-pg-bench-"))
    root.chmod(0o755)
    os.chdir(root)  # the daemons' cwd: not this tree, so a PYTHONPATH baseline is the one imported
    server = PostgresServer(bindir, root)
    server.start()
    codes: list[tuple[str, str | None]] = [("after", None)]
    if args.baseline:
        codes = [("before", str(Path(args.baseline).resolve())), ("after", None)]
    rows: dict[str, list[tuple[float, float, float, float, float]]] = {name: [] for name, _ in codes}
    behind: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _ in codes}
    wide: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _ in codes}
    try:
        load = os.getloadavg()[0]
        for _ in range(args.rounds if args.baseline else 1):
            for name, code in codes:
                fleet = hive_of(server, code)
                try:
                    round_load = os.getloadavg()[0]
                    rate, done, refused = throughput(fleet, args.tasks, args.agents)
                finally:
                    fleet.close()
                floor_rate, floor_cpu, submits = floor_in(code, server.create_database(), 1000, root)
                rows[name].append((rate, floor_rate, floor_cpu, round_load, submits))
                print(f"{name}: {rate:,.0f} tasks/s ({done} completed, {refused} refused); floor {floor_rate:,.0f}"
                      f" tasks/s, {floor_cpu:.2f} ms CPU/task, {submits:,.0f} submits/s; load {round_load:.2f}",
                      flush=True)  # fmt: skip
                if args.behind:
                    behind[name].append(floor_in(code, server.create_database(), 1000, root, args.behind))
                    print(f"{name}: behind {args.behind:,} finished: floor {behind[name][-1][0]:,.0f} tasks/s, "
                          f"{behind[name][-1][1]:.2f} ms CPU/task", flush=True)  # fmt: skip
                if args.wide:
                    wide[name].append(floor_in(code, server.create_database(), 1000, root, wide=args.wide))
                    print(f"{name}: 2 capabilities, {args.wide:,} queued: floor {wide[name][-1][0]:,.0f} tasks/s, "
                          f"{wide[name][-1][1]:.2f} ms CPU/task", flush=True)  # fmt: skip
        fleet = hive_of(server, None, host_env={"c": {"COLIBRI_TASK_POLL_INTERVAL": "3600"}})
        try:
            latencies = sorted(pickup(fleet, args.samples))
        finally:
            fleet.close()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"\nload average at start: {load:.2f}; {os.cpu_count()} CPUs\n")
        print("| measure | " + " | ".join(name for name, _ in codes) + " |")
        print("|---|" + "---|" * len(codes))
        best = {name: max(rows[name]) for name, _ in codes}
        print(
            f"| claim + complete, 3 hosts x {args.agents} lane agents, {args.tasks} tasks (best of "
            f"{len(rows['after'])}) | " + " | ".join(f"**{best[n][0]:,.0f} tasks/s**" for n, _ in codes) + " |"
        )
        print("| each round (tasks/s) | "
              + " | ".join(", ".join(f"{r[0]:,.0f}" for r in rows[n]) for n, _ in codes) + " |")  # fmt: skip
        print("| floor: claim + finish in-process, one thread, 1000 tasks | "
              + " | ".join(", ".join(f"{r[1]:,.0f}/s {r[2]:.2f} ms CPU" for r in rows[n]) for n, _ in codes)
              + " |")  # fmt: skip
        if args.behind:
            print(f"| floor behind {args.behind:,} finished tasks, half a tenant's (its agent), half a lane's | "
                  + " | ".join(", ".join(f"{r[0]:,.0f}/s {r[1]:.2f} ms CPU" for r in behind[n]) for n, _ in codes)
                  + " |")  # fmt: skip
        if args.wide:
            print(f"| floor, a lane of 2 capabilities, {args.wide:,} of the other queued ahead | "
                  + " | ".join(", ".join(f"{r[0]:,.0f}/s {r[1]:.2f} ms CPU" for r in wide[n]) for n, _ in codes)
                  + " |")  # fmt: skip
        print("| floor: submit in-process, one thread, 1000 tasks (submits/s) | "
              + " | ".join(", ".join(f"{r[4]:,.0f}" for r in rows[n]) for n, _ in codes) + " |")  # fmt: skip
        print(
            f"| cross-host submit (host a) -> claimed (host c), idle, {len(latencies)} samples (after) | "
            f"p50 **{statistics.median(latencies):.1f} ms**, p99 **{p99:.1f} ms**, max {latencies[-1]:.1f} ms |"
        )
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
