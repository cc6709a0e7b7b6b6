"""Hive benchmark: heartbeat ingest vs a bare asyncio echo floor, RSS at 10,000 agents, routing latency.

    .venv/bin/python bench/heartbeats.py [--agents 2000] [--seconds 5] [--rate 5000]

Runs, in one go and against a real ``colibri daemon`` process on real Unix sockets:
1. the floor: a bare asyncio HTTP echo over a Unix socket, same client, same load;
2. heartbeat ingest from N simulated agents (100 tenants, each agent on its tenant's socket,
   one keep-alive connection per agent): closed loop (saturation) and open loop at --rate;
3. the daemon's RSS once 10,000 agents are registered;
4. submit -> claimed latency on an idle hive (one agent long-polling, the admin submitting).
Prints a Markdown table for docs/PERFORMANCE.md.
"""

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from colibri.services.tenants import TenantService  # noqa: E402
from colibri.store.db import Store  # noqa: E402

ECHO_SERVER = r"""
import asyncio, sys
BODY = b'{"interval":10.0,"actions":[]}'
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n" + BODY
class Echo(asyncio.Protocol):
    def connection_made(self, t): self.t, self.buf = t, b""
    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0: return
            head = self.buf[:end].lower()
            i = head.find(b"content-length:")
            n = int(head[i + 15:].split(b"\r\n")[0]) if i >= 0 else 0
            if len(self.buf) < end + 4 + n: return
            self.buf = self.buf[end + 4 + n:]
            self.t.write(RESPONSE)
async def main():
    server = await asyncio.get_running_loop().create_unix_server(Echo, sys.argv[1])
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


class Client(asyncio.Protocol):
    """One keep-alive connection; ``request()`` sends and resolves with the latency."""

    def __init__(self) -> None:
        self.buf = b""
        self.waiter: asyncio.Future[float] | None = None
        self.sent = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].lower()
        i = head.find(b"content-length:")
        n = int(head[i + 15 :].split(b"\r\n")[0]) if i >= 0 else 0
        if len(self.buf) < end + 4 + n:
            return
        body, self.buf = self.buf[end + 4 : end + 4 + n], self.buf[end + 4 + n :]
        if self.waiter is not None and not self.waiter.done():
            status = int(head[9:12])
            self.waiter.set_result(time.perf_counter() - self.sent if status == 200 else -1.0)
        self.body = body

    def request(self, data: bytes) -> "asyncio.Future[float]":
        self.waiter = asyncio.get_running_loop().create_future()
        self.sent = time.perf_counter()
        self.transport.write(data)  # type: ignore[attr-defined]
        return self.waiter


def http(path: str, body: dict[str, object]) -> bytes:
    data = json.dumps(body).encode()
    return f"POST {path} HTTP/1.1\r\nHost: c\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data


async def connect(path: str) -> Client:
    _, client = await asyncio.get_running_loop().create_unix_connection(Client, path)
    return client


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def closed_loop(clients: list[tuple[Client, bytes]], seconds: float) -> tuple[float, list[float]]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def run(client: Client, req: bytes) -> None:
        while time.perf_counter() < stop:
            latency = await client.request(req)
            assert latency >= 0, "a heartbeat was refused"
            latencies.append(latency)

    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(run(c, r) for c, r in clients)), seconds + 60)  # fail, never hang
    return len(latencies) / (time.perf_counter() - start), latencies


async def open_loop(clients: list[tuple[Client, bytes]], seconds: float, rate: float) -> tuple[float, list[float]]:
    """Each agent beats every len(clients)/rate seconds (random phase): the hive's real pattern."""
    latencies: list[float] = []
    period = len(clients) / rate
    stop = time.perf_counter() + seconds

    async def run(client: Client, req: bytes) -> None:
        await asyncio.sleep(random.random() * period)
        nxt = time.perf_counter()
        while nxt < stop:
            latency = await client.request(req)
            assert latency >= 0
            latencies.append(latency)
            nxt += period
            await asyncio.sleep(max(0.0, nxt - time.perf_counter()))

    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(run(c, r) for c, r in clients)), seconds + 60)  # fail, never hang
    return len(latencies) / (time.perf_counter() - start), latencies


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Daemon:
    def __init__(self, tenants: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="cbb", dir="/tmp"))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("COLIBRI_")}
        self.env.update(
            COLIBRI_CONFIG=str(self.root / "c.toml"), COLIBRI_STATE_DIR=str(self.root / "db"),
            COLIBRI_RUN_DIR=str(self.root / "run"), COLIBRI_HOST="bench", COLIBRI_RECONCILE_INTERVAL="0",
            COLIBRI_AGENT_STALE_AFTER="600", COLIBRI_AGENT_LOST_AFTER="1200",
            # the per-tenant limits stay on (their cost is measured) but above this load: up to
            # 100 agents per tenant, each on its own connection, beating as fast as they can
            COLIBRI_TENANT_MAX_AGENTS="1000", COLIBRI_DAEMON_MAX_CONNECTIONS_PER_SOCKET="1000",
            COLIBRI_DAEMON_SOCKET_REQUEST_RATE="1000000",
        )  # fmt: skip
        (self.root / "c.toml").write_text("")
        db = self.root / "db" / "colibri.db"
        store = Store(f"sqlite:///{db}")
        service = TenantService(store, "bench")
        self.tenants = [f"t{n:03d}x" for n in range(tenants)]
        for name in self.tenants:
            service.register(name, None, None)
        store.close()
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE tenants SET status = 'active'")
        conn.close()
        self.log = (self.root / "daemon.log").open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "colibri", "daemon"], env=self.env, stderr=self.log)

    def socket(self, tenant: str) -> str:
        return str(self.root / "run" / "agents" / tenant / "agent.sock")

    @property
    def admin(self) -> str:
        return str(self.root / "run" / "admin.sock")

    async def ready(self) -> None:
        last = Path(self.socket(self.tenants[-1]))
        while not last.exists():  # noqa: ASYNC110, ASYNC240 - a benchmark polling for the daemon's socket
            await asyncio.sleep(0.05)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


