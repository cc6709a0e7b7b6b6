"""CLI startup benchmark (issue 2): colibri's cold start against bare-import floors.

    .venv/bin/python bench/cli_startup.py [--runs 15] [--tenants 10000]

Runs, in one go, each command as a fresh process (what an operator pays on every call):
1. ``colibri --help`` and ``colibri version`` against the floor ``python -c "import typer"``;
2. ``colibri list-tenants --json`` over N tenants (seeded straight into a temporary SQLite store
   through colibri's store) against the floor ``python -c "import sqlmodel, typer"``.
Each figure is the median of --runs runs; the command and its floor are run alternately so that
drift of the machine hits both alike.  One warm-up run of each is discarded (page cache).
Every colibri run uses a temporary state directory and config file (COLIBRI_STATE_DIR,
COLIBRI_CONFIG) and writes byte code under a temporary PYTHONPYCACHEPREFIX (never compiled from
source on a timed run, as in an installed colibri, whatever PYTHONDONTWRITEBYTECODE says), so
nothing on the machine is read or written.  Prints a Markdown table.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PYTHON = sys.executable
COLIBRI = str(Path(PYTHON).parent / "colibri")


def seed(url: str, count: int) -> None:
    """Insert ``count`` tenants in one transaction through the store (a migrated schema)."""
    from sqlalchemy import insert

    from colibri.store.db import Store
    from colibri.store.models import Tenant

    store = Store(url)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    statuses = ("registered", "active", "stopped", "failed")
    rows = [
        {
            "tenant_id": f"t{i:05d}x",  # fixed width + suffix: no id is a prefix of another
            "jail_name": f"t{i:05d}x",
            "collection_name": f"t{i:05d}x",
            "collection_id": None,
            "host": "bench-host",
            "status": statuses[i % len(statuses)],
            "created_at": base + timedelta(seconds=i),
            "updated_at": base + timedelta(seconds=i),
            "last_error": "spawn failed: bench" if i % 4 == 3 else None,
            "adopted": False,
            "capabilities": '[{"name": "echo", "version": "1"}]' if i % 2 else None,
        }
        for i in range(count)
    ]
    if rows:
        with store.session() as session:
            session.execute(insert(Tenant), rows)
    store.close()


def time_run(argv: list[str], env: dict[str, str]) -> tuple[float, float, bytes]:
    """Wall time and CPU time (user + system, from the child's rusage) of one run, and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu, proc.stdout


def compare(name: str, argv: list[str], floor: list[str], env: dict[str, str], runs: int) -> dict[str, Any]:
    """Medians of ``argv`` and of ``floor``, run alternately; returns one table row."""
    time_run(argv, env)
    time_run(floor, env)
    ours: list[tuple[float, float]] = []
    base: list[tuple[float, float]] = []
    for _ in range(runs):
        ours.append(time_run(argv, env)[:2])
        base.append(time_run(floor, env)[:2])
    wall, floor_wall = statistics.median(w for w, _ in ours), statistics.median(w for w, _ in base)
    cpu, floor_cpu = statistics.median(c for _, c in ours), statistics.median(c for _, c in base)
    return {
        "name": name,
        "wall": wall,
        "floor_wall": floor_wall,
        "ratio": wall / floor_wall,
        "cpu": cpu,
        "floor_cpu": floor_cpu,
        "cpu_ratio": cpu / floor_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--tenants", type=int, default=10_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="colibri-bench-") as tmp:
        state = Path(tmp) / "state"
        config = Path(tmp) / "colibri.toml"
        config.write_text("# empty: every setting from the environment or its default\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("COLIBRI_")}
        env |= {"COLIBRI_STATE_DIR": str(state), "COLIBRI_CONFIG": str(config), "COLIBRI_RUN_DIR": str(state / "run")}
        # byte code as an installed colibri has it (pip compiles on install): a PYTHONDONTWRITEBYTECODE
        # in the caller's environment would otherwise compile colibri's sources on every run; the
        # first (discarded) run writes every module's byte code, the floor's too, under the temp dir
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        url = f"sqlite:///{state / 'colibri.db'}"

        load_before = os.getloadavg()
        started = time.perf_counter()
        seed(url, args.tenants)
        seeded = time.perf_counter() - started
        _, _, out = time_run([COLIBRI, "list-tenants", "--json"], env)
        listed = json.loads(out)["data"]
        assert len(listed) == args.tenants, f"listed {len(listed)} tenants, seeded {args.tenants}"
        # the output is exactly what json.dumps(indent=2, sort_keys=True) writes
        assert out.decode() == json.dumps({"ok": True, "data": listed}, indent=2, sort_keys=True) + "\n"

        typer_floor = [PYTHON, "-c", "import typer"]
        store_floor = [PYTHON, "-c", "import sqlmodel, typer"]
        rows = [
            compare("`colibri --help`", [COLIBRI, "--help"], typer_floor, env, args.runs),
            compare("`colibri version`", [COLIBRI, "version"], typer_floor, env, args.runs),
            compare(
                f"`colibri list-tenants --json` ({args.tenants:,} tenants)",
                [COLIBRI, "list-tenants", "--json"],
                store_floor,
                env,
                args.runs,
            ),
        ]

    load = os.getloadavg()
    print(f"seeded {args.tenants:,} tenants in {seeded:.2f} s; {args.runs} runs each, medians;", end=" ")
    print(f"load average before/after: {load_before[0]:.2f} / {load[0]:.2f}\n")
    print("| command | floor | wall: colibri / floor | ratio | CPU: colibri / floor | ratio | target (wall) |")
    print("|---|---|---|---|---|---|---|")
    floors = ("`import typer`", "`import typer`", "`import sqlmodel, typer`")
    targets = (1.5, None, 1.5)
    for row, floor, target in zip(rows, floors, targets, strict=True):
        verdict = "—" if target is None else f"≤ {target}× {'met' if row['ratio'] <= target else 'MISSED'}"
        print(
            f"| {row['name']} | {floor} | {row['wall'] * 1000:.0f} / {row['floor_wall'] * 1000:.0f} ms "
            f"| **{row['ratio']:.2f}×** | {row['cpu'] * 1000:.0f} / {row['floor_cpu'] * 1000:.0f} ms "
            f"| {row['cpu_ratio']:.2f}× | {verdict} |"
        )


if __name__ == "__main__":
    main()
