"""Issue 11 benchmark: heartbeats on three hosts sharing one PostgreSQL, and host loss.

    .venv/bin/python bench/heartbeat_pg.py [--agents 2000] [--seconds 5] [--rate 5000] [--trials 20]

Runs, in one go, against a private PostgreSQL server it starts (tests/servers/postgres.py) and
real ``colibri daemon`` processes (each its own COLIBRI_HOST, state and run directories):

1. ingest: 3 daemons x N agents (20 tenants a host, one keep-alive connection per agent; the
   client is this process, in-process asyncio on the daemons' real Unix sockets).  Each host in
   turn at an open-loop --rate while the other two keep their agents registered, then all three
   at once, closed loop.  The rows written to PostgreSQL come from the daemons' own counters
   (colibri_heartbeat_rows_written_total) and from pg_stat_database (tup_updated);
2. host loss: a victim daemon and a rescuer daemon with short leases (1 s, grace 0.5 s); each
   trial leases a task to the victim's agent, SIGSTOPs the victim, times SIGSTOP -> the task
   queued again (polled in the database every 5 ms), lets a lane agent on the rescuer finish it,
   SIGCONTs the victim and sends its stale completion: it must be refused (409).
Prints Markdown for docs/PERFORMANCE.md.
"""

import argparse
import asyncio
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
from heartbeats import Client, closed_loop, connect, http, open_loop, pct, shown  # noqa: E402
from sqlmodel import Session  # noqa: E402

from colibri.adapters.daemon_client import DaemonClient  # noqa: E402
from colibri.services.tenants import TenantService  # noqa: E402
from colibri.store.db import Store  # noqa: E402
from colibri.store.models import Tenant  # noqa: E402
from tests.integration.hive_harness import Raw  # noqa: E402
from tests.servers.postgres import PostgresServer, _pg_bindir  # noqa: E402

TENANTS_PER_HOST = 20


def raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Host:
    """One colibri daemon on the shared database."""

    def __init__(self, name: str, url: str, env: dict[str, str]) -> None:
        self.name = name
        self.root = Path(tempfile.mkdtemp(prefix="cbh", dir="/tmp"))
        (self.root / "c.toml").write_text("")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("COLIBRI_")}
        self.env.update(
            COLIBRI_CONFIG=str(self.root / "c.toml"), COLIBRI_STATE_DIR=str(self.root / "db"),
            COLIBRI_RUN_DIR=str(self.root / "run"), COLIBRI_LOG_DIR=str(self.root / "log"), COLIBRI_HOST=name,
            COLIBRI_DATABASE_URL=url, COLIBRI_RECONCILE_INTERVAL="0",
            COLIBRI_AGENT_STALE_AFTER="600", COLIBRI_AGENT_LOST_AFTER="1200",
            COLIBRI_TENANT_MAX_AGENTS="1000", COLIBRI_DAEMON_MAX_CONNECTIONS_PER_SOCKET="1000",
            COLIBRI_DAEMON_SOCKET_REQUEST_RATE="1000000", **env,
        )  # fmt: skip
        self.tenants = [f"{name}t{n:02d}" for n in range(TENANTS_PER_HOST)]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.root / "daemon.log").open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "colibri", "daemon"], env=self.env, stderr=log,
                                     preexec_fn=raise_nofile)  # fmt: skip
        log.close()
        admin = DaemonClient(self.root / "run" / "admin.sock", timeout=5)
        deadline = time.monotonic() + 60
        while True:
            try:
                admin.health()
                break
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    log = (self.root / "daemon.log").read_text()
                    raise SystemExit(f"daemon {self.name} did not start:\n{log}") from None
                time.sleep(0.1)

    @property
    def admin(self) -> DaemonClient:
        return DaemonClient(self.root / "run" / "admin.sock", timeout=10)

    def socket(self, tenant: str) -> str:
        return str(self.root / "run" / "agents" / tenant / "agent.sock")

    def counter(self, name: str) -> float:
        for line in self.admin.metrics().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(30)
        shutil.rmtree(self.root, ignore_errors=True)


