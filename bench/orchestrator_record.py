"""The orchestrator's record (colibri/store/orchestrator.py, review R1): what one change (a
tenant placed on a host: lock, read, write a temporary file, fsync, rename, fsync the directory)
and one read cost as the record grows, against a floor that writes the same bytes the same safe
way without colibri (json.dumps, write, fsync, rename, fsync).  Every register-tenant --host and
move-tenant makes one change; every command that crosses to a host makes reads (cached by the
file's identity, one stat each).

    .venv/bin/python bench/orchestrator_record.py [--changes 50] [--sizes 100,1000,10000]

Prints Markdown for docs/PERFORMANCE.md.  Temporary directory only.
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from colibri.store.orchestrator import OrchestratorRecord, Pin

PIN = Pin(
    "colibri",
    "192.0.2.10",
    22,
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ4jS2T5Jm3cD3XqoP2i8VnR8nJb3TPO6lS0bYl5Y7+y",),
    "colibri",
)


def _floor(path: Path, document: dict[str, object]) -> float:
    start = time.perf_counter()
    data = (json.dumps(document, indent=1) + "\n").encode()
    temporary = path.with_name(".floor.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(directory)
    os.close(directory)
    return time.perf_counter() - start


def run(size: int, changes: int) -> tuple[float, float, float, float]:
    with tempfile.TemporaryDirectory() as folder:
        record = OrchestratorRecord(Path(folder), "orchestrator")
        with record.change() as draft:
            draft.hosts["osa"] = PIN
            for n in range(size):
                draft.place(f"t{n}", "osa")
        changed, floors = [], []
        for n in range(changes):
            start = time.perf_counter()
            with record.change() as draft:
                draft.place(f"new{n}", "osa")
            changed.append(time.perf_counter() - start)
            floors.append(_floor(Path(folder) / "floor.json", draft.document()))
        cold = []
        for _ in range(changes):
            fresh = OrchestratorRecord(Path(folder), "orchestrator")
            start = time.perf_counter()
            fresh.host_of("t0")
            cold.append(time.perf_counter() - start)
        start = time.perf_counter()
        for n in range(size):
            record.host_of(f"t{n}")
        warm = (time.perf_counter() - start) / size
    return statistics.median(changed), statistics.median(floors), statistics.median(cold), warm


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--sizes", default="100,1000,10000")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores\n")
    print(
        "| tenants in the record | one change (median) | floor: same bytes, same fsyncs | ratio "
        "| first read | cached read (per tenant) |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        change, floor, cold, warm = run(size, args.changes)
        print(
            f"| {size:,} | {change * 1000:.2f} ms | {floor * 1000:.2f} ms | {change / floor:.2f} | "
            f"{cold * 1000:.2f} ms | {warm * 1e6:.1f} us |"
        )


if __name__ == "__main__":
    main()
