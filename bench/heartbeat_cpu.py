"""CPU per heartbeat in the daemon's own code: parse, limits, route, registry, answer.

    .venv/bin/python bench/heartbeat_cpu.py

No sockets and no client: one HttpProtocol of a real ``Daemon`` (2,000 agents in 100 tenants in
its registry, the tenant socket's gate with its rate limit on) fed pipelined heartbeats through a
transport that only counts its writes.  CPU time (process_time), so other work on the machine
moves it far less than the socket benchmark (bench/heartbeats.py); seven runs, the median.
"""

import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from colibri.daemon.http import HttpProtocol  # noqa: E402
from colibri.daemon.server import Daemon  # noqa: E402
from colibri.services.hive.rules import Scope  # noqa: E402
from colibri.settings import Settings  # noqa: E402


class CountingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: Any) -> None:
        self.writes += 1

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="cbc", dir="/tmp"))
    daemon = Daemon(Settings(state_dir=root, run_dir=root / "run"))
    for n in range(100):
        for a in range(20):
            record = {"key": f"t{n}/a{a}", "tenant": f"t{n}", "lane": None, "capabilities": [], "state": "active"}
            daemon.registry.upsert(record)
    gate = daemon._gate("tenant:t1")
    gate.rate = gate.burst = 1e12  # on (its arithmetic runs per request) but never reached
    protocol = HttpProtocol(daemon.api.handler(Scope("tenant", "t1")), gate)
    transport = CountingTransport()
    protocol.connection_made(transport)
    body = json.dumps({"agent_id": "a1"}).encode()
    request = (
        b"POST /v1/agent/heartbeat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    runs = []
    for _ in range(7):
        count = 50_000
        start = time.process_time()
        for _ in range(count):
            protocol.data_received(request)
        runs.append((time.process_time() - start) / count * 1e6)
    assert transport.writes == 7 * 50_000
    daemon._pool.shutdown()
    daemon._side.shutdown()
    shutil.rmtree(root, ignore_errors=True)
    print(f"CPU per heartbeat: median {statistics.median(runs):.2f} us (runs {', '.join(f'{r:.2f}' for r in runs)})")


if __name__ == "__main__":
    main()
