"""Benchmark: one vault snapshot (a tenant's provisioning: status, unlock, sync, two lists, lock)
with bw's read-only calls ended at their whole JSON answer, against the same calls run to bw's
own exit (bw 2026.9.0 idles ~2 s on timers after it answers).

Runs the REAL bw CLI (tests/tools, pinned) against the Vaultwarden-compatible test server on
loopback with colibri's own Bitwarden adapter; the two ways alternate, round after round, so both
see the same machine load.  Usage:
    .venv/bin/python -m bench.bw_answers [--rounds 5] [--json out.json]
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

from pydantic import SecretStr

from colibri.adapters.bitwarden import Bitwarden, BwConfig
from colibri.adapters.credentials import OperatorCredentials
from colibri.adapters.runner import CommandResult, ShRunner
from tests.servers.vaultwarden import start
from tests.servers.vaultwarden.bwcli import find_bw

PASSWORD = "bench master password"


class TimedRunner:
    """ShRunner that times each bw call by its name and, unless ``end_reads``, never ends one."""

    def __init__(self, end_reads: bool) -> None:
        self._runner = ShRunner({"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, max_output=64 << 20)
        self.end_reads = end_reads
        self.seconds: dict[str, list[float]] = {}

    def __call__(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 120.0,
        ok_codes: Collection[int] = (0,),
        secret_output: bool = False,
        complete: Callable[[bytearray], bool] | None = None,
    ) -> CommandResult:
        started = time.monotonic()
        result = self._runner(
            argv,
            stdin=stdin,
            env=env,
            timeout=timeout,
            ok_codes=ok_codes,
            secret_output=secret_output,
            complete=complete if self.end_reads else None,
        )
        name = " ".join(argv[1:3]) if argv[1] == "list" else argv[1]
        self.seconds.setdefault(name, []).append(time.monotonic() - started)
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    bw_bin = find_bw()
    if bw_bin is None:
        print("bw is not installed: bash tests/setup.sh", file=sys.stderr)
        return 2
    server = start()
    base = Path(tempfile.mkdtemp(prefix="colibri-bench-"))
    try:
        operator = server.vault.add_user("bench@example.org", PASSWORD)
        org = server.vault.add_org("Bench", owner=operator)
        for name in ("acme", "beta"):
            col = server.vault.add_collection(org, name)
            server.vault.add_item(col, "env", fields={"API_KEY": f"sk-{name}", "REGION": "eu"}, notes="MODEL=x\n")
        creds = OperatorCredentials(
            SecretStr(operator.client_id), SecretStr(operator.client_secret), SecretStr(PASSWORD)
        )
        config = BwConfig(str(bw_bin), base / "bw", server.url, org.id, server.ca_cert_path, 120.0)
        runner = TimedRunner(end_reads=True)
        bw = Bitwarden(runner, config)
        started = time.monotonic()
        bw.login(creds)
        login_s = time.monotonic() - started
        runner.seconds.clear()
        totals: dict[bool, list[float]] = {True: [], False: []}
        calls: dict[bool, dict[str, list[float]]] = {True: {}, False: {}}
        load = [os.getloadavg()[0]]
        for _ in range(args.rounds):
            for end_reads in (False, True):
                runner.end_reads = end_reads
                runner.seconds = calls[end_reads]
                started = time.monotonic()
                snap = bw.snapshot(creds, lambda cols: [c.id for c in cols if c.name == "acme"])
                totals[end_reads].append(time.monotonic() - started)
                assert [i.name for i in snap.items] == ["env"] and snap.bw_calls == 5  # no status: see bitwarden.py
        load.append(os.getloadavg()[0])
        report = {
            "bw_version": "2026.9.0",
            "rounds": args.rounds,
            "login_seconds": round(login_s, 2),
            "load_average_start_end": load,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
            "python": platform.python_version(),
            "snapshot_median_seconds": {
                "reads run to bw's exit": round(statistics.median(totals[False]), 2),
                "reads ended at the answer": round(statistics.median(totals[True]), 2),
            },
            "ratio": round(statistics.median(totals[False]) / statistics.median(totals[True]), 2),
            "call_median_seconds": {
                ("ended" if end else "run to exit"): {k: round(statistics.median(v), 2) for k, v in calls[end].items()}
                for end in (False, True)
            },
        }
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2))
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
