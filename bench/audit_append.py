"""Issue 12: audit appends on SQLite, each in its own transaction as the services commit them.

Three loops of --count transactions on one colibri store (WAL, synchronous=NORMAL, the WAL
checkpointed from a thread as the daemon opens it; ``--commit-checkpoints``: in the commit, as a
command does), in one run, in turn for --rounds: the floor (one plain INSERT into a one-column table per
transaction, the same session machinery), ``AuditRepo.append`` (the head row read and updated,
the canonical body, the leaf hash, the entry row), and ``append`` with this host's checkpoint signed
every 256 entries as the daemon does under load (key, memory and note included).  Prints Markdown
for docs/PERFORMANCE.md.

    .venv/bin/python bench/audit_append.py [--count 20000] [--rounds 3]      (as root: the signing key)
"""

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from colibri.adapters.audit_keys import KeyDir
from colibri.audit import origin
from colibri.audit.entry import Event
from colibri.services.audit.signer import AuditSigner
from colibri.store.audit import AuditRepo
from colibri.store.db import Store

Rate = tuple[float, float]
"""(transactions per second of wall time, CPU microseconds per transaction)."""


def _rate(count: int, wall: float, cpu: float) -> Rate:
    return count / wall, cpu / count * 1e6


def floor(store: Store, count: int) -> Rate:
    begin, cpu = time.perf_counter(), time.process_time()
    for n in range(count):
        with store.session() as session:
            session.connection().execute(text("INSERT INTO bench_floor (n) VALUES (:n)"), {"n": n})
    return _rate(count, time.perf_counter() - begin, time.process_time() - cpu)


def appends(store: Store, count: int, signer: AuditSigner | None, start: int) -> Rate:
    begin, cpu = time.perf_counter(), time.process_time()
    for n in range(start, start + count):
        with store.session() as session:
            AuditRepo(session).append(
                Event(
                    "task.complete",
                    f"task:{n}",
                    tenant="acme",
                    detail={"agent": "a1", "capability": "code", "attempt": 1},
                )
            )
        if signer is not None and n % 256 == 255:
            signer.checkpoint()
    return _rate(count, time.perf_counter() - begin, time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--commit-checkpoints", action="store_true",
                        help="SQLite's checkpoint in the commit (a command), not the daemon's thread")  # fmt: skip
    args = parser.parse_args()
    results: dict[str, list[Rate]] = {"floor": [], "append": [], "signed": []}
    with tempfile.TemporaryDirectory(prefix="colibri-bench-") as tmp:
        # as the daemon opens it: the WAL checkpointed from a thread (store/walcheckpoint.py)
        store = Store(f"sqlite:///{Path(tmp) / 'colibri.db'}", wal_checkpoints=None if args.commit_checkpoints else 1.0)
        with store.session() as session:
            session.connection().execute(text("CREATE TABLE bench_floor (n INTEGER)"))
        keys = KeyDir(Path(tmp) / "audit", "osa")
        signer = AuditSigner(store, keys, "osa")
        done = 0
        with origin.acting("agent:acme/a1", host="osa", vouch=keys.entry_key):  # each entry with its MAC
            for _ in range(args.rounds):
                results["floor"].append(floor(store, args.count))
                results["append"].append(appends(store, args.count, None, done))
                done += args.count
                results["signed"].append(appends(store, args.count, signer, done))
                done += args.count
        store.close()
    load = os.getloadavg()
    print("### Audit appends on SQLite, one transaction each (`bench/audit_append.py`)\n")
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end; "
        f"{args.count:,} transactions per loop, {args.rounds} rounds; WAL checkpoints "
        f"{'in the commit (a command)' if args.commit_checkpoints else 'on a thread (the daemon)'}.\n"
    )
    print("| loop | best (per s) | all rounds (per s) | CPU per transaction, best (µs) |")
    print("|---|---|---|---|")
    names = {
        "floor": "floor: one plain INSERT per transaction",
        "append": "`AuditRepo.append` per transaction",
        "signed": "`append`, a checkpoint signed every 256",
    }
    for key, label in names.items():
        rates = [rate for rate, _ in results[key]]
        cpu = min(us for _, us in results[key])
        print(f"| {label} | **{max(rates):,.0f}** | {', '.join(f'{r:,.0f}' for r in rates)} | {cpu:,.0f} |")
    best = {key: max(rate for rate, _ in found) for key, found in results.items()}
    cpu = {key: min(us for _, us in found) for key, found in results.items()}
    print(
        f"\nappend / floor (best): {best['append'] / best['floor']:.2f}; with signing: "
        f"{best['signed'] / best['floor']:.2f}. CPU the audit adds to a transaction: "
        f"{cpu['append'] - cpu['floor']:.0f} µs "
        f"({cpu['signed'] - cpu['floor']:.0f} µs with signing); appends a CPU second holds, signing included: "
        f"{1e6 / cpu['signed']:,.0f}. Target >= 5,000/s with signing: {'met' if best['signed'] >= 5000 else 'MISSED'} "
        "(wall time)."
    )


if __name__ == "__main__":
    main()
