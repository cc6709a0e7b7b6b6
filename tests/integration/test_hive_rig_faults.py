"""Faults of a hive on three hosts, on the rig (issue 11): the remote colibri killed in the middle of a
spawn it was driving over SSH, and a host's link cut while its lane holds a task.

Real parts only: the rig's sshd, the hosts' own daemons, the sandbox backend's jails, one
PostgreSQL; the link is cut by taking the host's veth down in the root namespace (SSH and the
database both go), as a pulled cable would.
"""

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.fleet import Agent
from tests.integration.hive_harness import Raw, listening, wait_until
from tests.rig import Rig, RigHost
from tests.rig.orchestrator import FAST, Orchestrator, files_holding, jail_dirs, jail_processes, on, on_json

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
SECRET = "GAMMA-secret-3b9d"


@pytest.fixture(name="orch")
def orch_fixture(rig: Rig, tmp_path: Path) -> Iterator[Orchestrator]:
    orch = Orchestrator(rig, tmp_path / "orch")
    for host in rig.hosts.values():
        orch("hosts", "add", f"rig-{host.name}", "--ssh", f"root@{host.address}", "--host-key", host.host_key_line(),
             "--command", str(host.command))  # fmt: skip
    yield orch
    for host in rig.hosts.values():
        subprocess.run(["ip", "link", "set", _veth(rig, host), "up"], check=False, capture_output=True)
    orch("destroy-agent", "t-gamma", "--yes", check=False)
    for host in rig.hosts.values():
        if host.daemon is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(host.daemon.pid, signal.SIGCONT)
        host.stop_daemon()


def _veth(rig: Rig, host: RigHost) -> str:
    """The host's cable: the root namespace's end of its veth pair (tests/rig _network)."""
    return f"colrig{rig.number}{host.name}"


def test_the_remote_killed_mid_spawn_then_a_rerun_converges(rig: Rig, orch: Orchestrator) -> None:
    a = rig.hosts["a"]
    orch("register-tenant", "t-gamma", "--host", "rig-a", "--collection", "")
    orch.stage("t-gamma", SECRET)
    serves_before = {pid for pid, argv in a.ran() if argv == "remote serve"}
    spawn = subprocess.Popen(orch.argv("spawn-agent", "t-gamma", "--capability", "echo"), env=orch.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    # the moment the jail exists on host a, the remote colibri driving the spawn dies
    try:
        jail = wait_until(lambda: next(iter(jail_dirs(a.root, "t-gamma")), None), 60, 0.01)
        serve = wait_until(lambda: [p for p, argv in a.ran() if argv == "remote serve" and p not in serves_before],
                           10)  # fmt: skip
        for pid in serve:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, err = spawn.communicate(timeout=120)
    finally:  # never leave the spawn running (nor its pipes open) past the test
        if spawn.poll() is None:
            spawn.kill()
        spawn.communicate()
    assert "Traceback" not in err, err
    if spawn.returncode == 0:
        # the request went out on a kept channel that died under it: the adapter sent it once more
        # on a new one (tests/integration/test_hosts_ssh.py), and the host's resumable pipeline
        # converged on the jail it had made
        assert all(not Path(f"/proc/{pid}").exists() for pid in serve)
    else:
        assert spawn.returncode == 13 and len(err.strip().splitlines()) == 1, (spawn.returncode, err)
        shown = orch.json("show-tenant", "t-gamma")
        assert shown["status"] in ("spawning", "failed"), shown  # not active: the spawn did not finish
        assert jail.exists()
        # the operator runs it again: it converges on the jail that is there, secrets and all
        orch("spawn-agent", "t-gamma", "--capability", "echo")
    shown = orch.json("show-tenant", "t-gamma")
    assert shown["status"] == "active" and Path(shown["jail_root"]).exists(), shown
    envs = files_holding(a.root, SECRET.encode())
    assert len(envs) == 1 and envs[0].name == ".env" and envs[0].stat().st_mode & 0o777 == 0o600, envs
    assert len(jail_dirs(a.root, "t-gamma")) == 1  # one jail, none forgotten
    orch("destroy-agent", "t-gamma", "--yes")
    assert jail_processes("t-gamma") == [] and files_holding(a.root, SECRET.encode()) == []


def test_a_host_cut_off_while_its_lane_holds_a_task(rig: Rig, orch: Orchestrator) -> None:
    """b's cable is pulled: its daemon is degraded (no database), keeps its agents and acknowledges
    their result into its outbox; past b's lease + grace host c's daemon declares b lost and the
    task runs on c; when the cable is back, b's replayed completion is refused: the task
    completed once, on c."""
    b, c = rig.hosts["b"], rig.hosts["c"]
    for host in (b, c):
        host.start_daemon(**FAST)
    on(c, "register-lane", "build")
    lane = lambda host: host.root / "run" / "lanes" / "build" / "agent.sock"  # noqa: E731
    wait_until(lambda: listening(lane(b)) and listening(lane(c)), 30)
    b1 = Agent(lane(b), "b1", ("slow",))
    b1.register()
    task = on_json(c, "submit-task", "slow", "--payload", '{"n": 2}')
    status, held = b1.claim(wait=10)
    assert status == 200 and held["id"] == task["id"] and held["host"] == "rig-b", (status, held)

    subprocess.run(["ip", "link", "set", _veth(rig, b), "down"], check=True)
    admin = Raw(b.admin_socket)
    wait_until(lambda: admin("GET", "/health")[1]["status"] == "degraded", 30)
    c1 = Agent(lane(c), "c1", ("slow",))
    c1.register()
    status, again = c1.claim(wait=30)  # back in the queue only once b's lease + grace have passed
    assert status == 200 and again["id"] == task["id"] and again["fence"] > held["fence"], (status, again)
    assert c1.result(again, True, "done on c")[0] == 200
    late, body = b1.result(held, True, "done on b, cut off")
    assert late == 202 and body["outbox"] is True  # b acknowledged it: kept in its outbox, not lost

    subprocess.run(["ip", "link", "set", _veth(rig, b), "up"], check=True)
    wait_until(lambda: admin("GET", "/health")[1]["fleet"]["outbox"] == 0, 60)  # replayed
    admin.close()
    final = on_json(c, "task", str(task["id"]))
    assert (final["state"], final["host"], final["result"], final["attempts"]) == ("succeeded", "rig-c",
                                                                                   "done on c", 2), final  # fmt: skip
    assert "was refused (rescued meanwhile)" in (b.root / "daemon.log").read_text(errors="replace")
    wait_until(lambda: {h["name"]: h["state"] for h in on_json(c, "hosts")}["rig-b"] == "up", 30)
    b1.close()
    c1.close()
