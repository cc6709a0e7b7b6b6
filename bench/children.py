"""Children benchmark (issue 14): the daemon answers while children spawn.

    .venv/bin/python bench/children.py [--children 4] [--beats 400]

Needs root, bubblewrap and Linux.  One real daemon (tests/integration/hive_harness.py, sandbox
backend, the real mother skill), a parent tenant with a policy that allows ``--children``
children, and another tenant whose agent only heartbeats (this process, on its socket).  In one
run, one phase after the other (the machine's other load is not controlled: read the ratio):

1. idle: heartbeat round trips (one ``POST /v1/agent/heartbeat`` each) with no spawn running;
2. spawning: the same while ``--children`` children spawn (asked for at once on the parent's
   socket: each answer's time is the request-to-202 time, the decision and the child's row
   included; then jails, ``.env``, mothers, run by ``colibri spawn-child`` outside the daemon).

Prints a Markdown table: p50/p99/max of each phase's heartbeat round trip, the 202 answers' times,
and how long until every child was active.  Everything is destroyed at the end.
"""

import argparse
import json
import os
import sqlite3
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from colibri.services.policy.admin import PolicyAdmin, PolicyChange  # noqa: E402
from colibri.store.db import Store  # noqa: E402
from tests.integration.as_host import as_host  # noqa: E402
from tests.integration.hive_harness import Hive, Raw, wait_until  # noqa: E402


def quantiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return statistics.median(ordered) * 1000, p99 * 1000, ordered[-1] * 1000


def beats(raw: Raw, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        status, _ = raw("POST", "/v1/agent/heartbeat", {"agent_id": "calm-1"})
        times.append(time.perf_counter() - start)
        assert status == 200, status
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--children", type=int, default=4)
    parser.add_argument("--beats", type=int, default=400)
    args = parser.parse_args()
    hive = Hive({"COLIBRI_JAIL_BACKEND": "sandbox", "COLIBRI_DAEMON_SOCKET_REQUEST_RATE": "0"})  # 0: no cap
    try:
        hive.start()
        for name in ("queen", "calm"):
            hive.tenant(name)
        with sqlite3.connect(hive.db_path) as conn:
            conn.execute("UPDATE tenants SET capabilities = ? WHERE tenant_id = 'queen'",
                         ('[{"name": "echo", "version": "1"}]',))  # fmt: skip
        conn.close()
        staged = hive.root / "db" / "staged" / "queen"  # the children's secrets (no vault here)
        staged.mkdir(parents=True, mode=0o700)
        staged.parent.chmod(0o700)
        (staged / "provider.env").write_text("PROVIDER_KEY=not-a-real-key\n")
        (staged / "provider.env").chmod(0o600)
        store = Store(f"sqlite:///{hive.db_path}")
        with as_host(hive.root / "db"):
            change = PolicyChange(allowed=True, max_children=args.children, rate="1000/h", capabilities="echo")
            PolicyAdmin(store).set("queen", change)
        store.close()
        wait_until(lambda: hive.socket("queen").is_socket() and hive.socket("calm").is_socket())
        calm = Raw(hive.socket("calm"))
        assert calm("POST", "/v1/agent/register", {"agent_id": "calm-1", "capabilities": []})[0] == 200
        idle = beats(calm, args.beats)
        asked, children = [], []
        queen = Raw(hive.socket("queen"))
        began = time.perf_counter()
        for _ in range(args.children):
            start = time.perf_counter()
            status, answer = queen("POST", "/v1/children", {"agent_id": "queen-1"})
            asked.append(time.perf_counter() - start)
            assert status == 202, answer
            children.append(answer["child"])
        during: list[float] = []

        def states() -> list[str]:
            found = []
            for child in children:
                status, view = queen("GET", f"/v1/children/{child}")
                found.append(view["status"] if status == 200 else "?")
            return found

        while any(s not in ("active", "removed") for s in states()):
            during += beats(calm, 50)
        spawned = time.perf_counter() - began
        assert all(s == "active" for s in states()), states()
        rows = [("idle", quantiles(idle), len(idle)), ("while spawning", quantiles(during), len(during))]
        print("| heartbeat round trip | beats | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|")
        for name, (p50, p99, most), count in rows:
            print(f"| {name} | {count} | {p50:.2f} | {p99:.2f} | {most:.2f} |")
        p50, p99, most = quantiles(asked)
        print(f"\nPOST /v1/children → 202: {len(asked)} requests, median {p50:.2f} ms, max {most:.2f} ms; "
              f"all {len(children)} children active after {spawned:.1f} s")  # fmt: skip
        print(json.dumps({"cpus": os.cpu_count()}))
        calm.close()
        queen.close()
    finally:
        hive.colibri("remove-tenant", "queen", "--cascade", "--destroy-jail", "--yes", check=False)
        hive.close()


if __name__ == "__main__":
    main()
