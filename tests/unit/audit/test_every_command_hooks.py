"""Done when (issue 12): every state-changing command and API route writes its audit entry.

The test walks typer's command tree (every command and subcommand, hidden ones too) and the
routes of docs/openapi.yaml.  Each is either run for real here (the CLI through
``colibri.cli.app.run`` with the fake jail backend at its seam; a route through the hive
service call its handler makes, under the actor the API gives its socket) and must write the
entries named, or is in READ_ONLY (run, and must write none), or in NOT_YET (listed with why:
the gap is explicit, and shrinking it is the next work).  A command or route in none of them
fails the test: a new one cannot skip the audit unseen.
"""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
import yaml
from sqlalchemy import text

from colibri.audit import origin
from colibri.cli.context import Adapters
from colibri.daemon.api import actor_of
from colibri.services.hive.rules import AgentRef, Policy, Scope
from colibri.services.hive.service import HiveService
from colibri.settings import load_settings
from colibri.store.db import Store
from tests.conftest import REPO
from tests.unit.hosts.conftest import ROOT, HostJails

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE4z4LQ3pyYgCuJhCqv6k1D1T8xKq4Q0d1vQ8w5sJ2sQ"

# command -> (argv, the actions its run must record, in order among its entries)
AUDITED: dict[str, tuple[list[str], list[str]]] = {
    "register-tenant": (["register-tenant", "acme"], ["tenant.register"]),
    "set-tier": (["set-tier", "acme", "community"], ["tenant.tier"]),  # issue 13
    "spawn-agent": (["spawn-agent", "acme"], ["spawn.begin", "spawn.step", "secrets.provision", "spawn.done"]),
    "provision": (["provision", "acme"], ["secrets.provision"]),
    "stop-agent": (["stop-agent", "acme"], ["agent.stop"]),
    "start-agent": (["start-agent", "acme"], ["agent.start"]),
    "reconcile": (["reconcile", "--apply"], ["reconcile.repair"]),
    "destroy-agent": (["destroy-agent", "acme", "--yes"], ["agent.destroy"]),
    "remove-tenant": (["remove-tenant", "acme"], ["tenant.remove"]),
    "release-agent": (["release-agent", "zeta"], ["agent.release"]),  # zeta's jail adopted first (below)
    "hosts add": (["hosts", "add", "osa", "--ssh", "root@127.0.0.1:1", "--host-key", HOST_KEY], ["host.add"]),
    "hosts check": (["hosts", "check", "osa"], ["host.check"]),
    "hosts remove": (["hosts", "remove", "osa"], ["host.remove"]),
    "audit keys": (["audit", "keys", "--rotate"], ["audit.key_rotate"]),  # alone it only shows them
    "policy set": (["policy", "set", "acme", "--allow", "--max-children", "2"], ["policy.set"]),
    "policy global": (["policy", "global", "--forbid"], ["policy.global"]),  # alone it only shows the switch
}
READ_ONLY: dict[str, list[str]] = {
    "version": ["version"],
    "config show": ["config", "show"],
    "list-tenants": ["list-tenants"],
    "show-tenant": ["show-tenant", "acme"],
    "hosts": ["hosts"],  # alone: hosts list
    "hosts list": ["hosts", "list"],
    "hosts show": ["hosts", "show", "osa"],
    "vault status": ["vault", "status"],
    "vault check": ["vault", "check"],
    # through the daemon's admin socket: the daemon's routes record (below); no daemon runs here
    "agents": ["agents"],
    "tasks": ["tasks"],
    "task": ["task", "1"],
    "daemon status": ["daemon", "status"],
    # the audit's own reads: export signs a checkpoint (a signature, not an entry), verify is offline
    "audit log": ["audit", "log"],
    "audit export": ["audit", "export", "{tmp}/bundle.jsonl"],
    "audit prove": ["audit", "prove", "1"],
    "audit verify": ["audit", "verify", "{tmp}/bundle.jsonl", "--key", "{tmp}/keys"],
    # issue 13: a host's reads of the skills repository (none configured here: each says why)
    "skills list": ["skills", "list"],
    "skills show": ["skills", "show", "mail"],
    "skills verify": ["skills", "verify", "mail"],
    "policy show": ["policy", "show", "acme"],
    "policy decisions": ["policy", "decisions", "acme"],
}
NOT_YET: dict[str, str] = {
    "spawn-local": "records through the same pipeline (spawn.*) as spawn-agent; not run here: it needs a local home",
    "move-tenant": "needs a second host: tests/unit/audit/test_hosts_hooks.py runs it (tenant.move, remote.*)",
    "vault login": "needs a vault: test_audit_hooks.py's vault test runs its service at the Bitwarden seam",
    "daemon": "the daemon itself: its routes and loops record, each checked below",
    "remote serve": "serves another host's ops, each the local services' own changes (their entries)",
    "submit-task": "the POST /v1/tasks route (below), through the daemon",
    "register-lane": "the POST /v1/lanes/{lane} route (below), through the daemon",
    # issue 13: these need key files and bundles; tests/unit/skills/test_skills_cli.py runs each and
    # checks its entry (skills.trust, skills.allow, skills.delegate, skills.revoke, skills.publish)
    "skills trust": "tests/unit/skills/test_skills_cli.py (skills.trust)",
    "skills allow": "tests/unit/skills/test_skills_cli.py (skills.allow)",
    "skills delegate": "tests/unit/skills/test_skills_cli.py (skills.delegate)",
    "skills revoke": "tests/unit/skills/test_skills_cli.py (skills.revoke)",
    "skills publish": "tests/unit/skills/test_skills_cli.py (skills.publish)",
    "skills keygen": "writes a key pair on the offline signing machine: no host state",
    "skills build": "writes a bundle file on the signing machine: no host state",
    "skills sign": "writes a bundle's .sig on the signing machine: no host state",
    "spawn-child": "the daemon runs it for a child (spawn.*, policy.use or child.discard): "
    "tests/integration/test_children.py checks its entries",
}


