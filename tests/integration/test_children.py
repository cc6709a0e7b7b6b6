"""Agents that spawn agents (issue 14), for real: the daemon as a process, its agent sockets, the
sandbox backend (bubblewrap jails), the real mother skill, ``colibri spawn-child`` as the daemon
starts it.  One daemon for the module; each test uses its own tenants.
"""

import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colibri.services.policy.admin import PolicyAdmin, PolicyChange
from colibri.store.db import Store
from tests.conftest import require
from tests.integration.as_host import as_host
from tests.integration.hive_harness import Hive, Raw, listening, wait_until

pytestmark = pytest.mark.integration
ECHO = '[{"name": "echo", "version": "1"}]'


@pytest.fixture(scope="module", name="hive")
def hive_fixture() -> Iterator[Hive]:
    import shutil

    require(shutil.which("bwrap") is not None, "bubblewrap")
    require(os.geteuid() == 0, "root")
    hive = Hive({"COLIBRI_JAIL_BACKEND": "sandbox", "COLIBRI_TASK_LEASE_SECONDS": "60"})
    try:
        hive.start()
        yield hive
    finally:
        for tenant in _tenants(hive):  # leave no jail running
            if tenant[1] in ("active", "failed", "spawning", "stopped"):
                hive.colibri("destroy-agent", tenant[0], "--yes", check=False)
        hive.close()


def _tenants(hive: Hive) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(hive.db_path) as conn:
        rows = conn.execute("SELECT tenant_id, status, parent FROM tenants").fetchall()
    conn.close()
    return [(r[0], r[1], r[2]) for r in rows]


def parent(hive: Hive, name: str, policy: PolicyChange | None = None, staged: bool = True) -> None:
    """An active tenant holding echo (as a spawn would leave it), its staged provider.env, its policy."""
    hive.tenant(name)
    with sqlite3.connect(hive.db_path) as conn:
        conn.execute("UPDATE tenants SET capabilities = ? WHERE tenant_id = ?", (ECHO, name))
    conn.close()
    if staged:
        folder = hive.root / "db" / "staged" / name
        folder.mkdir(parents=True, mode=0o700)
        folder.parent.chmod(0o700)
        (folder / "provider.env").write_text(f"PROVIDER_KEY=key-of-{name}\n")
        (folder / "provider.env").chmod(0o600)
    if policy is not None:
        set_policy(hive, name, policy)
    wait_until(lambda: listening(hive.socket(name)))  # the daemon's socket scan opened it


def set_policy(hive: Hive, name: str, policy: PolicyChange) -> None:
    store = Store(f"sqlite:///{hive.db_path}")
    try:
        with as_host(hive.root / "db"):
            PolicyAdmin(store).set(name, policy)
    finally:
        store.close()


def decisions(hive: Hive, tenant: str) -> list[dict[str, Any]]:
    with sqlite3.connect(hive.db_path) as conn:
        rows = conn.execute("SELECT body FROM audit_entries ORDER BY seq").fetchall()
    conn.close()
    entries = [json.loads(r[0]) for r in rows]
    return [e for e in entries if e["action"] == "policy.decide" and e.get("tenant") == tenant]


def ask(hive: Hive, tenant: str, body: dict[str, Any]) -> tuple[int, Any]:
    raw = Raw(hive.socket(tenant))
    try:
        return raw("POST", "/v1/children", body)
    finally:
        raw.close()


def child_state(hive: Hive, tenant: str, child: str) -> dict[str, Any]:
    raw = Raw(hive.socket(tenant))
    try:
        status, view = raw("GET", f"/v1/children/{child}")
    finally:
        raw.close()
    assert status == 200, view
    return dict(view)


