"""Spawn benchmark (issue 3): colibri's own overhead in ``spawn-agent`` on the sandbox backend,
and 20 spawns with bounded parallelism against 20 serial spawns.

    .venv/bin/python bench/spawn.py [--runs 5] [--tenants 20] [--rounds 1]

Needs root, bubblewrap and Linux.  Runs, in one go, the real ``colibri`` CLI as subprocesses
against a temporary state directory, config file and run directory, with a stand-in mother skill
(``COLIBRI_SKILLS_DIR``, as tests/integration/test_spawn.py does) and tenants registered with
``--collection ''`` (no vault):

1. overhead: ``colibri spawn-agent T`` --runs times (the jail destroyed in between).  The CLI runs
   under a thin wrapper (this file with --child) that times every call colibri makes into the
   sandbox backend (create, start, exec, mount, info, ...; a call made inside another one is not
   counted twice).  Overhead = (wall time of the whole command, interpreter start included) minus
   the backend's time, divided by the wall time; the backend's operations are bubblewrap, nsenter,
   the jail's own /etc/rc and rc.d scripts, and file copies into the jail.
2. parallelism: ``colibri spawn-agent t01 ... tNN`` with ``COLIBRI_SPAWN_PARALLELISM=1`` (serial)
   and with the ``spawn_parallelism`` setting's default, alternately, --rounds times, each jail
   destroyed (``destroy-agent --yes``) after each run.
Every jail the benchmark made is destroyed at the end, even on failure.  Prints Markdown tables.
"""

import argparse
import contextlib
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

COLIBRI = str(Path(sys.executable).parent / "colibri")

STAND_IN = """\
import json, sys, time
identity = json.load(open(sys.argv[sys.argv.index("--identity") + 1]))
print("stand-in mother up for", identity["tenant"], flush=True)
print("ready: identity read and .env checked", flush=True)
while True:
    time.sleep(1)
"""

BACKEND_CALLS = (
    "create", "start", "stop", "restart", "destroy", "info", "list_jails", "exec",
    "copy_in", "mount", "root", "user_ids",
)  # fmt: skip