def command_paths() -> set[str]:
    from colibri.cli.app import app

    root = typer.main.get_command(app)
    found: set[str] = set()

    def walk(command: object, prefix: str) -> None:
        subcommands = getattr(command, "commands", None)
        if prefix and (not subcommands or getattr(command, "invoke_without_command", False)):
            found.add(prefix)
        for name, sub in (subcommands or {}).items():
            walk(sub, f"{prefix} {name}".strip())

    walk(root, "")
    return found


def audit_rows(url: str) -> list[dict[str, object]]:
    store = Store(url)
    try:
        with store.engine.connect() as conn:
            return [json.loads(r[0]) for r in conn.execute(text("SELECT body FROM audit_entries ORDER BY host, seq"))]
    finally:
        store.close()


@pytest.fixture(name="cli")
def cli_fixture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str]]:
    skills = tmp_path / "skills"
    (skills / "mother/handlers").mkdir(parents=True)
    (skills / "mother/mother.py").write_text("# the fake's jails run their own mother\n")
    monkeypatch.setenv("COLIBRI_SKILLS_DIR", str(skills))
    staged = tmp_path / "colibri-home/db/staged/acme"  # the provider.env that needs no vault
    staged.mkdir(mode=0o700, parents=True)
    staged.parent.chmod(0o700)
    (staged / "provider.env").write_text("OPENROUTER_API_KEY=sk-test-never-in-the-audit\n")
    (staged / "provider.env").chmod(0o600)
    monkeypatch.setenv("COLIBRI_SECRETS_ALLOWED_ROOTS", json.dumps([str(tmp_path / "jails")]))
    fake = HostJails(tmp_path / "jails", host_ids=ROOT)  # under a real backend's name: the .env rules apply
    from colibri.cli.app import run

    def cli(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = run(list(args), adapters=Adapters(jail_backend=fake))
        return code, capsys.readouterr().err

    cli.fake = fake  # type: ignore[attr-defined]
    return cli


def test_every_command_writes_its_entries_or_is_read_only(cli: Callable[..., tuple[int, str]], tmp_path: Path) -> None:
    commands = command_paths()
    listed = set(AUDITED) | set(READ_ONLY) | set(NOT_YET)
    assert sorted(commands - listed) == [], "a command in no list: audit it here, or say why it changes nothing"
    assert sorted(listed - commands) == [], "a listed command that no longer exists"
    url = load_settings(None)[0].database
    seen = 0
    for name, (argv, wanted) in AUDITED.items():
        if name == "reconcile":
            cli.fake.stop("acme")  # type: ignore[attr-defined]  # a drift to repair: an active tenant's jail stopped
        if name == "release-agent":  # an adopted jail to hand back (the adoption records spawn.adopt)
            assert cli("register-tenant", "zeta", "--collection", "")[0] == 0
            root = cli.fake.add_foreign("zeta")  # type: ignore[attr-defined]
            assert cli("spawn-agent", "zeta", "--jail-name", "zeta", "--jail-root", str(root))[0] == 0
            adopted = [r["action"] for r in audit_rows(url)[seen:]]
            assert "spawn.adopt" in adopted and "spawn.done" in adopted, adopted
            seen = len(audit_rows(url))
        code, err = cli(*argv)
        assert code == 0 or name == "hosts check", (name, err)  # a check of an unreachable host fails, recorded
        rows = audit_rows(url)
        new = [r["action"] for r in rows[seen:]]
        remaining = iter(new)
        assert all(action in remaining for action in wanted), (name, new)  # in this order, among the entries
        assert all(r["actor"] == origin.operator_actor() for r in rows[seen:]), name
        seen = len(rows)
        for ro_name, ro_argv in READ_ONLY.items():  # the read-only ones, at every stage: nothing written
            cli(*[arg.replace("{tmp}", str(tmp_path)) for arg in ro_argv])
            assert len(audit_rows(url)) == seen, (ro_name, "wrote an audit entry")


# route -> the hive service call its handler makes, and the actions it must record
ROUTES_AUDITED = {
    "POST /v1/agent/register", "POST /v1/agent/deregister", "POST /v1/tasks", "POST /v1/tasks/claim",
    "POST /v1/tasks/{task_id}/result", "POST /v1/lanes/{lane}", "POST /v1/children",
}  # fmt: skip
READS = (
    "/health",
    "/metrics",
    "/v1/tasks/{task_id}",
    "/v1/tasks",
    "/v1/agents",
    "/v1/children",
    "/v1/children/{child}",
)
ROUTES_READ_ONLY = {f"{method} {path}" for method in ("GET", "HEAD") for path in READS}
ROUTES_NOT_STORED = {
    "POST /v1/agent/heartbeat": "no state change (the issue: never each heartbeat); liveness changes are",
    "POST /v1/tenants/{tenant}/socket": "opens the daemon's socket for a tenant (runtime, rebuilt from the store)",
    "DELETE /v1/tenants/{tenant}/socket": "closes the daemon's socket for a tenant (runtime, rebuilt from the store)",
    "POST /v1/tenants/{tenant}/actions": "queues reload-secrets for the tenant's live agents (in memory)",
}


def openapi_routes() -> set[str]:
    spec = yaml.safe_load((REPO / "docs/openapi.yaml").read_text())
    paths = spec["paths"].items()
    return {f"{method.upper()} {path}" for path, item in paths for method in item if method != "parameters"}


def test_every_route_writes_its_entries_or_changes_no_stored_state(db_url: str) -> None:
    routes = openapi_routes()
    listed = ROUTES_AUDITED | ROUTES_READ_ONLY | set(ROUTES_NOT_STORED)
    assert sorted(routes - listed) == [] and sorted(listed - routes) == []
    from tests.unit.daemon.hive_world import active_tenants

    store = active_tenants(db_url, {"acme": "osa"})
    acme, admin = Scope("tenant", "acme"), Scope("admin")
    echo = [{"name": "echo", "version": "1"}]
    try:
        hive = HiveService(store, Policy())

        def rows() -> list[dict[str, object]]:
            with store.engine.connect() as conn:
                found = conn.execute(text("SELECT body FROM audit_entries WHERE host = 'osa' ORDER BY seq"))
                return [json.loads(r[0]) for r in found]

        def route(scope: Scope, call: Callable[[], object], wanted: list[str]) -> object:
            before = len(rows())
            with origin.acting(actor_of(scope), host="osa"):
                answer = call()
            assert [r["action"] for r in rows()[before:]] == wanted, wanted
            return answer

        route(acme, lambda: hive.register(acme, "a1", echo, "1"), ["agent.register"])
        task = route(acme, lambda: hive.submit(acme, "echo", {"n": 1}), ["task.submit"])
        assert rows()[-1]["actor"] == "tenant:acme"
        route(admin, lambda: hive.task(admin, task["id"]), [])  # type: ignore[index]
        route(admin, lambda: hive.tasks(), [])
        route(admin, lambda: hive.agents(), [])
        ref = AgentRef("acme/a1", "acme", None, frozenset({"echo"}))
        lease = route(acme, lambda: hive.claim(ref), ["task.claim"])
        report = (acme, "acme/a1", lease["id"], lease["lease"], True, 1, None, 0, None)  # type: ignore[index]
        route(acme, lambda: hive.finish_many([report]), ["task.complete"])
        route(acme, lambda: hive.deregister("acme/a1"), ["agent.leave"])
        route(admin, lambda: hive.declare_lane("shared"), ["lane.declare"])
        assert rows()[-1]["actor"] == "operator:admin-socket"
        from colibri.services.children.service import Ask, ChildService
        from colibri.services.policy.admin import PolicyAdmin, PolicyChange
        from colibri.services.policy.service import SpawnPolicyService

        children = ChildService(store, SpawnPolicyService(store), "osa")
        ask = Ask("a1", (), None, (), None)
        denied = route(acme, lambda: children.ask("acme", ask, actor="agent:acme/a1"), ["policy.decide"])
        assert denied.allowed is False  # type: ignore[attr-defined]
        with origin.acting("operator:test", host="osa"):
            PolicyAdmin(store).set("acme", PolicyChange(allowed=True))
        made = ["policy.decide", "child.register", "child.bind", "policy.bind"]
        child = route(acme, lambda: children.ask("acme", ask, actor="agent:acme/a1"), made)
        route(acme, lambda: children.children("acme"), [])
        route(acme, lambda: children.child("acme", child.child), [])  # type: ignore[attr-defined]
        assert [r["actor"] for r in rows() if r["action"] in ("task.claim", "task.complete")] == ["agent:acme/a1"] * 2
    finally:
        store.close()
