"""Issue 12: heartbeat ingest and submit -> claimed through a real daemon, the audit on and off, in one run.

The daemon of bench/heartbeats.py (100 tenants on an SQLite store, real Unix sockets), started
--rounds times each way, alternating (on, off, off, on, ...), so both sides share the machine's
state.  "Off" is bench-only: the daemon's interpreter loads a ``sitecustomize`` from a temporary
directory of this run that makes ``AuditRepo.append_many`` write nothing (no product setting can
turn the audit off).  Per daemon: heartbeats in a closed loop (--agents agents) and an open loop
(--rate), then --tasks idle submit -> claimed cycles (the admin submits, one agent long-polls,
then reports its result: three appends with the audit on).  Besides wall-clock figures, the
daemon's own CPU time (utime + stime from /proc) per heartbeat and per task cycle: on this shared
machine it moves far less with the load than rates and latencies do.

Then --pairs pairs of daemons, one each way, alive at once: --paired submit -> claimed cycles on
each, alternating between the two, so the two sides share the machine's moment.  A pair's ratio
moves with the pair (two fresh processes: 1.03 and 1.11 in one session, same tree), so the figure
is the median of the pairs' p50 ratios, beside the p50 ratio over every cycle.

    .venv/bin/python bench/audit_hot_paths.py [--rounds 2] [--agents 500] [--seconds 3] [--tasks 200]
                                             [--pairs 8] [--paired 400]
"""

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import heartbeats as hb

OFF = """
import colibri.store.audit as _audit

def _nothing(self, events):  # bench/audit_hot_paths.py: the audit off, for the comparison only
    return [0] * len(events)

_audit.AuditRepo.append_many = _nothing
"""
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def started(audit: bool, off_dir: str) -> hb.Daemon:
    saved = os.environ.get("PYTHONPATH")
    if not audit:
        os.environ["PYTHONPATH"] = off_dir + (os.pathsep + saved if saved else "")
    try:
        return hb.Daemon(100)  # its environment is taken from ours now
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


async def paired(args: argparse.Namespace, off_dir: str) -> tuple[list[float], list[float]]:
    """Submit -> claimed on two daemons alive at once, one with the audit and one without, the
    cycles alternating (on, off, off, on, ...): each pair of samples shares the machine's moment,
    which a daemon after a daemon does not."""
    on, off = started(True, off_dir), started(False, off_dir)
    try:
        await on.ready()
        await off.ready()
        routers = {True: await hb.Router(on).open(), False: await hb.Router(off).open()}
        samples: dict[bool, list[float]] = {True: [], False: []}
        for flag in (True, False) * 20:  # warm both (first claims, caches, the first checkpoint's key)
            await routers[flag].cycle()
        for n in range(args.paired):
            for flag in (True, False) if n % 2 == 0 else (False, True):
                samples[flag].append(await routers[flag].cycle())
        for router in routers.values():
            router.close()
    finally:
        on.close()
        off.close()
    return samples[True], samples[False]


async def one(audit: bool, args: argparse.Namespace, off_dir: str) -> dict[str, float]:
    daemon = started(audit, off_dir)
    try:
        await daemon.ready()
        clients = await hb.register(daemon, args.agents)
        cpu = cpu_seconds(daemon.proc.pid)
        rate, _ = await hb.closed_loop(clients, args.seconds)
        beats = rate * args.seconds
        cpu_beat = (cpu_seconds(daemon.proc.pid) - cpu) / beats
        orate, olat = await hb.open_loop(clients, args.seconds, args.rate)
        for client, _ in clients:
            client.transport.close()  # type: ignore[attr-defined]
        cpu = cpu_seconds(daemon.proc.pid)
        route = await hb.routing(daemon, args.tasks)
        cpu_task = (cpu_seconds(daemon.proc.pid) - cpu) / args.tasks
        entries = _entries(daemon)
    finally:
        daemon.close()
    return {
        "closed": rate,
        "cpu_beat_us": cpu_beat * 1e6,
        "open": orate,
        "open_p99": hb.pct(olat, 0.99),
        "route_p50": hb.pct(route, 0.5),
        "route_p99": hb.pct(route, 0.99),
        "cpu_task_us": cpu_task * 1e6,
        "entries": entries,
    }


