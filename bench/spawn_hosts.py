"""30 spawns spread over 3 hosts in one ``spawn-agent`` call against one host's share (10) spawned
locally (issue 11: at most 1.3x).

    .venv/bin/python -m bench.spawn_hosts [--rounds 2] [--per-host 10]

Builds the three-host rig (tests/rig: network namespaces, real sshd, each host's own daemon,
state and run directories on the sandbox backend, one PostgreSQL), enrols the hosts from the
orchestrator (the root namespace) with their pinned keys, then per round, alternately:

- ``local``: ``colibri spawn-agent`` of 10 tenants on rig host a, run by a's own colibri in a's
  namespace (its secrets staged on a): exactly the pipeline a remote spawn runs there, with the
  same ``spawn_parallelism`` (4), database and backend, without SSH or the orchestrator;
- ``hive``: one ``colibri spawn-agent`` of 30 tenants (10 living on each host) on the
  orchestrator: secrets rendered there, each host's share sent over its kept SSH link as one
  ``spawn_many`` request (one remote process per host), the hosts side by side;
- ``per tenant``: the same call on the same code with each tenant in its own ``spawn`` request,
  ``spawn_parallelism`` at once per host (so 4 remote processes per host): the path before the
  batch, and still the one taken for a host whose colibri predates ``spawn_many``.  Run as
  ``python -c PER_TENANT spawn-agent ...``, which makes every batch answer "no op" before
  anything is sent, so ``RemoteHost.spawn_many`` falls back (interpreter start included, as the
  ``colibri`` script's);
- ``3 x local``: the three hosts' colibri each spawning its own 10 at the same moment (three
  processes, no orchestrator): what the hive call costs on this machine without SSH, since the
  three "hosts" share its CPUs (on three machines each would have its own).

Each timed call is the wall time of the whole command (interpreter start included); every jail is
destroyed (``destroy-agent --yes``, not timed) before the next call, and at the end with the rig.
Tenants are registered with ``--collection ''`` (staged secrets, no vault).  Prints Markdown.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.rig import COLIBRI, Rig, RigHost, build, in_netns, teardown

DAEMON = {"heartbeat_interval": "1", "reconcile_interval": "0", "task_poll_interval": "0.5"}
PER_TENANT = """
import sys
from colibri.errors import InvalidInput
from colibri.services.hosts.serve import NO_OP
from colibri.services.lifecycle.remote_host import RemoteHost
def _no_batch(self, *args, **kwargs):
    raise InvalidInput(f"{NO_OP} 'spawn_many' (the benchmark's per-tenant path)")