def make_tenants(url: str, hosts: list[Host]) -> None:
    store = Store(url)
    try:
        for host in hosts:
            service = TenantService(store, host.name)
            for tenant in host.tenants:
                service.register(tenant, None, None)
        with Session(store.engine) as session:
            for host in hosts:
                for tenant in host.tenants:
                    row = session.get(Tenant, tenant)
                    assert row is not None
                    row.status = "active"
                    session.add(row)
            session.commit()
    finally:
        store.close()


async def register(host: Host, count: int) -> list[tuple[Client, bytes]]:
    clients = []
    caps = [{"name": "echo", "version": "1"}]
    for n in range(count):
        client = await connect(host.socket(host.tenants[n % len(host.tenants)]))
        latency = await client.request(http("/v1/agent/register", {"agent_id": f"a{n}", "capabilities": caps}))
        assert latency >= 0, "a registration was refused"
        clients.append((client, http("/v1/agent/heartbeat", {"agent_id": f"a{n}"})))
    return clients


def tup_updated(server: PostgresServer, database: str) -> int:
    with psycopg.connect(f"host=127.0.0.1 port={server.port} user={server.user} dbname={database}") as conn:
        conn.execute("SELECT pg_stat_force_next_flush()") if server_version(conn) >= 150000 else None
        row = conn.execute("SELECT tup_updated FROM pg_stat_database WHERE datname = %s", (database,)).fetchone()
        return int(row[0]) if row else 0


def server_version(conn: Any) -> int:
    return int(conn.info.server_version)


async def ingest(args: argparse.Namespace, server: PostgresServer, every: float) -> list[tuple[str, str]]:
    url = server.create_database()
    database = url.rsplit("/", 1)[1]
    hosts = [Host(f"h{n}", url, {"COLIBRI_HEARTBEAT_WRITE_INTERVAL": str(every)}) for n in range(1, 4)]
    bound = f"bound {args.agents:,} agents / max(1 s flush, {every:g} s write interval)"
    rows: list[tuple[str, str]] = []
    try:
        make_tenants(url, hosts)
        for host in hosts:
            host.start()
        fleets = [await register(host, args.agents) for host in hosts]
        await asyncio.sleep(2.5)  # the registrations' first flush is behind us
        for host, clients in zip(hosts, fleets, strict=True):
            before_rows, before_pg = host.counter("colibri_heartbeat_rows_written_total"), tup_updated(server, database)
            start = time.perf_counter()
            rate, latencies = await open_loop(clients, args.seconds, args.rate)
            await asyncio.sleep(1.2)  # the last flush of the window
            elapsed = time.perf_counter() - start
            written = host.counter("colibri_heartbeat_rows_written_total") - before_rows
            pg = tup_updated(server, database) - before_pg
            rows.append((f"write interval {every:g} s: host {host.name}, open loop at {args.rate:,.0f}/s, "
                         f"{args.agents} agents (2 hosts idle)", shown(rate, latencies)))  # fmt: skip
            rows.append((f"write interval {every:g} s: host {host.name}: rows written to PostgreSQL",
                         f"{written / elapsed:,.0f} agent rows/s by the daemon, {pg / elapsed:,.0f} tuples/s "
                         f"updated in the database ({bound})"))  # fmt: skip
        before = [h.counter("colibri_heartbeat_rows_written_total") for h in hosts]
        before_pg = tup_updated(server, database)
        start = time.perf_counter()
        results = await asyncio.gather(*(closed_loop(c, args.seconds) for c in fleets))
        await asyncio.sleep(1.2)
        elapsed = time.perf_counter() - start
        written = sum(h.counter("colibri_heartbeat_rows_written_total") for h in hosts) - sum(before)
        pg = tup_updated(server, database) - before_pg
        for host, (rate, latencies) in zip(hosts, results, strict=True):
            rows.append((f"write interval {every:g} s: host {host.name}, closed loop, all 3 hosts at once",
                         shown(rate, latencies)))  # fmt: skip
        rows.append((f"write interval {every:g} s: 3 hosts at once: rows written to PostgreSQL",
                     f"{written / elapsed:,.0f} agent rows/s by the daemons, {pg / elapsed:,.0f} tuples/s updated "
                     f"(3 x {bound})"))  # fmt: skip
        for clients in fleets:
            for client, _ in clients:
                client.transport.close()  # type: ignore[attr-defined]
    finally:
        for host in hosts:
            host.close()
    return rows


