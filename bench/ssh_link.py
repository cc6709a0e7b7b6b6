"""A remote control request over the kept SSH channel against a fresh exec per call (issue 11).

Builds the three-host rig (tests/rig: network namespaces, real sshd, the real remote colibri),
then on host a, in one run:

- ``kept``: ``HostLink.call("ping")`` on the kept ``remote serve`` channel (one round trip);
- ``exec``: a fresh exec per call on the same kept Transport (``SshHosts.run_json`` of a remote
  command that prints the same answer at once: the SSH channel's own cost, no Python start-up);
- ``exec colibri``: a fresh exec of the real remote ``colibri version --json`` (what a
  process-per-request design pays, Python start-up included);
- ``connect``: a new connection per call (TCP, key exchange, auth, exec);
- ``parallel``: 4 threads calling ``ping`` at once on a budget of 4 channels (calls/s).

Needs root, /usr/sbin/sshd, ip(8) and PostgreSQL's binaries (the rig's).  Tears the rig down.
Run: ``.venv/bin/python -m bench.ssh_link [--calls 500]``.
"""

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from colibri.adapters.ssh import SshHosts
from colibri.adapters.ssh_transport import SshTarget
from tests.rig import build, teardown, write_command


def _times(call: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1000)
    return out


def _row(name: str, ms: list[float]) -> str:
    ms = sorted(ms)
    p = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return f"| {name} | {len(ms)} | {statistics.median(ms):.2f} | {p(0.9):.2f} | {p(0.99):.2f} | {ms[-1]:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    rig = build()
    try:
        a = rig.hosts["a"]
        fast = write_command(a.root / "answer", """printf '{"ok": true, "data": {"pong": true}}\\n'""", a.invocations)
        target = SshTarget("rig-a", "root", a.address, 22, (a.host_key_line(),), str(a.command))
        quick = SshTarget("rig-a-exec", "root", a.address, 22, (a.host_key_line(),), str(fast))
        hosts = SshHosts(rig.client_key, connect_timeout=5, op_timeout=30, channels=4)
        link = hosts.link(target)
        for _ in range(20):  # warm: the transport, the channel, the remote serve's imports
            link.call("ping", {})
            hosts.run_json(quick, [])
        kept = _times(lambda: link.call("ping", {}), args.calls)
        fresh = _times(lambda: hosts.run_json(quick, []), max(50, args.calls // 5))
        real = _times(lambda: hosts.run_json(target, ["version", "--json"]), 20)

        def connect_once() -> None:
            once = SshHosts(rig.client_key, connect_timeout=5, op_timeout=30, channels=1)
            try:
                once.run_json(quick, [])
            finally:
                once.close()

        connect = _times(connect_once, 20)
        done = 0
        lock = threading.Lock()
        per_thread = args.calls // 2

        def worker() -> None:
            nonlocal done
            for _ in range(per_thread):
                link.call("ping", {})
            with lock:
                done += per_thread

        threads = [threading.Thread(target=worker) for _ in range(4)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        parallel = done / (time.perf_counter() - start)
        hosts.close()
    finally:
        teardown(rig)
    load = os.getloadavg()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")  # fmt: skip
    print()
    print("| request | calls | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|")
    print(_row("kept channel: `ping` op", kept))
    print(_row("fresh exec per call (same answer, kept transport)", fresh))
    print(_row("fresh exec of the remote `colibri version --json`", real))
    print(_row("new connection per call (connect, kex, auth, exec)", connect))
    print()
    ratio = statistics.median(fresh) / statistics.median(kept)
    print(f"kept channel p50 {statistics.median(kept):.2f} ms (target <= 10 ms); a fresh exec is {ratio:.1f}x that; "
          f"4 threads on 4 channels: {parallel:.0f} calls/s")  # fmt: skip


if __name__ == "__main__":
    main()
