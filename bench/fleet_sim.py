"""Issue 11 simulation: many hosts' liveness writes on one PostgreSQL, past what this machine runs.

    .venv/bin/python bench/fleet_sim.py [--seconds 15] [--configs 100x2000@60,100x2000@0,...]

No daemons: each simulated host does, on a real private PostgreSQL server and through colibri's
own store code (AgentRepo.write_heartbeats / extend_task_leases, HostRepo.renew /
mark_expired_lost), exactly what a daemon writes, in real time, one tick (the 1 s flush) at a
time, the hosts' work spread over 8 worker threads (connections):

* every tick, one batched UPDATE of the agents whose row is due: an agent beats every
  ``interval`` (Nomad's rule gives 10 s to 2,000 agents at 200 beats/s a host) and its row is
  rewritten at most every ``heartbeat_write_interval`` (``@W`` in a config; 0: at every beat);
* every tick, the lease extension of the agents that beat in it (one UPDATE, ``= ANY``);
* every lease/3, its host lease renewal; every tick, the check for lost hosts.

Liveness is exact when every tick's work fits in the tick (a late flush is a late lease) and the
one host that stops renewing (at tick 2) is declared lost within lease + grace + 1 tick while no
other host ever is.  Prints Markdown for docs/PERFORMANCE.md.
"""

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402

from colibri.store.agents import AgentRepo  # noqa: E402
from colibri.store.db import Store  # noqa: E402
from colibri.store.hosts import HostRepo  # noqa: E402
from tests.servers.postgres import PostgresServer, _pg_bindir  # noqa: E402

INTERVAL = 10.0  # the beat interval Nomad's rule gives 2,000 agents at 200 beats/s a host
LEASE, GRACE = 6.0, 2.0  # short, so the victim's loss falls inside the run


@dataclass(frozen=True)
class Config:
    hosts: int
    agents: int
    write_every: float

    @property
    def label(self) -> str:
        return f"{self.hosts} hosts x {self.agents:,} agents, write interval {self.write_every:g} s"

    @property
    def predicted(self) -> float:
        """Agent rows/s: hosts x agents / max(beat interval, write interval), plus the renewals."""
        return self.hosts * self.agents / max(INTERVAL, self.write_every) + self.hosts / (LEASE / 3)


def parse(text: str) -> Config:
    size, _, every = text.partition("@")
    hosts, _, agents = size.partition("x")
    return Config(int(hosts), int(agents), float(every or 60))


def seed(server: PostgresServer, config: Config) -> str:
    url = server.create_database()
    Store(url).close()  # the migrations
    database = url.rsplit("/", 1)[1]
    now = time.time()
    with psycopg.connect(f"host=127.0.0.1 port={server.port} user={server.user} dbname={database}") as conn:
        with conn.cursor().copy("COPY hosts (name, state, lease_expires_at, lease_term, enrolled_at, updated_at) "
                                "FROM STDIN") as copy:  # fmt: skip
            for h in range(config.hosts):
                copy.write_row((f"h{h}", "up", now + LEASE, 1, "2026-01-01", "2026-01-01"))
        with conn.cursor().copy("COPY agents (key, agent_id, tenant_id, capabilities, state, registered_at, "
                                "last_seen_at, state_changed_at, host) FROM STDIN") as copy:  # fmt: skip
            for h in range(config.hosts):
                for a in range(config.agents):
                    copy.write_row((f"t{h}/a{a}", f"a{a}", f"t{h}", "[]", "active", "2026-01-01", "2026-01-01",
                                    "2026-01-01", f"h{h}"))  # fmt: skip
        conn.commit()
    return url


def run(server: PostgresServer, config: Config, seconds: float) -> dict[str, object]:
    url = seed(server, config)
    store = Store(url)
    every_ticks = max(1, math.ceil(max(INTERVAL, config.write_every)))
    beat_ticks = int(INTERVAL)
    renew_ticks = max(1, int(LEASE / 3))
    victim_stops, lost_at, false_losses = 2, None, 0
    rows_written = 0
    tick_times: list[float] = []
    start = time.time()

    def host_tick(h: int, tick: int) -> tuple[int, list[str]]:
        now = time.time()
        due = [(f"t{h}/a{a}", now) for a in range(config.agents) if (a + h) % every_ticks == tick % every_ticks]
        beating = [f"t{h}/a{a}" for a in range(config.agents) if (a + h) % beat_ticks == tick % beat_ticks]
        written = 0
        with store.session() as session:
            agents = AgentRepo(session)
            if due:
                written += agents.write_heartbeats(due)
            agents.extend_task_leases(beating, now + 300, now + 150)
            hosts = HostRepo(session)
            if (tick + h) % renew_ticks == 0 and not (h == 0 and tick >= victim_stops):
                hosts.renew(f"h{h}", 1, now + LEASE)
                written += 1
            lost = hosts.mark_expired_lost(now - GRACE, f"h{h}")
        return written, lost

    with ThreadPoolExecutor(8) as pool:
        for tick in range(int(seconds)):
            begun = time.perf_counter()
            for written, lost in pool.map(lambda h, t=tick: host_tick(h, t), range(config.hosts)):
                rows_written += written
                for name in lost:
                    if name == "h0" and lost_at is None:
                        lost_at = time.time() - start
                    elif name != "h0":
                        false_losses += 1
            spent = time.perf_counter() - begun
            tick_times.append(spent)
            time.sleep(max(0.0, 1.0 - spent))
    elapsed = time.time() - start
    store.close()
    ordered = sorted(tick_times)
    return {
        "rows": rows_written / elapsed,
        "p50": ordered[len(ordered) // 2],
        "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "lost_at": lost_at,
        "false": false_losses,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--configs", default="25x2000@0,50x2000@0,100x2000@0,100x2000@60,200x2000@60,400x2000@60")
    args = parser.parse_args()
    bindir = _pg_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries are needed (Debian package postgresql)")
    root = Path(tempfile.mkdtemp(prefix="cbsim"))
    root.chmod(0o755)
    server = PostgresServer(bindir, root)
    server.start()
    lines = []
    try:
        for text in args.configs.split(","):
            config = parse(text)
            found = run(server, config, args.seconds)
            lost = found["lost_at"]
            deadline = victim_deadline = 2 + LEASE + GRACE + 1
            exact = found["false"] == 0 and lost is not None and float(lost) <= victim_deadline  # type: ignore[arg-type]
            exact = exact and float(found["p99"]) <= 1.0  # type: ignore[arg-type]
            lines.append(
                f"| {config.label} | {config.predicted:,.0f} | {found['rows']:,.0f} | "
                f"{float(found['p50']) * 1000:.0f} / {float(found['p99']) * 1000:.0f} ms | "  # type: ignore[arg-type]
                f"{'-' if lost is None else f'{float(lost):.1f} s'} (by {deadline:g} s) | {found['false']} | "  # type: ignore[arg-type]
                f"{'yes' if exact else 'NO'} |"
            )
            print(lines[-1], flush=True)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"\nload average: {load:.2f}; lease {LEASE:g} s, grace {GRACE:g} s, beat interval {INTERVAL:g} s")
    print(
        "| configuration | predicted rows/s | written rows/s | tick work p50 / p99 (budget 1 s) | victim lost at "
        "| false losses | liveness exact |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
