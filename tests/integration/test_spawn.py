"""The spawn pipeline on the real sandbox backend, through the CLI.

The mother skill here is a stand-in that only stays up (skills_dir points at it): these tests are
about the pipeline (steps, resume, faults, adoption, locks) where the real backend matters.  The
state machine's every case runs on the fake backend in tests/unit/lifecycle (a refused template
or capability, a cut at every step, remove-tenant, a batch's failures); the real mother skill
runs in the end-to-end test of the whole chain.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from colibri.adapters.jail import UID_BLOCK
from colibri.adapters.sandbox import userns
from tests.conftest import (
    Invoke,
    require,
)

STAND_IN = """\
import json, sys, time
identity = json.load(open(sys.argv[sys.argv.index("--identity") + 1]))
print("stand-in mother up for", identity["tenant"], flush=True)
print("ready: identity read and .env checked", flush=True)
while True:
    time.sleep(1)
"""


@pytest.fixture(autouse=True)
def sandbox_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import shutil

    require(shutil.which("bwrap") is not None, "bubblewrap")
    require(os.geteuid() == 0, "root")
    skills = tmp_path / "skills"
    (skills / "mother/handlers").mkdir(parents=True)
    (skills / "mother/mother.py").write_text(STAND_IN)
    echo = skills / "mother/handlers/echo"
    echo.write_text("#!/bin/sh\ncat\n")
    echo.chmod(0o755)
    monkeypatch.setenv("COLIBRI_SKILLS_DIR", str(skills))
    monkeypatch.setenv("COLIBRI_JAIL_BACKEND", "sandbox")
    return skills


@pytest.fixture(autouse=True)
def stop_all_jails(invoke: Invoke) -> object:
    """Leave no jail running, whatever state a test (or a kill -9) left the store in."""
    from colibri.cli.context import Context

    yield None
    code, out, _ = invoke("list-tenants", "--json")
    for tenant in json.loads(out)["data"] if code == 0 else []:
        if tenant["status"] in ("active", "failed", "spawning", "stopped"):
            invoke("destroy-agent", tenant["tenant_id"], "--yes")
    backend = Context().backend()
    for jail in backend.list_jails():
        if jail.state.value == "running":
            backend.stop(jail.name)


def tenant(invoke: Invoke, name: str) -> dict[str, object]:
    code, out, err = invoke("show-tenant", name, "--json")
    assert code == 0, err
    record: dict[str, object] = json.loads(out)["data"]
    return record


def jail_ps(name: str) -> str:
    from colibri.cli.context import Context

    return Context().backend().exec(name, ["/bin/sh", "-c", "ps -eo user,args"]).out


def test_spawn_reconcile_destroy(invoke: Invoke) -> None:
    assert invoke("register-tenant", "demo", "--collection", "")[0] == 0
    code, out, err = invoke("spawn-agent", "demo", "--capability", "echo", "--json")
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    done = [e["step"] for e in events if e.get("state") == "done"]
    assert done == ["jail_created", "jail_started", "secrets_provisioned", "mother_installed", "mother_started"]
    assert events[-1] == {"ok": True, "active": ["demo"]}
    record = tenant(invoke, "demo")
    assert (record["status"], record["spawn_step"], record["backend"]) == ("active", "active", "sandbox")
    assert record["capabilities"] == [{"name": "echo", "version": "1"}]
    ps = jail_ps("demo")
    assert "agent " in ps and "mother.py --identity /usr/local/etc/colibri/agent.json" in ps
    root = Path(str(record["jail_root"]))
    identity = json.loads((root / "usr/local/etc/colibri/agent.json").read_text())
    assert identity["tenant"] == "demo" and identity["socket"] == "/var/run/colibri/agent.sock"
    assert invoke("reconcile") == (0, "no drift\n", "")
    again = invoke("spawn-agent", "demo")  # converges: nothing to do, still one agent
    assert again[0] == 0
    assert jail_ps("demo").count("mother.py") == 1
    assert invoke("destroy-agent", "demo", "--yes")[0] == 0
    assert not root.exists()
    assert tenant(invoke, "demo")["status"] == "registered"


def test_failure_marks_failed_and_a_rerun_converges(invoke: Invoke, sandbox_env: Path) -> None:
    invoke("register-tenant", "demo", "--collection", "")
    mother = sandbox_env / "mother/mother.py"
    mother.write_text("import sys\nsys.exit('refusing: no .env')\n")
    code, _, err = invoke("spawn-agent", "demo")
    assert code == 17  # MotherNotReady
    assert "the mother skill exited right after starting in jail demo" in err
    record = tenant(invoke, "demo")
    assert record["status"] == "failed"
    assert record["spawn_step"] == "mother_installed"
    assert "mother skill exited" in str(record["last_error"])
    mother.write_text(STAND_IN)
    assert invoke("spawn-agent", "demo")[0] == 0
    assert tenant(invoke, "demo")["status"] == "active"


def test_unknown_template_and_capability_without_handler(invoke: Invoke) -> None:
    invoke("register-tenant", "demo", "--collection", "")
    code, _, err = invoke("spawn-agent", "demo", "--template", "colibri/nope")
    assert (code, err) == (4, f"colibri: template not found: colibri/nope (sandbox templates live in {_jails()})\n")
    assert tenant(invoke, "demo")["status"] == "failed"
    code, _, err = invoke("spawn-agent", "demo", "--template", "colibri/agent", "--capability", "paint")
    assert code == 7
    assert "no handler for capability paint" in err
    assert invoke("spawn-agent", "demo", "--capability", "../x")[0] == 7


def test_destroy_and_remove_several_tenants_each_on_its_own(invoke: Invoke) -> None:
    for name in ("ant", "bee"):
        invoke("register-tenant", name, "--collection", "")
    assert invoke("spawn-agent", "ant", "bee")[0] == 0
    roots = [Path(str(tenant(invoke, t)["jail_root"])) for t in ("ant", "bee")]
    code, out, err = invoke("destroy-agent", "ant", "ghost", "bee", "--yes", "--json")
    assert code == 4, err  # ghost: TenantNotFound; ant and bee destroyed all the same
    document = json.loads(out)
    assert document["ok"] is False and document["error"]["code"] == 4
    assert [(i["tenant_id"], i["outcome"]) for i in document["data"]] == [
        ("ant", "destroyed"),
        ("ghost", "failed"),
        ("bee", "destroyed"),
    ]
    assert not any(root.exists() for root in roots)
    assert {tenant(invoke, t)["status"] for t in ("ant", "bee")} == {"registered"}
    code, out, _ = invoke("destroy-agent", "ant", "--from-file", "/dev/null", "--yes")
    assert (code, out) == (0, "1 unchanged (of 1 tenants)\n")  # no jail left to destroy
    assert invoke("spawn-agent", "ant")[0] == 0
    code, out, _ = invoke("remove-tenant", "ant", "bee", "--destroy-jail", "--yes")
    assert (code, out) == (0, "2 removed (of 2 tenants)\n")
    assert {tenant(invoke, t)["status"] for t in ("ant", "bee")} == {"removed"}


def _jails() -> Path:
    from colibri.resources import shipped

    return shipped("jails")


def test_a_foreign_jail_is_refused_then_adopted_and_never_destroyed(invoke: Invoke, tmp_path: Path) -> None:
    from colibri.cli.context import Context

    invoke("register-tenant", "demo", "--collection", "")
    sandbox = Context().backend()
    root = sandbox.root("demo")
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nagent:x:1001:1001::/home/agent:/bin/sh\n")
    for rel in ("etc/rc.d", "usr/local", "home/agent", "tmp"):
        (root / rel).mkdir(parents=True, exist_ok=True)
    (root / "etc/rc").write_text((_jails() / "agent/sandbox/etc/rc").read_text())
    (root / "etc/rc.d/colibri_mother").write_text((_jails() / "agent/sandbox/etc/rc.d/colibri_mother").read_text())
    (root / "etc/rc.d/colibri_mother").chmod(0o755)
    for top in ("bin", "lib", "lib64", "sbin"):
        if Path("/" + top).is_symlink():
            (root / top).symlink_to(Path("/" + top).readlink())
    code, _, err = invoke("spawn-agent", "demo")
    assert code == 5 and "colibri did not create it" in err
    link = tmp_path / "link"
    link.symlink_to(root)
    code, _, err = invoke("spawn-agent", "demo", "--jail-name", "demo", "--jail-root", str(link))
    assert code == 11 and "is a symlink" in err
    code, _, err = invoke("spawn-agent", "demo", "--jail-name", "demo", "--jail-root", str(tmp_path))
    assert code == 11 and "its root is" in err
    # On host ids its root would be host root: refused, not run.
    code, _, err = invoke("spawn-agent", "demo", "--jail-name", "demo", "--jail-root", str(root))
    assert code == 11 and "never runs a jail whose root would be a host account" in err, err
    # Its tree moved onto a block of ids of its own: adopted, and that block is recorded as the tenant's.
    base = 1_000_000_000 + 12_345 * UID_BLOCK
    userns.shift_tree(root, base)
    code, _, err = invoke("spawn-agent", "demo", "--jail-name", "demo", "--jail-root", str(root))
    assert code == 0, err
    record = tenant(invoke, "demo")
    assert (record["adopted"], record["uid_base"], record["agent_uid"]) == (True, base, base + 1001)
    code, _, err = invoke("destroy-agent", "demo", "--yes")
    assert code == 5 and "adopted" in err and "colibri release-agent demo" in err
    assert root.exists()
    code, out, err = invoke("release-agent", "demo")
    assert (code, err) == (0, "")
    assert out.startswith("released the adopted jail of demo; removed: the mother (stopped), ")
    assert root.exists() and "mother.py" not in jail_ps("demo")  # the jail stays; colibri's agent is gone
    record = tenant(invoke, "demo")
    assert (record["status"], record["adopted"], record["jail_root"]) == ("registered", False, None)
    assert record["uid_base"] == base  # kept: never given to another tenant while the row exists
    assert invoke("remove-tenant", "demo")[0] == 0
    Context().backend().stop("demo")


def test_parallel_spawns_of_different_tenants(invoke: Invoke) -> None:
    for name in ("ant", "bee", "cow"):
        invoke("register-tenant", name, "--collection", "")
    code, out, err = invoke("spawn-agent", "ant", "bee", "cow")
    assert code == 0, err
    assert out.splitlines()[-1] == "active: ant bee cow"
    assert {t["status"] for t in json.loads(invoke("list-tenants", "--json")[1])["data"]} == {"active"}


def test_two_spawns_of_one_tenant_at_once(invoke: Invoke) -> None:
    invoke("register-tenant", "demo", "--collection", "")
    results: list[int] = []

    def spawn() -> None:
        results.append(subprocess.run(_cli("spawn-agent", "demo"), capture_output=True, check=False).returncode)

    threads = [threading.Thread(target=spawn) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) in ([0, 0], [0, 5])  # the loser is told another spawn holds the tenant
    assert tenant(invoke, "demo")["status"] == "active"
    assert jail_ps("demo").count("mother.py") == 1


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "colibri", *args]


@pytest.mark.parametrize("step", ["mother_installed"])  # every step: tests/unit/lifecycle, on the fake
def test_kill_9_at_a_step_boundary_then_rerun_converges(invoke: Invoke, step: str) -> None:
    invoke("register-tenant", "demo", "--collection", "")
    proc = subprocess.Popen(_cli("spawn-agent", "demo", "--capability", "echo", "--json"), stdout=subprocess.PIPE)
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("step") == step and event.get("state") == "done":
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    proc.stdout.close()
    assert proc.returncode in (-signal.SIGKILL, 0)
    code, _, err = invoke("spawn-agent", "demo")
    assert code == 0, err
    record = tenant(invoke, "demo")
    assert (record["status"], record["spawn_step"]) == ("active", "active")
    assert jail_ps("demo").count("mother.py") == 1
    assert invoke("reconcile") == (0, "no drift\n", "")


def test_start_agent_fails_when_the_mother_refuses(invoke: Invoke, sandbox_env: Path) -> None:
    invoke("register-tenant", "demo", "--collection", "")
    assert invoke("spawn-agent", "demo")[0] == 0
    assert invoke("stop-agent", "demo")[0] == 0
    (sandbox_env / "mother/mother.py").write_text("import sys\nsys.exit('refusing: .env is not 0600')\n")
    invoke("spawn-agent", "demo")  # re-installs the (now refusing) skill into the jail; fails
    invoke("stop-agent", "demo")
    code, _, err = invoke("start-agent", "demo")
    assert code == 17  # MotherNotReady: the agent is not active, and the jail is stopped again
    assert "refusing: .env is not 0600" in err and "jail demo was stopped again" in err
    assert tenant(invoke, "demo")["status"] == "stopped"


def test_reconcile_reports_then_repairs_drift(invoke: Invoke) -> None:
    from colibri.cli.context import Context
    from colibri.daemon.reconcile import daemon_reconcile

    for name in ("demo", "gone"):
        invoke("register-tenant", name, "--collection", "")
        assert invoke("spawn-agent", name)[0] == 0
    context = Context()
    backend = context.backend()
    backend.stop("demo")  # behind colibri's back: the tenant is still active
    backend.stop("gone")
    shutil.rmtree(backend.root("gone").parent)  # and this jail vanished altogether
    drifts = daemon_reconcile(context.settings, context.store)  # what the daemon's loop logs
    assert sorted((d["kind"], d["jail"]) for d in drifts) == [("missing_jail", "gone"), ("stopped_jail", "demo")]
    code, out, _ = invoke("reconcile", "--json")  # dry run by default: nothing changed
    assert code == 0 and len(json.loads(out)["data"]) == 2
    assert backend.info("demo").state.value == "stopped"
    code, out, _ = invoke("reconcile", "--apply", "--json")
    assert code == 0
    assert all(d["applied"] for d in json.loads(out)["data"])
    assert backend.info("demo").state.value == "running"
    assert "mother.py" in jail_ps("demo")
    assert tenant(invoke, "gone")["status"] == "failed"
    assert invoke("reconcile") == (0, "no drift\n", "")
    context.close()


def test_each_tenant_runs_on_its_own_ids_and_only_its_agent_reaches_its_socket(invoke: Invoke) -> None:
    from colibri.cli.context import Context

    for name in ("ant", "bee"):
        invoke("register-tenant", name, "--collection", "")
    # A refused create leaves nothing half made: no jail, and the same block on the next try.
    assert invoke("spawn-agent", "ant", "--template", "colibri/nope")[0] == 4
    refused = tenant(invoke, "ant")
    assert refused["status"] == "failed" and not Path(Context().settings.jails_dir / "ant").exists()
    code, _, err = invoke("spawn-agent", "ant", "bee", "--template", "colibri/agent")
    assert code == 0, err
    ant, bee = tenant(invoke, "ant"), tenant(invoke, "bee")
    assert ant["uid_base"] == refused["uid_base"]
    assert isinstance(ant["agent_uid"], int) and isinstance(bee["agent_uid"], int)
    assert ant["agent_uid"] != bee["agent_uid"] and min(ant["agent_uid"], bee["agent_uid"]) >= 1_000_000_000
    run_dir = Context().settings.run_dir
    assert (run_dir / "agents").stat().st_mode & 0o777 == 0o711
    for record in (ant, bee):
        st = (run_dir / "agents" / str(record["tenant_id"])).stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, record["agent_uid"], 0o750)
    # On the host, each jail's mother runs as its tenant's agent_uid, not a shared 1001.
    owners = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"mother.py" in (proc / "cmdline").read_bytes():
                status = (proc / "status").read_text()
                uid = int(next(ln for ln in status.splitlines() if ln.startswith("Uid:")).split()[1])
                owners[int(proc.name)] = uid
        except OSError:
            continue
    assert {ant["agent_uid"], bee["agent_uid"]} <= set(owners.values()), owners
    assert 1001 not in owners.values()


def test_the_jails_rc_answers_like_rc_subr_and_start_after_stop_converges(invoke: Invoke) -> None:
    """The jail's rc starts the mother at boot, so start-agent after stop-agent finds it running:
    the rc.d script answers a second start like rc.subr ("already running?", exit 1) and colibri
    asks its status first instead of failing on that (issue 9 defect 2)."""
    from colibri.cli.context import Context

    invoke("register-tenant", "demo", "--collection", "")
    assert invoke("spawn-agent", "demo")[0] == 0
    backend = Context().backend()
    rc = ["/bin/sh", "/etc/rc.d/colibri_mother"]
    pid = (backend.root("demo") / "var/run/colibri_mother.pid").read_text().strip()
    again = backend.exec("demo", [*rc, "start"])
    assert (again.exit_code, again.err) == (1, f"colibri_mother already running?  (pid={pid}).\n")
    status = backend.exec("demo", [*rc, "status"])
    assert (status.exit_code, status.out) == (0, f"colibri_mother is running as pid {pid}.\n")

    assert invoke("stop-agent", "demo")[0] == 0
    code, _, err = invoke("start-agent", "demo")
    assert code == 0, err
    assert tenant(invoke, "demo")["status"] == "active" and jail_ps("demo").count("mother.py") == 1
    assert invoke("start-agent", "demo")[0] == 0  # again: nothing to do
    assert jail_ps("demo").count("mother.py") == 1

    stop = backend.exec("demo", [*rc, "stop"])
    assert stop.exit_code == 0 and stop.out.startswith("Stopping colibri_mother.\n")
    stop = backend.exec("demo", [*rc, "stop"])
    assert (stop.exit_code, stop.err) == (1, "colibri_mother not running? (check /var/run/colibri_mother.pid).\n")
    status = backend.exec("demo", [*rc, "status"])
    assert (status.exit_code, status.out) == (1, "colibri_mother is not running.\n")
    assert invoke("reconcile") == (0, "no drift\n", "")  # the jail runs: reconcile does not look inside
