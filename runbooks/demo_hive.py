"""The hive on three hosts on one machine (runbooks/demo-hive.sh runs this with the venv's Python).

It builds the test suite's three-host rig (tests/rig: three network namespaces on a private /24,
each with a real OpenSSH sshd, its own colibri.toml, state and run directories and the sandbox
backend; one PostgreSQL server they all use), makes the root namespace the orchestrator, and
shows, with the colibri commands' own output:

 1. three hosts enrolled with pinned host keys and checked over SSH; a host whose key changed is
    refused (exit 19, nothing sent) until the operator pins the new key;
 2. a tenant registered on host a and its jail spawned there from the orchestrator (the tenant's
    secrets rendered on the orchestrator, sent over SSH stdin, the .env 0600 on host a);
 3. the tenant's task for a capability its own agent lacks, submitted on host a, run by a lane
    agent on host c, its result read on host a;
 4. host b frozen (SIGSTOP of its daemon) while its lane agent holds a task: past its lease and
    grace b is lost, the task is re-queued and finishes once on host c, b's late answer refused;
 5. everything torn down: jails, lane agents, daemons, sshd, the namespaces, the bridge, PostgreSQL.

A run killed outright (SIGKILL) leaves its rig named in .colibri-demo-hive/rig; the next run tears
that down first.  Python rather than bash: tests/rig already builds and tears down the rig (and the
CI runs it), and a try/finally with signal handlers is a sturdier trap than bash's.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.fleet import Agent  # noqa: E402
from tests.rig import COLIBRI, Rig, RigHost, build, in_netns, teardown  # noqa: E402

DEMO = REPO / ".colibri-demo-hive"
TENANT = "t-demo"
# short liveness timings so a lost host shows within seconds (production: 30 s lease, 10 s grace)
FAST = {
    "heartbeat_interval": "0.3",
    "agent_stale_after": "1.5",
    "agent_lost_after": "3",
    "host_lease_seconds": "3",
    "host_lease_grace": "1",
    "task_poll_interval": "0.2",
    "reconcile_interval": "0",
}
MOTHER = REPO / "skills" / "mother" / "mother.py"
HANDLER = """#!/usr/bin/env python3
import json, sys
payload = json.load(sys.stdin)
json.dump({"built": payload.get("src"), "by": "%s"}, sys.stdout)
"""


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _show(argv: list[str], done: subprocess.CompletedProcess[str]) -> None:
    out = (done.stdout + done.stderr).rstrip()
    if out:
        print(out, flush=True)
    if done.returncode != 0:
        print(f"(exit {done.returncode})", flush=True)


class Orchestrator:
    """The root namespace's colibri: its own colibri.toml, the shared database, the rig's SSH key,
    and the tenants' secrets (staged root-only here: the stand-in for the vault on this machine)."""

    def __init__(self, rig: Rig, root: Path) -> None:
        self.root = root
        root.mkdir(mode=0o700)
        config = root / "colibri.toml"
        config.write_text(
            f'host = "orch"\njail_backend = "sandbox"\nstate_dir = "{root / "state"}"\n'
            f'run_dir = "{root / "run"}"\nlog_dir = "{root / "log"}"\n'
            f'database_url = "{rig.database_url()}"\nssh_key_file = "{rig.client_key}"\n'
            f"host_lease_seconds = {FAST['host_lease_seconds']}\nhost_lease_grace = {FAST['host_lease_grace']}\n"
        )  # the hive's lease timings: `colibri hosts` calls a host lost when its daemons do
        self.env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "COLIBRI_CONFIG": str(config)}

    def run(self, *args: str, show: bool = True, expect: int = 0) -> subprocess.CompletedProcess[str]:
        argv = ["colibri", *args]
        if show:
            print(f"orch$ {' '.join(argv)}", flush=True)
        done = subprocess.run([str(COLIBRI), *args], env=self.env, capture_output=True, text=True, timeout=180)
        if show:
            _show(argv, done)
        if done.returncode != expect:
            raise SystemExit(f"demo: `colibri {' '.join(args)}` exited {done.returncode}, expected {expect}")
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json", show=False).stdout)["data"]

    def stage(self, tenant: str, text: str) -> None:
        staged = self.root / "state" / "staged" / tenant
        staged.mkdir(parents=True, mode=0o700)
        (staged.parent).chmod(0o700)
        path = staged / "provider.env"
        path.write_text(text)
        path.chmod(0o600)