def test_a_child_runs_the_whole_chain_takes_a_task_and_cascade_removal_leaves_nothing(hive: Hive) -> None:
    policy = PolicyChange(allowed=True, max_children=2, max_depth=1, rate="100/h", capabilities="echo")
    parent(hive, "queen", policy)
    hive.tenant("other")
    wait_until(lambda: listening(hive.socket("other")))  # the daemon's socket scan opened it
    # a spoofed parent in the body is ignored: the socket decides
    status, answer = ask(hive, "queen", {"agent_id": "main", "parent": "other", "tenant": "other"})
    assert status == 202, answer
    child = answer["child"]
    assert answer["parent"] == "queen" and answer["status"] == "spawning" and answer["poll"] == f"/v1/children/{child}"
    assert not child.startswith("queen") and len(child) == 8
    wait_until(lambda: child_state(hive, "queen", child)["status"] in ("active", "removed"), 180, 0.5)
    view = child_state(hive, "queen", child)
    assert (view["status"], view["reservation_state"], view["failed"]) == ("active", "used", False), view
    shown = json.loads(hive.colibri("show-tenant", child, "--json").stdout)["data"]
    assert shown["parent"] == "queen" and shown["collection_name"] == "queen" and shown["children"] == []
    assert json.loads(hive.colibri("show-tenant", "queen", "--json").stdout)["data"]["children"] == [child]
    assert json.loads(hive.colibri("show-tenant", "other", "--json").stdout)["data"]["children"] == []
    # the same chain as any tenant: its jail, its .env 0600 owned by its own user, its mother registered
    env_file = Path(shown["jail_root"]) / "home/agent/.env"
    info = env_file.stat()
    assert oct(info.st_mode & 0o777) == "0o600" and (info.st_uid, info.st_gid) == (shown["agent_uid"],) * 2
    assert "PROVIDER_KEY='key-of-queen'" in env_file.read_text()  # the lineage root's secrets
    key = f"{child}/{child}-1"
    wait_until(lambda: hive.agent_state(key) == "active", 60)
    done = hive.colibri("submit-task", "echo", "--payload", '{"from": "queen"}', "--tenant", child, "--wait", "--json")
    task = json.loads(done.stdout)["data"]
    assert (task["state"], task["result"], task["agent"]) == ("succeeded", {"from": "queen"}, key)
    tree = json.loads(hive.colibri("agents", "--tree", "--json").stdout)["data"]
    queen = next(n for n in tree if n["tenant"] == "queen")
    assert [(c["tenant"], c["status"], [a["key"] for a in c["agents"]]) for c in queen["children"]] == [
        (child, "active", [key])
    ]
    text = hive.colibri("agents", "--tree").stdout
    assert f"└─ {child}" in text and key in text
    entries = decisions(hive, "queen")
    assert [(e["detail"]["decision"], e["detail"]["rule"]) for e in entries] == [("allow", "allow")]
    for tenant, wanted in (("queen", [child]), ("other", [])):  # each parent sees its own children only
        raw = Raw(hive.socket(tenant))
        listed = raw("GET", "/v1/children")
        assert listed[0] == 200 and [c["child"] for c in listed[1]["children"]] == wanted
        assert raw("GET", f"/v1/children/{child}")[0] == (200 if wanted else 404)
        raw.close()

    # removal: refused while it has children (exit 5, naming them), --cascade removes them all
    refused = hive.colibri("remove-tenant", "queen", check=False)
    assert refused.returncode == 5 and child in refused.stderr and "--cascade" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    removed = hive.colibri("remove-tenant", "queen", "--cascade", "--destroy-jail", "--yes", "--json")
    assert json.loads(removed.stdout)["data"]["children_removed"] == [child]
    assert not Path(shown["jail_root"]).exists()
    with sqlite3.connect(hive.db_path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        left = {}
        for table in tables:
            if table.startswith("audit") or table == "alembic_version":
                continue  # the audit trail keeps the record; it is append-only
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            for column in columns:
                found = conn.execute(f"SELECT count(*) FROM {table} WHERE CAST({column} AS TEXT) LIKE ?",
                                     (f"%{child}%",)).fetchone()[0]  # fmt: skip
                if found:
                    left[f"{table}.{column}"] = found
    conn.close()
    assert left == {}, left
    assert not (hive.root / "db" / "jails" / child).exists()
    wait_until(lambda: not (hive.root / "run" / "agents" / child).exists())
    actions = [e["action"] for e in _entries(hive) if e.get("tenant") in (child, "queen")]
    for wanted in ("policy.decide", "child.register", "policy.bind", "spawn.done", "policy.use", "tenant.cascade",
                   "child.forget", "tenant.remove"):  # fmt: skip
        assert wanted in actions, (wanted, actions)


def _entries(hive: Hive) -> list[dict[str, Any]]:
    with sqlite3.connect(hive.db_path) as conn:
        rows = conn.execute("SELECT body FROM audit_entries ORDER BY seq").fetchall()
    conn.close()
    return [json.loads(r[0]) for r in rows]


def test_denials_answer_403_with_the_rule_and_are_logged(hive: Hive) -> None:
    parent(hive, "lonely", staged=False)  # no policy: self-spawn is off by default
    status, answer = ask(hive, "lonely", {"agent_id": "main"})
    assert status == 403 and answer["rule"] == "default-off" and answer["error"]["code"] == 23, answer
    # more than its parent holds: a capability the parent lacks
    parent(hive, "limited", PolicyChange(allowed=True, max_children=1, rate="100/h", capabilities="*"), staged=False)
    status, answer = ask(hive, "limited", {"agent_id": "main", "capabilities": ["sleep"]})
    assert status == 403 and answer["rule"] == "parent-capabilities", answer
    # over quota: none allowed
    set_policy(hive, "limited", PolicyChange(max_children=0))
    status, answer = ask(hive, "limited", {"agent_id": "main", "capabilities": ["echo"]})
    assert status == 403 and answer["rule"] == "max-children", answer
    # depth exceeded: a child (depth 1) of a max-depth-1 lineage asks for a grandchild
    parent(hive, "elder", PolicyChange(allowed=True, max_children=5, max_depth=1, rate="100/h", capabilities="*"),
           staged=False)  # fmt: skip
    hive.tenant("young")
    with sqlite3.connect(hive.db_path) as conn:  # a child of elder, as a used reservation leaves it
        conn.execute("UPDATE tenants SET parent = 'elder', capabilities = ? WHERE tenant_id = 'young'", (ECHO,))
        now = time.time()
        conn.execute("INSERT INTO spawn_reservations (id, parent, agent_id, state, child, depth, request, created_at, "
                     "expires_at, updated_at) VALUES ('r-young', 'elder', 'main', 'used', 'young', 1, '{}', ?, ?, ?)",
                     (now, now + 900, now))  # fmt: skip
    conn.close()
    set_policy(hive, "young", PolicyChange(allowed=True, max_children=1, max_depth=0, rate="100/h"))
    wait_until(lambda: listening(hive.socket("young")))
    status, answer = ask(hive, "young", {"agent_id": "main"})
    assert status == 403 and answer["rule"] == "max-depth", answer
    # a body that is not a request: 400, nothing decided, nothing echoed raw
    status, answer = ask(hive, "elder", {"agent_id": "main\x1b[2J", "capabilities": ["x"] * 500})
    assert status == 400 and "\x1b" not in json.dumps(answer, ensure_ascii=False)
    assert [e["detail"]["rule"] for e in decisions(hive, "lonely")] == ["default-off"]
    assert [e["detail"]["rule"] for e in decisions(hive, "limited")] == ["max-children"]
    assert [e["detail"]["rule"] for e in decisions(hive, "young")] == ["max-depth"]
    assert decisions(hive, "elder") == []
    assert any(e["action"] == "child.deny" and e.get("tenant") == "limited" for e in _entries(hive))


def test_a_flood_from_one_agent_leaves_the_daemon_and_another_tenants_agent_working(hive: Hive) -> None:
    parent(hive, "flooder", staged=False)
    hive.tenant("calm")
    wait_until(lambda: listening(hive.socket("calm")))
    mother = hive.mother("calm", "calm-1")
    wait_until(lambda: hive.agent_state("calm/calm-1") == "active")
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def flood() -> None:
        raw = Raw(hive.socket("flooder"), timeout=30)
        try:
            for _ in range(60):
                try:
                    status, _ = raw("POST", "/v1/children", {"agent_id": "main"})
                except OSError:
                    raw.close()
                    raw = Raw(hive.socket("flooder"), timeout=30)
                    status = 0
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
        finally:
            raw.close()

    threads = [threading.Thread(target=flood) for _ in range(8)]
    for thread in threads:
        thread.start()
    done = hive.colibri("submit-task", "echo", "--payload", '{"n": 1}', "--tenant", "calm", "--wait", "--json")
    for thread in threads:
        thread.join(120)
    assert json.loads(done.stdout)["data"]["state"] == "succeeded"  # a claim answered during the flood
    assert set(statuses) <= {403, 429, 503, 0} and statuses.get(403, 0) > 0, statuses
    assert hive.daemon is not None and hive.daemon.poll() is None
    assert hive.agent_state("calm/calm-1") == "active"  # its heartbeats kept being answered
    mother.send_signal(signal.SIGTERM)
    mother.wait(15)


def test_a_killed_spawner_or_daemon_converges_the_child_is_spawned_or_its_place_released(hive: Hive) -> None:
    parent(hive, "phoenix", PolicyChange(allowed=True, max_children=2, max_depth=1, rate="100/h", capabilities="echo"))
    status, answer = ask(hive, "phoenix", {"agent_id": "main"})
    assert status == 202, answer
    child = answer["child"]
    killed = wait_until(lambda: _kill_spawner(child), 30, 0.01)
    assert killed
    # the daemon's children loop starts it again: the reservation ends used, never leaked
    wait_until(lambda: child_state(hive, "phoenix", child)["reservation_state"] in ("used", "released"), 180, 0.5)
    view = child_state(hive, "phoenix", child)
    assert (view["status"], view["reservation_state"]) in (("active", "used"), ("removed", "released")), view
    log = (hive.root / "log" / "children.log").read_text(errors="replace")
    assert f"child {child}:" in log
    # the daemon killed between the decision and the spawn: its spawner goes on, or the restarted
    # daemon's loop starts one; the reservation ends used or released all the same
    status, answer = ask(hive, "phoenix", {"agent_id": "main"})
    assert status == 202, answer
    second = answer["child"]
    assert hive.stop(signal.SIGKILL) == -signal.SIGKILL
    hive.start()
    wait_until(lambda: listening(hive.socket("phoenix")))
    wait_until(lambda: child_state(hive, "phoenix", second)["reservation_state"] in ("used", "released"), 180, 0.5)
    view = child_state(hive, "phoenix", second)
    assert (view["status"], view["reservation_state"]) in (("active", "used"), ("removed", "released")), view
    removed = hive.colibri("remove-tenant", "phoenix", "--cascade", "--destroy-jail", "--yes", "--json")
    assert set(json.loads(removed.stdout)["data"]["children_removed"]) == {child, second}
    assert [t for t in _tenants(hive) if t[0] in (child, second)] == []


def _kill_spawner(child: str) -> bool:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"spawn-child" in argv and child.encode() in argv:
            try:
                os.killpg(int(proc.name), signal.SIGKILL)  # the spawner and what it started
            except ProcessLookupError:
                return False
            time.sleep(0.05)
            return True
    return False
