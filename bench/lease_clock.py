"""Issue 11, review R3: what the database's clock (colibri/store/clock.py) costs.

    .venv/bin/python bench/lease_clock.py [--calls 200000] [--syncs 500]

Every lease is written and judged on the database server's clock.  A reading of this clock
between syncs (a claim's lease end, the claim gate's trust check) is a lock and the monotonic
clock; a sync (the lease loops, at most about once a second a daemon) is one SELECT.  Measured
here on a private PostgreSQL server (tests/servers/postgres.py) and on SQLite, one process.
Prints Markdown for docs/PERFORMANCE.md.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from colibri.store.clock import DatabaseClock  # noqa: E402
from colibri.store.db import Store  # noqa: E402
from tests.servers import postgres  # noqa: E402


def measure(url: str, calls: int, syncs: int) -> tuple[float, float, float]:
    """(ns a reading, sync p50 ms, sync p99 ms)."""
    store = Store(url)
    try:
        clock = store.clock
        assert isinstance(clock, DatabaseClock) and clock.sync()
        start = time.perf_counter()
        for _ in range(calls):
            clock()
        reading = (time.perf_counter() - start) / calls * 1e9
        times = []
        for _ in range(syncs):
            start = time.perf_counter()
            assert clock.sync()
            times.append((time.perf_counter() - start) * 1e3)
        times.sort()
        return reading, times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--syncs", type=int, default=500)
    args = parser.parse_args()
    bindir = postgres._pg_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries not found (Debian package postgresql)")
    root = Path(tempfile.mkdtemp(prefix="cblc"))
    server = postgres.PostgresServer(bindir, root)
    server.start()
    try:
        rows = [("PostgreSQL", measure(server.create_database(), args.calls, args.syncs)),
                ("SQLite", measure(f"sqlite:///{root / 'colibri.db'}", args.calls, args.syncs))]  # fmt: skip
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average: {os.getloadavg()[0]:.2f}\n")
    print("| store | a reading (between syncs) | a sync (one SELECT), p50 / p99 |")
    print("|---|---|---|")
    for name, (reading, p50, p99) in rows:
        print(f"| {name} | {reading:.0f} ns | {p50:.3f} / {p99:.3f} ms |")


if __name__ == "__main__":
    main()