def loss_trials(args: argparse.Namespace, server: PostgresServer) -> list[tuple[str, str]]:
    url = server.create_database()
    database = url.rsplit("/", 1)[1]
    short = {"COLIBRI_HOST_LEASE_SECONDS": str(args.lease), "COLIBRI_HOST_LEASE_GRACE": str(args.grace)}
    victim, rescuer = Host("victim", url, short), Host("rescuer", url, short)
    victim.tenants, rescuer.tenants = ["vt"], ["rt"]
    samples: list[float] = []
    twice = refused = 0
    try:
        make_tenants(url, [victim, rescuer])
        victim.start()
        victim.admin.declare_lane("build")
        rescuer.start()
        agent = Raw(Path(victim.socket("vt")))
        lane = Raw(rescuer.root / "run" / "lanes" / "build" / "agent.sock")
        job = [{"name": "job", "version": "1"}]
        assert lane("POST", "/v1/agent/register", {"agent_id": "l1", "capabilities": job})[0] == 200
        db = psycopg.connect(f"host=127.0.0.1 port={server.port} user={server.user} dbname={database}",
                             autocommit=True)  # fmt: skip
        assert victim.proc is not None
        for trial in range(args.trials):
            assert agent("POST", "/v1/agent/register", {"agent_id": "a1", "capabilities": job})[0] == 200
            task = victim.admin.submit("job", trial, tenant="vt")
            status, lease = agent("POST", "/v1/tasks/claim", {"agent_id": "a1", "wait": 10})
            assert status == 200 and lease["id"] == task["id"], lease
            start = time.perf_counter()
            victim.proc.send_signal(signal.SIGSTOP)
            while True:
                state = db.execute("SELECT state FROM tasks WHERE id = %s", (task["id"],)).fetchone()
                if state is not None and state[0] != "running":
                    break
                time.sleep(0.005)
            samples.append(time.perf_counter() - start)
            status, taken = lane("POST", "/v1/tasks/claim", {"agent_id": "l1", "wait": 10})
            assert status == 200 and taken["id"] == task["id"], taken
            done = {"agent_id": "l1", "lease": taken["lease"], "ok": True, "result": "lane"}
            assert lane("POST", f"/v1/tasks/{task['id']}/result", done)[0] == 200
            victim.proc.send_signal(signal.SIGCONT)
            late = {"agent_id": "a1", "lease": lease["lease"], "ok": True, "result": "victim"}
            status, _ = agent("POST", f"/v1/tasks/{task['id']}/result", late)
            refused += status == 409
            twice += status == 200
            deadline = time.monotonic() + 30
            while victim.admin.health().get("fleet", {}).get("lease") != "held":
                assert time.monotonic() < deadline, "the victim did not take its lease back"
                time.sleep(0.02)
            row = db.execute("SELECT result, agent_key FROM tasks WHERE id = %s", (task["id"],)).fetchone()
            assert row == ('"lane"', "lane:build/l1"), row
        db.close()
        agent.close()
        lane.close()
    finally:
        victim.close()
        rescuer.close()
    bound = args.lease + args.grace + 5
    return [
        (f"host loss -> its task queued again, {args.trials} trials (lease {args.lease:g} s, grace {args.grace:g} s)",
         f"p50 {pct(samples, 0.5) / 1000:.2f} s  p99 {pct(samples, 0.99) / 1000:.2f} s  max {max(samples):.2f} s "
         f"(target p99 <= {bound:g} s)"),
        ("late completions from the lost host", f"{refused} refused (409), {twice} accepted (completed twice)"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--grace", type=float, default=0.5)
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--write-intervals", type=lambda t: [float(x) for x in t.split(",")], default=[0.0, 60.0],
                        help="heartbeat_write_interval values to run the ingest with (0: every flush)")  # fmt: skip
    args = parser.parse_args()
    raise_nofile()
    bindir = _pg_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries are needed (Debian package postgresql)")
    root = Path(tempfile.mkdtemp(prefix="cbpg"))
    root.chmod(0o755)
    server = PostgresServer(bindir, root)
    server.start()
    rows: list[tuple[str, str]] = []
    try:
        for every in () if args.skip_ingest else args.write_intervals:
            rows += asyncio.run(ingest(args, server, every))
        rows += loss_trials(args, server)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average before/after: {os.getloadavg()[0]:.2f}")
    print("| measurement | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
