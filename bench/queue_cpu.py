"""CPU per task through the hive's store path: submit, claim, finish (the path of submit → claimed).

    .venv/bin/python bench/queue_cpu.py [--tasks 2000] [--batch 8] [--runs 7]

No daemon and no sockets: a ``HiveService`` on an SQLite file (WAL, as the daemon opens it) with
one active tenant and ``--batch`` agents; each round submits ``--batch`` tasks one by one (a
transaction each, as POST /v1/tasks), claims them in one ``claim_many`` (one database-thread
turn) and finishes them in one ``finish_many``.  CPU time (process_time, which SQLite's work in
this process counts in), so other work on the machine moves it far less than the socket
benchmark (bench/heartbeats.py); ``--runs`` runs, the median.  Run it on two commits with
``SAME_SCRIPT=1 bash bench/before_after.sh REV 2 bench/queue_cpu.py`` (issue 12: the audit's
cost on this path).
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from colibri.services.hive.rules import AgentRef, Policy, Scope  # noqa: E402
from colibri.services.hive.service import HiveService  # noqa: E402
from colibri.services.tenants import TenantService  # noqa: E402
from colibri.store.db import Store  # noqa: E402


def run(tasks: int, batch: int) -> float:
    """Microseconds of CPU per task (submit + claim + finish)."""
    folder = Path(tempfile.mkdtemp(prefix="colibri-queue-cpu-"))
    try:
        store = Store(f"sqlite:///{folder / 'hive.db'}")
        TenantService(store, "bench").register("acme", None, None)
        with store.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE tenants SET status = 'active'")
        policy = Policy(max_queued_tasks=tasks + batch, max_finished_tasks=10 * tasks)
        hive = HiveService(store, policy)
        scope = Scope("tenant", "acme")
        agents = [AgentRef(f"acme/a{n}", "acme", None, frozenset({"echo"})) for n in range(batch)]
        for n in range(batch):
            hive.register(scope, f"a{n}", [{"name": "echo", "version": "1"}], None)
        start = time.process_time()
        for _ in range(tasks // batch):
            for n in range(batch):
                hive.submit(scope, "echo", {"n": n})
            leases = hive.claim_many(agents)
            reports = [(scope, a.key, int(t["id"]), str(t["lease"]), True, {"ok": 1}, None, 0, None)
                       for a, t in zip(agents, leases, strict=True) if t is not None]  # fmt: skip
            hive.finish_many(reports)
        spent = time.process_time() - start
        store.close()
        return spent / (tasks // batch * batch) * 1e6
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    figures = [run(args.tasks, args.batch) for _ in range(args.runs)]
    print(f"| CPU per task (submit + claim + finish), batches of {args.batch} | "
          f"median {statistics.median(figures):.0f} µs (min {min(figures):.0f}, max {max(figures):.0f}) |")  # fmt: skip


if __name__ == "__main__":
    main()