def on(host: RigHost, *args: str, show: bool = True) -> subprocess.CompletedProcess[str]:
    """colibri on a rig host: in its network namespace, with its own colibri.toml."""
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "COLIBRI_CONFIG": str(host.config)}
    if show:
        print(f"rig-{host.name}$ colibri {' '.join(args)}", flush=True)
    done = subprocess.run([*in_netns(host.netns), str(COLIBRI), *args], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    if show:
        _show(["colibri", *args], done)
    if done.returncode != 0:
        raise SystemExit(f"demo: `colibri {' '.join(args)}` on rig-{host.name} exited {done.returncode}")
    return done


def on_json(host: RigHost, *args: str) -> Any:
    return json.loads(on(host, *args, "--json", show=False).stdout)["data"]


def wait(what: str, predicate: Callable[[], Any], limit: float = 60) -> Any:
    deadline = time.monotonic() + limit
    while True:
        with contextlib.suppress(SystemExit, ValueError, KeyError, OSError):
            found = predicate()
            if found:
                return found
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        time.sleep(0.2)


def lane_mother(host: RigHost, agent_id: str, capability: str) -> subprocess.Popen[bytes]:
    """The real mother skill as a lane agent on ``host`` (in its namespace), on the lane socket."""
    home = host.root / "lane-agents" / agent_id
    (home / "handlers").mkdir(parents=True)
    handler = home / "handlers" / capability
    handler.write_text(HANDLER % f"{agent_id} on rig-{host.name}")
    handler.chmod(0o755)
    identity = {
        "tenant": capability,
        "agent_id": agent_id,
        "capabilities": [{"name": capability, "version": "1"}],
        "socket": str(host.root / "run" / "lanes" / capability / "agent.sock"),
        "env_file": str(home / ".env"),
        "handlers_dir": str(home / "handlers"),
        "mother_version": "1",
        "secrets_expected": False,
    }
    (home / "agent.json").write_text(json.dumps(identity))
    log = (home / "mother.log").open("ab")
    proc = subprocess.Popen(
        [*in_netns(host.netns), sys.executable, str(MOTHER), "--identity", str(home / "agent.json"),
         "--poll-wait", "2"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, env={"PATH": os.environ["PATH"], "HOME": str(home)},
    )  # fmt: skip
    log.close()
    return proc


def states(orch: Orchestrator) -> dict[str, str]:
    return {h["name"]: h["state"] for h in orch.json("hosts")}


def demo(rig: Rig, orch: Orchestrator, mothers: list[subprocess.Popen[bytes]]) -> None:
    a, b, c = rig.hosts["a"], rig.hosts["b"], rig.hosts["c"]
    say("the rig: three hosts in network namespaces, each with sshd and its own colibri.toml; one PostgreSQL")
    for host in (a, b, c):
        print(f"rig-{host.name}: netns {host.netns}, sshd on {host.address}:22, config {host.config}")
    print(f"orchestrator: the root namespace, {rig.gateway}; PostgreSQL on {rig.gateway}:{rig.postgres.port}"
          if rig.postgres else "")  # fmt: skip

    say("1. enrol the three hosts with their pinned host keys (no trust on first use), check each over SSH")
    for host in (a, b, c):
        orch.run("hosts", "add", f"rig-{host.name}", "--ssh", f"root@{host.address}", "--host-key",
                 host.host_key_line(), "--command", str(host.command))  # fmt: skip
    for host in (a, b, c):
        orch.run("hosts", "check", f"rig-{host.name}")
    say("rig-c is reinstalled (a new host key): the pinned key no longer matches, nothing is sent")
    new_key = c.new_host_key()
    orch.run("hosts", "check", "rig-c", expect=19)
    say("the operator verifies the new key out of band, then pins it again")
    orch.run("hosts", "remove", "rig-c")
    orch.run("hosts", "add", "rig-c", "--ssh", f"root@{c.address}", "--host-key", new_key, "--command", str(c.command))
    orch.run("hosts", "check", "rig-c")

    say("each host runs its own daemon (rc.d on FreeBSD); they renew their host leases in PostgreSQL")
    for host in (a, b, c):
        host.start_daemon(**FAST)
        print(f"rig-{host.name}: colibri daemon up (log {host.root / 'daemon.log'})")
    orch.run("hosts")

    say("2. a tenant on rig-a, spawned from the orchestrator (its secrets rendered here, sent over SSH stdin)")
    orch.stage(TENANT, "OPENROUTER_API_KEY=sk-or-demo-not-a-real-key\nMODEL=deepseek/deepseek-chat\n")
    orch.run("register-tenant", TENANT, "--host", "rig-a", "--collection", "")
    orch.run("spawn-agent", TENANT, "--capability", "echo")
    orch.run("list-tenants")
    root = Path(orch.json("show-tenant", TENANT)["jail_root"])
    env = root / "home" / "agent" / ".env"
    info = env.stat()
    print(f"rig-a: {env}: mode {info.st_mode & 0o777:o}, owner uid {info.st_uid} (the jail's agent user)")
    wait("the tenant's agent to register on rig-a",
         lambda: any(x["state"] == "active" for x in on_json(a, "agents", "--tenant", TENANT)))  # fmt: skip
    on(a, "agents", "--tenant", TENANT)

    say("3. a lane 'build' on every host; a lane agent (the mother skill) on rig-c offers 'build'")
    on(c, "register-lane", "build")
    wait("the lane sockets", lambda: all((h.root / "run/lanes/build/agent.sock").exists() for h in (a, b, c)), 30)
    mothers.append(lane_mother(c, "c-build", "build"))
    wait("the lane agent on rig-c", lambda: any(x["state"] == "active" and "c-build" in json.dumps(x)
                                                for x in on_json(c, "agents")))  # fmt: skip
    on(c, "agents")
    say("the tenant's own agent on rig-a has no 'build': submitted on rig-a, the task runs on rig-c's lane")
    on(a, "submit-task", "build", "--payload", '{"src": "hello.c"}', "--tenant", TENANT, "--wait")
    task = max(on_json(a, "tasks", "--tenant", TENANT), key=lambda t: int(t["id"]))
    say("read on rig-a: the task ran on rig-c")
    on(a, "task", str(task["id"]))

    say("4. a lane 'slow' with an agent on rig-b holding a task, then rig-b freezes")
    on(b, "register-lane", "slow")
    slow = lambda h: h.root / "run" / "lanes" / "slow" / "agent.sock"  # noqa: E731
    wait("the slow lane sockets", lambda: slow(b).exists() and slow(c).exists(), 30)
    b_agent = Agent(slow(b), "b-slow", ("slow",))
    b_agent.register()
    held_task = on_json(a, "submit-task", "slow", "--payload", '{"src": "big.c"}', "--tenant", TENANT)
    status, held = b_agent.claim(wait=10)
    if status != 200 or held["id"] != held_task["id"]:
        raise SystemExit(f"demo: rig-b's lane agent did not get the task ({status})")
    on(a, "task", str(held["id"]))
    assert b.daemon is not None
    os.kill(b.daemon.pid, signal.SIGSTOP)
    print(f"rig-b: kill -STOP {b.daemon.pid} (its daemon frozen: no lease renewal, no answers)")
    t0 = time.monotonic()
    mothers.append(lane_mother(c, "c-slow", "slow"))
    print("rig-c: a lane agent offering 'slow' starts (the task is not its until rig-b is lost)")
    wait("rig-b to be lost", lambda: states(orch).get("rig-b") == "lost", 60)
    print(f"rig-b lost {time.monotonic() - t0:.1f} s after the freeze (lease 3 s + grace 1 s, then the next check)")
    orch.run("hosts")
    on(c, "agents")
    wait("the task to finish", lambda: on_json(a, "task", str(held["id"]))["state"] == "succeeded", 60)
    say("the task was re-queued with a new fencing token and finished once, on rig-c")
    on(a, "task", str(held["id"]))
    os.kill(b.daemon.pid, signal.SIGCONT)
    print(f"rig-b: kill -CONT {b.daemon.pid}; its agent now sends its late answer for the task")
    late, body = b_agent.result(held, True, {"built": "big.c", "by": "b-slow on rig-b (late)"})
    message = body.get("error", {}).get("message", body) if isinstance(body, dict) else body
    print(f"rig-b's late answer: HTTP {late} {str(message)[:160]}")
    if late != 409:
        raise SystemExit("demo: rig-b's late answer was not refused")
    on(a, "task", str(held["id"]))
    b_agent.close()
    wait("rig-b to renew its lease", lambda: states(orch).get("rig-b") == "up", 60)
    say("rig-b is back: a new lease term")
    orch.run("hosts")

    say("5. clean up: the tenant's jail destroyed from the orchestrator")
    orch.run("destroy-agent", TENANT, "--yes")


def _clear_previous() -> None:
    """Tear down what a killed previous run left (its rig named in DEMO/rig)."""
    marker = DEMO / "rig"
    if not marker.exists():
        shutil.rmtree(DEMO, ignore_errors=True)
        return
    number, root = marker.read_text().split(maxsplit=1)
    root = root.strip()
    print(f"demo: tearing down the rig a previous run left (colrig{number}, {root})", flush=True)
    config = Path(root) / "a" / "colibri.toml"
    if config.exists():  # its tenant's jail first, by the host's own colibri (PostgreSQL still runs)
        netns = f"colibri-rig-{number}-a"
        env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "COLIBRI_CONFIG": str(config)}
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run([*in_netns(netns), str(COLIBRI), "destroy-agent", TENANT, "--yes"], env=env,
                           capture_output=True, timeout=120)  # fmt: skip
    for procs in [*Path("/sys/fs/cgroup").glob(f"*/colibri/{TENANT}-*/cgroup.procs"),
                  *Path("/sys/fs/cgroup/colibri").glob(f"{TENANT}-*/cgroup.procs")]:  # fmt: skip
        with contextlib.suppress(OSError):
            for pid in procs.read_text().split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
    for name in ("a", "b", "c"):
        netns = f"colibri-rig-{number}-{name}"
        found = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.split()
        for pid in found:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "link", "del", f"colrig{number}{name}"], capture_output=True)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
    subprocess.run(["ip", "link", "del", f"colrig{number}"], capture_output=True)
    pid_file = Path(root) / "pg" / "data" / "postmaster.pid"
    with contextlib.suppress(OSError, ValueError, ProcessLookupError):
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(DEMO, ignore_errors=True)