def _entries(daemon: hb.Daemon) -> float:
    import sqlite3

    with sqlite3.connect(daemon.root / "db" / "colibri.db") as conn:
        (count,) = conn.execute("SELECT count(*) FROM audit_entries").fetchone()
    conn.close()
    return float(count)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--paired", type=int, default=400, help="submit -> claimed cycles per side, paired")
    parser.add_argument("--pairs", type=int, default=8, help="fresh pairs of daemons for the paired cycles")
    args = parser.parse_args()
    start_load = os.getloadavg()
    results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="colibri-bench-off-") as off_dir:
        (Path(off_dir) / "sitecustomize.py").write_text(OFF)
        order = [flag for n in range(args.rounds) for flag in ((True, False) if n % 2 == 0 else (False, True))]
        for audit in order:
            results[audit].append(await one(audit, args, off_dir))
        pairs = [await paired(args, off_dir) for _ in range(args.pairs)] if args.paired else []
    end_load = os.getloadavg()
    print("### The audit on the daemon's hot paths, on and off (`bench/audit_hot_paths.py`)\n")
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; load average "
        f"{start_load[0]:.1f} at start, {end_load[0]:.1f} at end; {args.rounds} daemons each way, alternating; "
        f"{args.agents} agents, {args.seconds:.0f} s phases, {args.tasks} task cycles.\n"
    )
    rows = [
        ("heartbeats, closed loop (per s)", "closed", "{:,.0f}", max),
        ("daemon CPU per heartbeat (µs)", "cpu_beat_us", "{:.0f}", min),
        (f"heartbeats, open loop at {args.rate:,.0f}/s (per s)", "open", "{:,.0f}", max),
        ("open loop p99 (ms)", "open_p99", "{:.1f}", min),
        ("submit -> claimed p50 (ms)", "route_p50", "{:.2f}", min),
        ("submit -> claimed p99 (ms)", "route_p99", "{:.2f}", min),
        ("daemon CPU per task: submit, claim, result (µs)", "cpu_task_us", "{:.0f}", min),
        ("audit entries written", "entries", "{:,.0f}", max),
    ]
    print("| | audit on: best (all) | audit off: best (all) | on / off (best) |")
    print("|---|---|---|---|")
    for label, key, form, pick in rows:
        on = [r[key] for r in results[True]]
        off = [r[key] for r in results[False]]
        ratio = pick(on) / pick(off) if pick(off) else float("nan")
        print(
            f"| {label} | {form.format(pick(on))} ({', '.join(form.format(v) for v in on)}) | "
            f"{form.format(pick(off))} ({', '.join(form.format(v) for v in off)}) | {ratio:.3f} |"
        )
    if pairs:
        print(
            f"\nSubmit -> claimed, paired: both daemons alive at once, {args.paired} cycles each, alternating, "
            f"{len(pairs)} runs (a fresh pair of daemons each):\n"
        )
        print("| run | on p50 (ms) | off p50 (ms) | p50 on / off | on p99 (ms) | off p99 (ms) | p99 on / off |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for n, (on, off) in enumerate(pairs, 1):
            p50 = hb.pct(on, 0.5), hb.pct(off, 0.5)
            p99 = hb.pct(on, 0.99), hb.pct(off, 0.99)
            print(
                f"| {n} | {p50[0]:.2f} | {p50[1]:.2f} | {p50[0] / p50[1]:.3f} | "
                f"{p99[0]:.2f} | {p99[1]:.2f} | {p99[0] / p99[1]:.3f} |"
            )
        ratios = [hb.pct(on, 0.5) / hb.pct(off, 0.5) for on, off in pairs]
        every_on = [x for on, _ in pairs for x in on]
        every_off = [x for _, off in pairs for x in off]
        print(
            f"| all | {hb.pct(every_on, 0.5):.2f} | {hb.pct(every_off, 0.5):.2f} | "
            f"{hb.pct(every_on, 0.5) / hb.pct(every_off, 0.5):.3f} | {hb.pct(every_on, 0.99):.2f} | "
            f"{hb.pct(every_off, 0.99):.2f} | {hb.pct(every_on, 0.99) / hb.pct(every_off, 0.99):.3f} |"
        )
        print(
            f"\n**p50 on / off, median of the {len(pairs)} pairs: {statistics.median(ratios):.3f}** "
            f"(pairs {min(ratios):.3f} to {max(ratios):.3f})."
        )
    on_cpu = statistics.median(r["cpu_task_us"] for r in results[True])
    off_cpu = statistics.median(r["cpu_task_us"] for r in results[False])
    print(f"\nMedian daemon CPU per task cycle: on {on_cpu:.0f} µs, off {off_cpu:.0f} µs ({on_cpu / off_cpu:.3f}).")


if __name__ == "__main__":
    asyncio.run(main())