async def register(daemon: Daemon, count: int, keep: bool = True) -> list[tuple[Client, bytes]]:
    """Register ``count`` agents, each over its tenant's socket; keep the connections open or not."""
    clients = []
    for n in range(count):
        tenant = daemon.tenants[n % len(daemon.tenants)]
        client = await connect(daemon.socket(tenant))
        caps = [{"name": "echo", "version": "1"}]
        assert await client.request(http("/v1/agent/register", {"agent_id": f"a{n}", "capabilities": caps})) >= 0
        if keep:
            clients.append((client, http("/v1/agent/heartbeat", {"agent_id": f"a{n}"})))
        else:
            client.transport.close()  # type: ignore[attr-defined]
    return clients


class Router:
    """One agent long-polling for ``route`` tasks on a tenant's socket and the admin submitting them."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    async def open(self) -> "Router":
        self.agent = await connect(self.daemon.socket(self.daemon.tenants[0]))
        self.admin = await connect(self.daemon.admin)
        register = {"agent_id": "router", "capabilities": [{"name": "route"}]}
        await self.agent.request(http("/v1/agent/register", register))
        return self

    async def cycle(self) -> float:
        """One submit -> claimed on an idle hive (the claim parked first); the agent then reports."""
        claim = self.agent.request(http("/v1/tasks/claim", {"agent_id": "router", "wait": 30}))
        await asyncio.sleep(0.01)  # the claim is parked: the hive is idle and waiting
        start = time.perf_counter()
        await self.admin.request(
            http("/v1/tasks", {"capability": "route", "payload": 1, "tenant": self.daemon.tenants[0]})
        )
        await claim
        taken = time.perf_counter() - start
        task = json.loads(self.agent.body)
        done = {"agent_id": "router", "lease": task["lease"], "ok": True, "result": 1}
        await self.agent.request(http(f"/v1/tasks/{task['id']}/result", done))
        return taken

    def close(self) -> None:
        self.agent.transport.close()  # type: ignore[attr-defined]
        self.admin.transport.close()  # type: ignore[attr-defined]


async def routing(daemon: Daemon, rounds: int) -> list[float]:
    router = await Router(daemon).open()
    samples = [await router.cycle() for _ in range(rounds)]
    router.close()
    return samples


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--rss-agents", type=int, default=10_000)
    parser.add_argument("--daemon-only", action="store_true", help="skip the echo floor (quick mode)")
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    if not args.daemon_only:
        rows += await floor_rows(args)
    rows += await daemon_rows(args)
    print("| measurement | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


def shown(rate: float, lat: list[float]) -> str:
    return f"{rate:,.0f}/s  p50 {pct(lat, 0.5):.2f} ms  p99 {pct(lat, 0.99):.2f} ms"


async def floor_rows(args: argparse.Namespace) -> list[tuple[str, str]]:
    """1. the floor: a bare asyncio echo server, the same client and load."""
    tmp = Path(tempfile.mkdtemp(prefix="cbe", dir="/tmp"))
    echo = subprocess.Popen(  # noqa: ASYNC220 - started once, before any measurement
        [sys.executable, "-c", ECHO_SERVER, str(tmp / "e.sock")], stdout=subprocess.PIPE
    )
    assert echo.stdout is not None and echo.stdout.readline().strip() == b"ready"
    floor = [(await connect(str(tmp / "e.sock")), http("/v1/agent/heartbeat", {"agent_id": "x"}))
             for _ in range(args.agents)]  # fmt: skip
    rate_f, lat_f = await closed_loop(floor, args.seconds)
    orate_f, olat_f = await open_loop(floor, args.seconds, args.rate)
    for client, _ in floor:
        client.transport.close()  # type: ignore[attr-defined]
    echo.terminate()
    echo.wait()
    echo.stdout.close()
    shutil.rmtree(tmp)
    return [
        (f"echo floor, closed loop, {args.agents} conns", shown(rate_f, lat_f)),
        (f"echo floor, open loop at {args.rate:,.0f}/s", shown(orate_f, olat_f)),
    ]


async def daemon_rows(args: argparse.Namespace) -> list[tuple[str, str]]:
    """2.-4. the daemon: heartbeat ingest, RSS, routing latency."""
    daemon = Daemon(100)
    try:
        await daemon.ready()
        clients = await register(daemon, args.agents)
        rate_d, lat_d = await closed_loop(clients, args.seconds)
        orate_d, olat_d = await open_loop(clients, args.seconds, args.rate)
        for client, _ in clients:
            client.transport.close()  # type: ignore[attr-defined]
        route = await routing(daemon, 200)
        await register(daemon, args.rss_agents, keep=False)  # a0.. again (renewals), then new ones
        await asyncio.sleep(1.5)  # let the heartbeat flush run
        rss = rss_mib(daemon.proc.pid)
    finally:
        daemon.close()

    return [
        (f"daemon heartbeats, closed loop, {args.agents} agents", shown(rate_d, lat_d)),
        (f"daemon heartbeats, open loop at {args.rate:,.0f}/s", shown(orate_d, olat_d)),
        (f"daemon RSS, {args.rss_agents:,} agents registered", f"{rss:.0f} MiB"),
        ("submit -> claimed, idle hive (200 tasks)", f"p50 {pct(route, 0.5):.2f} ms  p99 {pct(route, 0.99):.2f} ms"),
    ]


if __name__ == "__main__":
    asyncio.run(main())