RemoteHost._spawn_batch = _no_batch
from colibri.cli.app import run
sys.exit(run(sys.argv[1:]))
"""


def _env(config: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "COLIBRI_CONFIG": str(config)}


def orch_config(rig: Rig) -> Path:
    root = rig.root / "orch"
    root.mkdir(mode=0o700)
    config = root / "colibri.toml"
    config.write_text(
        f'host = "orch"\njail_backend = "sandbox"\nstate_dir = "{root / "state"}"\nrun_dir = "{root / "run"}"\n'
        f'log_dir = "{root / "log"}"\ndatabase_url = "{rig.database_url()}"\nssh_key_file = "{rig.client_key}"\n'
    )
    return config


def colibri(config: Path, *args: str, netns: str | None = None, check: bool = True, per_tenant: bool = False) -> float:
    """Run colibri (``per_tenant``: with the per-tenant spawn path); its wall time in seconds."""
    prefix = in_netns(netns) if netns else []
    program = [sys.executable, "-c", PER_TENANT] if per_tenant else [str(COLIBRI)]
    start = time.perf_counter()
    done = subprocess.run([*prefix, *program, *args], env=_env(config), capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    took = time.perf_counter() - start
    if check and done.returncode != 0:
        raise SystemExit(f"colibri {' '.join(args[:3])}... exited {done.returncode}: {done.stderr[-2000:]}")
    return took


def stage(state_dir: Path, tenant: str) -> None:
    staged = state_dir / "staged" / tenant
    staged.mkdir(parents=True, mode=0o700, exist_ok=True)
    staged.parent.chmod(0o700)
    (staged / "provider.env").write_text("PROVIDER_KEY=bench-not-a-real-key\n")
    (staged / "provider.env").chmod(0o600)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--per-host", type=int, default=10)
    opts = parser.parse_args()
    n = opts.per_host
    load_before = os.getloadavg()
    rig = build()
    cleanup: list[tuple[RigHost | None, list[str]]] = []
    orch = orch_config(rig)
    try:
        a, b, c = (rig.hosts[x] for x in "abc")
        for host in (a, b, c):
            colibri(orch, "hosts", "add", f"rig-{host.name}", "--ssh", f"root@{host.address}", "--host-key",
                    host.host_key_line(), "--command", str(host.command))  # fmt: skip
            colibri(orch, "hosts", "check", f"rig-{host.name}")
            host.start_daemon(**DAEMON)
        # the tenants: own[h] spawned by h's colibri itself; hive[h] living on h, spawned from orch
        own: dict[str, list[str]] = {h.name: [f"lo-{h.name}-{i:02d}" for i in range(n)] for h in (a, b, c)}
        hive: dict[str, list[str]] = {h.name: [f"hv-{h.name}-{i:02d}" for i in range(n)] for h in (a, b, c)}
        for host in (a, b, c):
            for tenant in own[host.name]:
                colibri(host.config, "register-tenant", tenant, "--collection", "", netns=host.netns)
                stage(host.root / "state", tenant)
            for tenant in hive[host.name]:
                colibri(orch, "register-tenant", tenant, "--host", f"rig-{host.name}", "--collection", "")
                stage(rig.root / "orch" / "state", tenant)
        everyone = [t for h in "abc" for t in hive[h]]
        cleanup += [(None, everyone), *((h, own[h.name]) for h in (a, b, c))]

        def local(host: RigHost) -> float:
            return colibri(host.config, "spawn-agent", *own[host.name], netns=host.netns)

        def local_down(host: RigHost) -> None:
            colibri(host.config, "destroy-agent", *own[host.name], "--yes", netns=host.netns)

        def three_local() -> float:
            took: dict[str, float] = {}
            threads = [threading.Thread(target=lambda h=h: took.__setitem__(h.name, local(h))) for h in (a, b, c)]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - start
            if len(took) != 3:
                raise SystemExit("a host's local spawn failed")
            return wall

        rows: list[dict[str, Any]] = []
        loads = []
        for round_no in range(1, opts.rounds + 1):
            row: dict[str, Any] = {"round": round_no}
            loads.append(os.getloadavg()[0])
            row["local"] = local(a)
            local_down(a)
            for key, per_tenant in (("per_tenant", True), ("hive", False)):
                serves = {h.name: len([x for _, x in h.ran() if x == "remote serve"]) for h in (a, b, c)}
                row[key] = colibri(orch, "spawn-agent", *everyone, per_tenant=per_tenant)
                print(f"round {round_no}: {key} {row[key]:.2f} s", file=sys.stderr, flush=True)
                row[f"{key}_serves"] = sum(
                    len([x for _, x in h.ran() if x == "remote serve"]) - serves[h.name] for h in (a, b, c)
                )
                listed = subprocess.run([str(COLIBRI), "list-tenants", "--json"], env=_env(orch),
                                        capture_output=True, text=True, check=True)  # fmt: skip
                spread = json.loads(listed.stdout)["data"]
                active = {t["host"] for t in spread if t["status"] == "active" and t["tenant_id"] in everyone}
                if len([t for t in spread if t["status"] == "active" and t["tenant_id"] in everyone]) != 3 * n:
                    raise SystemExit(f"the {key} spawn left tenants inactive")
                row["hosts"] = sorted(active)
                colibri(orch, "destroy-agent", *everyone, "--yes")
            row["three_local"] = three_local()
            for host in (a, b, c):
                local_down(host)
            rows.append(row)
            print(f"round {round_no}: {row}", file=sys.stderr, flush=True)
        load_after = os.getloadavg()
    finally:
        for host, tenants in cleanup:  # a failed round leaves jails: their processes outlive the rig
            colibri(host.config if host else orch, "destroy-agent", *tenants, "--yes",
                    netns=host.netns if host else None, check=False)  # fmt: skip
        teardown(rig)

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"load average before {load_before[0]:.1f} / {load_before[1]:.1f} / {load_before[2]:.1f}, "
          f"at each round's start {', '.join(f'{x:.1f}' for x in loads)}, "
          f"after {load_after[0]:.1f} / {load_after[1]:.1f} / {load_after[2]:.1f}\n")  # fmt: skip
    print(f"| round | {n} on one host, local | {3 * n} over 3 hosts, per tenant (before) | ratio "
          f"| {3 * n} over 3 hosts, batched (after) | ratio | after / before | 3 hosts x {n} local at once "
          "| before / 3 x local | after / 3 x local | remote serves before, after |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        lo, pt, hv, tl = row["local"], row["per_tenant"], row["hive"], row["three_local"]
        print(f"| {row['round']} | {lo:.2f} s | {pt:.2f} s | {pt / lo:.2f}x | {hv:.2f} s | {hv / lo:.2f}x "
              f"| {hv / pt:.2f}x | {tl:.2f} s | {pt / tl:.2f}x | {hv / tl:.2f}x "
              f"| {row['per_tenant_serves']}, {row['hive_serves']} |")  # fmt: skip
    med = {k: statistics.median(r[k] for r in rows) for k in ("local", "per_tenant", "hive", "three_local")}
    lo, pt, hv, tl = med["local"], med["per_tenant"], med["hive"], med["three_local"]
    print(f"| median | {lo:.2f} s | {pt:.2f} s | {pt / lo:.2f}x | {hv:.2f} s | {hv / lo:.2f}x | {hv / pt:.2f}x "
          f"| {tl:.2f} s | {pt / tl:.2f}x | {hv / tl:.2f}x | |")  # fmt: skip


if __name__ == "__main__":
    main()
