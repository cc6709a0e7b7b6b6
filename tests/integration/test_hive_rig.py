"""The hive on three hosts, end to end, on the rig (issue 11, "Done when").

Three network namespaces, each a host with a real sshd, its own colibri daemon (its own state, run
and log directories, the sandbox backend) and the one PostgreSQL database; the orchestrator is
this test's process in the root namespace, with the rig's SSH key and the tenants' secrets
(staged, root-only: the orchestrator's stand-in for the vault; the real bw path is the same render
and is tested in tests/unit/hosts and test_provision).  From the orchestrator: enrol the hosts with
pinned keys, spawn two tenants' jails on two of them over SSH, check where the secrets landed (and
where they did not), run a tenant's task on a lane of a third host and read its result on the
tenant's host, then freeze a host that holds a task and see the task finish once elsewhere.
"""

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.fleet import Agent
from tests.integration.hive_harness import listening, wait_until
from tests.rig import Rig, RigHost
from tests.rig.orchestrator import FAST, OPERATOR, SECRETS, Orchestrator, files_holding, jail_processes, on, on_json

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture(name="orch")
def orch_fixture(rig: Rig, tmp_path: Path) -> Iterator[Orchestrator]:
    orch = Orchestrator(rig, tmp_path / "orch")
    yield orch
    orch("destroy-agent", "t-alpha", "t-beta", "--yes", check=False)
    for host in rig.hosts.values():
        if host.daemon is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(host.daemon.pid, signal.SIGCONT)
        host.stop_daemon()


def test_three_hosts_from_the_orchestrator(rig: Rig, orch: Orchestrator) -> None:
    a, b, c = rig.hosts["a"], rig.hosts["b"], rig.hosts["c"]
    # enrol the three with their pinned keys, and check each over SSH
    for host in (a, b, c):
        orch("hosts", "add", f"rig-{host.name}", "--ssh", f"root@{host.address}", "--host-key", host.host_key_line(),
             "--command", str(host.command))  # fmt: skip
        checked = orch.json("hosts", "check", f"rig-{host.name}")
        assert checked["found"]["backend"] == "sandbox" and checked["found"]["backend_ready"], checked
    for host in (a, b, c):
        host.start_daemon(**FAST)
    assert {h["name"]: h["state"] for h in orch.json("hosts")} == {"rig-a": "up", "rig-b": "up", "rig-c": "up"}

    # two tenants on two hosts, spawned from the orchestrator; secrets rendered here, sent over SSH
    for tenant, host in (("t-alpha", "rig-a"), ("t-beta", "rig-b")):
        orch("register-tenant", tenant, "--host", host, "--collection", "")
        orch.stage(tenant, SECRETS[tenant])
    spawned = orch("spawn-agent", "t-alpha", "t-beta", "--capability", "echo", "--json")
    assert spawned.returncode == 0, spawned.stdout
    for tenant, host in (("t-alpha", a), ("t-beta", b)):
        shown = orch.json("show-tenant", tenant)
        assert (shown["status"], shown["host"]) == ("active", f"rig-{host.name}"), shown
        envs = files_holding(host.root, SECRETS[tenant].encode())
        assert len(envs) == 1 and envs[0].name == ".env", envs  # the jail's .env, nothing else on that host
        info = envs[0].stat()
        assert info.st_mode & 0o777 == 0o600 and info.st_uid not in (0, os.geteuid()), oct(info.st_mode)
        assert Path(shown["jail_root"]) in envs[0].parents, (shown["jail_root"], envs[0])
    # a jail holds only its own secrets; no host but the orchestrator holds the operator's credential
    assert files_holding(a.root, SECRETS["t-beta"].encode()) == []
    assert files_holding(b.root, SECRETS["t-alpha"].encode()) == []
    for host in (a, b, c):
        assert files_holding(host.root, OPERATOR.encode()) == [], host.name
    ran = "\n".join(argv for host in (a, b, c) for _, argv in host.ran())
    assert SECRETS["t-alpha"] not in ran and SECRETS["t-beta"] not in ran  # never in a remote argv

    # each tenant's mother registered with its own host's daemon
    def agent_of(host: RigHost, tenant: str) -> Any:
        agents = on_json(host, "agents", "--tenant", tenant)
        return next((x for x in agents if x["state"] == "active"), None)

    assert wait_until(lambda: agent_of(a, "t-alpha"), 60)["host"] == "rig-a"
    assert wait_until(lambda: agent_of(b, "t-beta"), 60)["host"] == "rig-b"

    # a lane on host c takes t-alpha's task for a capability t-alpha's own agent lacks
    on(c, "register-lane", "build")
    lane = lambda host: host.root / "run" / "lanes" / "build" / "agent.sock"  # noqa: E731
    wait_until(lambda: listening(lane(b)) and listening(lane(c)), 30)
    c1 = Agent(lane(c), "c1", ("build",))
    c1.register()
    submitted = on_json(a, "submit-task", "build", "--payload", '{"n": 1}', "--tenant", "t-alpha")
    status, lease = c1.claim(wait=10)
    assert status == 200 and lease["id"] == submitted["id"] and lease["host"] == "rig-c", (status, lease)
    assert c1.result(lease, True, {"built": 1})[0] == 200
    seen = on_json(a, "task", str(submitted["id"]))  # read on the tenant's host
    assert (seen["state"], seen["host"], seen["result"], seen["tenant"]) == ("succeeded", "rig-c", {"built": 1},
                                                                             "t-alpha"), seen  # fmt: skip
    c1.close()

    # host b's lane holds a task when b freezes: past its lease + grace it is lost, the task runs once on c
    b1 = Agent(lane(b), "b1", ("slow",))
    b1.register()
    task = on_json(a, "submit-task", "slow", "--payload", "{}", "--tenant", "t-alpha")
    status, held = b1.claim(wait=10)
    assert status == 200 and held["id"] == task["id"] and held["host"] == "rig-b", (status, held)
    assert b.daemon is not None
    os.kill(b.daemon.pid, signal.SIGSTOP)
    c2 = Agent(lane(c), "c2", ("slow",))
    c2.register()
    status, again = c2.claim(wait=30)  # the task comes back only once b's lease + grace have passed
    assert status == 200 and again["id"] == task["id"] and again["fence"] > held["fence"], (status, again)
    assert {h["name"]: h["state"] for h in orch.json("hosts")}["rig-b"] == "lost"
    assert c2.result(again, True, "done on c")[0] == 200
    os.kill(b.daemon.pid, signal.SIGCONT)
    late, _ = b1.result(held, True, "late from b")  # b's daemon answers again; its claim was superseded
    assert late == 409
    final = on_json(a, "task", str(task["id"]))
    assert (final["state"], final["host"], final["result"], final["attempts"]) == ("succeeded", "rig-c",
                                                                                   "done on c", 2), final  # fmt: skip
    wait_until(lambda: {h["name"]: h["state"] for h in orch.json("hosts")}["rig-b"] == "up", 30)  # a new term
    b1.close()
    c2.close()

    # destroyed from the orchestrator: nothing of the tenants' secrets is left on their hosts
    orch("destroy-agent", "t-alpha", "t-beta", "--yes")
    assert jail_processes("t-alpha") == [] and jail_processes("t-beta") == [], (a.ran(), b.ran())
    assert files_holding(a.root, SECRETS["t-alpha"].encode()) == []
    assert files_holding(b.root, SECRETS["t-beta"].encode()) == []