def _leftovers(rig: Rig) -> list[str]:
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [f"netns {line.split()[0]}" for line in netns.splitlines() if f"colibri-rig-{rig.number}-" in line]
    found += [f"link {line.split(':')[1].strip()}" for line in links.splitlines() if f"colrig{rig.number}" in line]
    found += [f"jail cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"**/colibri/{TENANT}-*")]
    if rig.root.exists():
        found.append(f"directory {rig.root}")
    return found


def _stop(signum: int, _frame: object) -> None:
    raise SystemExit(f"demo: interrupted by signal {signum}; tearing down")


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)
    _clear_previous()
    DEMO.mkdir(mode=0o700)
    started = time.monotonic()
    rig = build()
    (DEMO / "rig").write_text(f"{rig.number} {rig.root}\n")
    mothers: list[subprocess.Popen[bytes]] = []
    orch = Orchestrator(rig, rig.root / "orch")
    code = 0
    try:
        demo(rig, orch, mothers)
    except SystemExit as exc:
        print(exc, file=sys.stderr, flush=True)
        code = 1
    finally:
        for host in rig.hosts.values():  # a frozen daemon must run again to stop
            if host.daemon is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(host.daemon.pid, signal.SIGCONT)
        if code:
            with contextlib.suppress(Exception):
                orch.run("destroy-agent", TENANT, "--yes", show=False, expect=0)
        for proc in mothers:
            if proc.poll() is None:
                proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        say("tear down: daemons, sshd, every process in the namespaces, the namespaces, the bridge, PostgreSQL")
        teardown(rig)
        left = _leftovers(rig)
        print("nothing left" if not left else f"left behind: {', '.join(left)}", flush=True)
        shutil.rmtree(DEMO, ignore_errors=True)
        code = code or (1 if left else 0)
    if code == 0:
        print(f"\ndemo: the hive on three hosts ran in {time.monotonic() - started:.0f} s", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