# ---- the child: colibri's CLI with the backend's calls timed --------------------------------------
def child(timings_path: str, argv: list[str]) -> int:
    """Run ``colibri argv`` in this process, timing the sandbox backend's calls, colibri's sleeps
    outside them, and the in-process part of the command; write the timings."""
    entered = time.perf_counter()
    # what spawn-agent imports lazily, imported here so that it is counted as imports
    import colibri.adapters.credentials
    import colibri.adapters.runner
    import colibri.services.lifecycle.pipeline
    import colibri.services.secrets
    import colibri.settings
    import colibri.store.db  # noqa: F401
    from colibri.adapters.sandbox.backend import Sandbox
    from colibri.cli.app import run

    totals: dict[str, list[float]] = {}
    local = threading.local()
    lock = threading.Lock()

    def timed(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(local, "depth", 0)
            local.depth = depth + 1
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                local.depth = depth
                if depth == 0:
                    with lock:
                        totals.setdefault(name, []).append(time.perf_counter() - start)

        return wrapper

    for name in BACKEND_CALLS:
        setattr(Sandbox, name, timed(name, getattr(Sandbox, name)))
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        if getattr(local, "depth", 0) == 0:  # a wait of colibri's own, not inside a backend call
            with lock:
                totals.setdefault("_sleep", []).append(seconds)
        real_sleep(seconds)

    time.sleep = sleep
    started = time.perf_counter()
    try:
        return run(argv)
    finally:
        totals["_imports"] = [started - entered]
        totals["_run"] = [time.perf_counter() - started]
        Path(timings_path).write_text(json.dumps(totals))


# ---- the parent -------------------------------------------------------------------------------------
class Bench:
    def __init__(self, tmp: Path) -> None:
        skills = tmp / "skills"
        (skills / "mother/handlers").mkdir(parents=True)
        (skills / "mother/mother.py").write_text(STAND_IN)
        config = tmp / "colibri.toml"
        config.write_text("# empty: every setting from the environment or its default\n")
        self.tmp = tmp
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("COLIBRI_", "BW_"))}
        self.env |= {
            "COLIBRI_CONFIG": str(config),
            "COLIBRI_STATE_DIR": str(tmp / "state"),
            "COLIBRI_RUN_DIR": str(tmp / "run"),
            "COLIBRI_LOG_DIR": str(tmp / "log"),
            "COLIBRI_VAULT_CREDENTIALS_DIR": str(tmp / "credentials"),
            "COLIBRI_JAIL_BACKEND": "sandbox",
            "COLIBRI_SKILLS_DIR": str(skills),
            "COLIBRI_HOST": "bench",
        }
        self.spawned: set[str] = set()

    def colibri(self, *args: str, env: dict[str, str] | None = None) -> str:
        proc = subprocess.run([COLIBRI, *args], env=env or self.env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"colibri {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        return proc.stdout

    def setting(self, name: str) -> Any:
        return json.loads(self.colibri("config", "show", "--json"))["data"][name]["value"]

    def register(self, tenants: list[str]) -> None:
        for tenant in tenants:
            self.colibri("register-tenant", tenant, "--collection", "")

    def destroy(self, tenants: list[str]) -> None:
        for tenant in tenants:
            self.colibri("destroy-agent", tenant, "--yes")
            self.spawned.discard(tenant)

    def spawn_timed(self, tenant: str) -> tuple[float, dict[str, list[float]]]:
        """One ``spawn-agent`` under the timing wrapper: wall time, and the backend's calls."""
        timings = self.tmp / "timings.json"
        argv = [sys.executable, __file__, "--child", str(timings), "spawn-agent", tenant]
        self.spawned.add(tenant)
        start = time.perf_counter()
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"spawn-agent {tenant} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        return wall, json.loads(timings.read_text())

    def spawn_many(self, tenants: list[str], parallelism: int | None) -> float:
        env = dict(self.env)
        if parallelism is not None:
            env["COLIBRI_SPAWN_PARALLELISM"] = str(parallelism)
        self.spawned.update(tenants)
        start = time.perf_counter()
        out = self.colibri("spawn-agent", *tenants, env=env)
        elapsed = time.perf_counter() - start
        assert out.splitlines()[-1] == "active: " + " ".join(tenants), out[-300:]
        return elapsed

    @contextlib.contextmanager
    def cleanup(self) -> Iterator[None]:
        try:
            yield
        finally:
            for tenant in sorted(self.spawned):
                subprocess.run([COLIBRI, "destroy-agent", tenant, "--yes"], env=self.env, capture_output=True)
            left = self.colibri("reconcile", "--json")
            if json.loads(left)["data"]:
                print(f"WARNING: jails left behind: {left}", file=sys.stderr)


def overhead(bench: Bench, runs: int) -> None:
    bench.register(["solo"])
    rows = []
    for _ in range(runs):
        wall, calls = bench.spawn_timed("solo")
        extra = {name: sum(calls.pop(name, [0.0])) for name in ("_sleep", "_imports", "_run")}
        backend = sum(sum(times) for times in calls.values())
        rows.append({"wall": wall, "backend": backend, "calls": calls, **extra})
        bench.destroy(["solo"])

    def median(key: str) -> float:
        return statistics.median(row[key] for row in rows)

    wall, backend, run = median("wall"), median("backend"), median("_run")
    share = statistics.median((r["wall"] - r["backend"]) / r["wall"] for r in rows)
    in_process = statistics.median((r["_run"] - r["backend"]) / r["_run"] for r in rows)
    without_settle = statistics.median((r["_run"] - r["backend"] - r["_sleep"]) / r["_run"] for r in rows)
    print(f"### spawn-agent overhead ({runs} runs, medians, ms)\n")
    print("| wall | backend's operations | colibri's own | of which: interpreter + imports | sleeping | the rest |"
          " overhead (of wall) | without start + imports | without those and the sleeps | target |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {wall * 1000:.0f} | {backend * 1000:.0f} | {(wall - backend) * 1000:.0f} "
          f"| {(wall - run) * 1000:.0f} | {median('_sleep') * 1000:.0f} "
          f"| {(run - backend - median('_sleep')) * 1000:.0f} | **{share:.1%}** | {in_process:.1%} "
          f"| {without_settle:.1%} | ≤ 10% {'met' if share <= 0.10 else 'MISSED'} |")  # fmt: skip
    calls = sorted(rows, key=lambda r: r["wall"])[len(rows) // 2]["calls"]
    print("\nbackend calls in the median run:", end=" ")
    print(", ".join(f"{name} {len(t)}x {sum(t) * 1000:.0f} ms" for name, t in sorted(calls.items())))
    print()


def parallelism(bench: Bench, count: int, rounds: int) -> None:
    tenants = [f"t{i:02d}" for i in range(1, count + 1)]
    bench.register(tenants)
    setting = int(bench.setting("spawn_parallelism"))
    serial: list[float] = []
    parallel: list[float] = []
    for _ in range(rounds):
        serial.append(bench.spawn_many(tenants, 1))
        bench.destroy(tenants)
        parallel.append(bench.spawn_many(tenants, None))
        bench.destroy(tenants)
    s, p = statistics.median(serial), statistics.median(parallel)
    print(f"### {count} spawns in one spawn-agent ({rounds} round(s), medians)\n")
    print(f"| serial (parallelism 1) | bounded parallelism (setting: {setting}) | ratio | target |")
    print("|---|---|---|---|")
    print(f"| {s:.2f} s | {p:.2f} s | {p / s:.2f}× | ≤ 0.5× {'met' if p / s <= 0.5 else 'MISSED'} |\n")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[2], sys.argv[3:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed single spawns (overhead)")
    parser.add_argument("--tenants", type=int, default=20, help="spawns in the parallelism comparison")
    parser.add_argument("--rounds", type=int, default=1, help="serial/parallel pairs")
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("bwrap") is None:
        raise SystemExit("bench/spawn.py needs root and bubblewrap (apt-get install bubblewrap)")
    with tempfile.TemporaryDirectory(prefix="colibri-bench-") as tmp:
        bench = Bench(Path(tmp))
        with bench.cleanup():
            print(f"load average at start: {os.getloadavg()[0]:.2f}\n")
            overhead(bench, args.runs)
            parallelism(bench, args.tenants, args.rounds)
            print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