def test_a_hosts_share_of_a_spawn_is_one_remote_process_and_its_steps_stream(rig: Rig, orch: Orchestrator) -> None:
    """Three tenants on host a in one spawn-agent: one spawn_many request, so one remote colibri
    (the per-tenant path started up to spawn_parallelism of them), each tenant's steps shown."""
    import json

    a = rig.hosts["a"]
    added = orch("hosts", "add", "rig-a", "--ssh", f"root@{a.address}", "--host-key", a.host_key_line(),
                 "--command", str(a.command), check=False)  # fmt: skip
    assert added.returncode == 0 or "already" in added.stderr, added.stderr  # enrolled by the other test
    a.start_daemon(**FAST)
    tenants = [f"t-batch-{i}" for i in range(3)]
    for tenant in tenants:
        orch("register-tenant", tenant, "--host", "rig-a", "--collection", "")
    try:
        serves = len([x for _, x in a.ran() if x == "remote serve"])
        spawned = orch("spawn-agent", *tenants, "--json")
        assert spawned.returncode == 0, spawned.stdout
        events = [json.loads(line) for line in spawned.stdout.splitlines()]
        assert events[-1] == {"ok": True, "active": tenants}
        for tenant in tenants:
            done = [e["step"] for e in events if e.get("tenant") == tenant and e.get("state") == "done"]
            assert done == ["jail_created", "jail_started", "secrets_provisioned", "mother_installed",
                            "mother_started"], (tenant, events)  # fmt: skip
            assert orch.json("show-tenant", tenant)["status"] == "active"
        assert len([x for _, x in a.ran() if x == "remote serve"]) == serves + 1
    finally:
        orch("destroy-agent", *tenants, "--yes", check=False)
