"""The whole chain, for real, on the sandbox backend (issue 5, "The whole chain").

register-tenant → spawn-agent (real bubblewrap jail) → vault-provision with the REAL bw CLI
against the Vaultwarden-compatible test server → the .env is 0600 and owned by the jail user →
the real mother skill registers over its own socket with the daemon → heartbeats → a task for its
capability is routed to it and the result comes back → the agent is killed while it holds a
task: it goes stale, then lost, and the task is re-queued → stop, destroy.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, require
from tests.integration.hive_harness import listening, wait_for
from tests.servers.vaultwarden import start
from tests.servers.vaultwarden.bwcli import find_bw

pytestmark = pytest.mark.integration

OP_EMAIL, OP_PASSWORD = "operator@example.org", "chain master password 7"


@dataclass
class Chain:
    env: dict[str, str]
    base: Path
    server: Any
    item: Any

    def colibri(self, *args: str, stdin: str = "", timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "colibri", *args], env=self.env, input=stdin, capture_output=True,
            text=True, timeout=timeout, check=False, cwd=REPO,
        )  # fmt: skip

    def ok(self, *args: str, stdin: str = "") -> Any:
        done = self.colibri(*args, "--json", stdin=stdin)
        assert done.returncode == 0, f"{args}: rc {done.returncode}\n{done.stdout}\n{done.stderr}"
        return json.loads(done.stdout)["data"]


@pytest.fixture(name="chain")
def chain_fixture(tmp_path: Path) -> Iterator[Chain]:
    require(shutil.which("bwrap") is not None, "bubblewrap")
    require(os.geteuid() == 0, "root")
    bw = find_bw()
    require(bw is not None, "the pinned bw CLI (bash tests/setup.sh)")
    server = start()
    operator = server.vault.add_user(OP_EMAIL, OP_PASSWORD)
    org = server.vault.add_org("Hive", owner=operator)
    acme = server.vault.add_collection(org, "acme")
    item = server.vault.add_item(
        acme, "provider", notes="MODEL=deepseek-chat\n", fields={"OPENROUTER_API_KEY": "sk-or-1"}
    )
    server.vault.add_collection(org, "other-tenant")
    (tmp_path / "colibri.toml").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLIBRI_", "BW_", "BITWARDENCLI_"))}
    env.update({
        "COLIBRI_CONFIG": str(tmp_path / "colibri.toml"),
        "COLIBRI_STATE_DIR": str(tmp_path / "state"),
        "COLIBRI_RUN_DIR": str(tmp_path / "run"),
        "COLIBRI_LOG_DIR": str(tmp_path / "log"),
        "COLIBRI_JAIL_BACKEND": "sandbox",
        "COLIBRI_VAULT_URL": server.url,
        "COLIBRI_VAULT_ORGANIZATION_ID": org.id,
        "COLIBRI_VAULT_CA_FILE": str(server.ca_cert_path),
        "COLIBRI_VAULT_CREDENTIALS_DIR": str(tmp_path / "credentials"),
        "COLIBRI_BW_PATH": str(bw),
        "COLIBRI_HEARTBEAT_INTERVAL": "0.5",
        "COLIBRI_AGENT_STALE_AFTER": "2",
        "COLIBRI_AGENT_LOST_AFTER": "4",
        "COLIBRI_TASK_LEASE_SECONDS": "60",
        "COLIBRI_RECONCILE_INTERVAL": "0",
    })  # fmt: skip
    chain = Chain(env, tmp_path, server, item)
    creds = f"{operator.client_id}\n{operator.client_secret}\n{OP_PASSWORD}\n"
    login = chain.colibri("vault", "login", "--files", "--stdin", stdin=creds)
    assert login.returncode == 0, login.stderr
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "colibri", "daemon"], env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log
    )
    try:
        wait_for("the admin socket", lambda: listening(tmp_path / "run" / "admin.sock"), 30)
        yield chain
    finally:
        chain.colibri("destroy-agent", "acme", "--yes")
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=20)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
            log.close()
            server.stop()


def test_the_whole_chain(chain: Chain) -> None:
    # 1. register and spawn: the jail exists, secrets are provisioned from the vault
    assert chain.ok("register-tenant", "acme")["created"] is True
    spawn = chain.colibri("spawn-agent", "acme", "--capability", "echo", "--capability", "sleep", "--json")
    assert spawn.returncode == 0, spawn.stdout + spawn.stderr
    tenant = chain.ok("show-tenant", "acme")
    assert tenant["status"] == "active"
    env_file = Path(tenant["jail_root"]) / "home/agent/.env"
    st = env_file.stat()
    assert oct(st.st_mode & 0o777) == "0o600"
    # The tenant's own agent ids on the host (its block), which are 1001 inside the jail.
    assert tenant["agent_uid"] >= 1_000_000_000 and tenant["agent_uid"] == tenant["uid_base"] + 1001
    assert (st.st_uid, st.st_gid) == (tenant["agent_uid"], tenant["agent_uid"])
    content = env_file.read_text()
    assert "OPENROUTER_API_KEY" in content and "sk-or-1" in content and "MODEL" in content
    for secret in (OP_PASSWORD,):
        assert secret not in content

    # 2. the mother registered over its own socket, with its capabilities, and heartbeats
    agent = wait_for("the agent to register", lambda: chain.ok("agents", "--tenant", "acme"))[0]
    assert agent["state"] == "active"
    assert {c["name"] for c in agent["capabilities"]} == {"echo", "sleep"}
    first_seen = agent["last_seen_at"]
    wait_for("a heartbeat", lambda: chain.ok("agents", "--tenant", "acme")[0]["last_seen_at"] != first_seen, 20)

    # 3. a task for its capability is routed to it and the result comes back
    task = chain.ok("submit-task", "echo", "--payload", '{"hello": "hive"}', "--tenant", "acme", "--wait")
    assert task["state"] == "succeeded"
    assert task["result"] == {"hello": "hive"}

    # 3b. the key is rotated in the vault: the next provision rewrites the .env, and the daemon
    #     tells the running agent with its next heartbeat ("your secrets changed, reload")
    chain.server.vault.set_field(chain.item, "OPENROUTER_API_KEY", "sk-or-2")
    rotated = chain.ok("provision", "acme")
    assert rotated["outcome"] == "written", rotated
    assert "sk-or-2" in env_file.read_text() and "sk-or-1" not in env_file.read_text()
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    mother_log = Path(tenant["jail_root"]) / "var/log/colibri_mother.log"
    wait_for("the agent to reload its secrets", lambda: "secrets changed" in mother_log.read_text(), 30)

    # 4. the agent dies holding a task: stale, then lost, and the task goes back to the queue
    slow = chain.ok("submit-task", "sleep", "--payload", '{"seconds": 300}', "--tenant", "acme")
    wait_for("the slow task to be claimed", lambda: chain.ok("task", str(slow["id"]))["state"] == "running", 30)
    root = Path(tenant["jail_root"])
    pid = int((root / "var/run/colibri_mother.pid").read_text())
    from colibri.adapters.runner import ShRunner
    from colibri.adapters.sandbox.backend import Sandbox
    from colibri.resources import shipped

    sandbox = Sandbox(chain.base / "state" / "jails", shipped("jails"), "agent", ShRunner({"PATH": os.environ["PATH"]}))
    before_kill = {e["seq"] for e in chain.ok("audit", "log", "--tenant", "acme", "--limit", "100000")}
    assert sandbox.exec("acme", ["/bin/kill", "-KILL", str(pid)]).exit_code == 0
    states = []

    def agent_state() -> str:
        state = str(chain.ok("agents", "--tenant", "acme")[0]["state"])
        if not states or states[-1] != state:
            states.append(state)
        return state

    wait_for("the agent to go lost", lambda: agent_state() == "lost", 30)
    assert states[-1] == "lost" and "lost" not in states[:-1]
    # never lost on the first miss: the daemon recorded it stale first (what the polls above see
    # of a 2 s stale window depends on the machine's load; the audit trail has every change)
    changes = [e["action"] for e in chain.ok("audit", "log", "--tenant", "acme", "--limit", "100000")
               if e["seq"] not in before_kill and e["action"] in ("agent.stale", "agent.lost")]  # fmt: skip
    assert changes == ["agent.stale", "agent.lost"], changes
    requeued = chain.ok("task", str(slow["id"]))
    assert requeued["state"] == "queued"
    assert requeued["attempts"] == 1

    # 5. stop, reconcile, destroy
    assert chain.ok("stop-agent", "acme")["status"] == "stopped"
    assert chain.colibri("reconcile").stdout == "no drift\n"
    assert chain.ok("destroy-agent", "acme", "--yes")["status"] == "registered"
    assert not root.exists()
