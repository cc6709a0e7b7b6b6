"""The spawn state machine and the operations on an agent, on the fake backend (tests/fakes).

The same cases run on the real sandbox in tests/integration/test_spawn.py where the real part
matters (a real mother process, kill -9 of a real CLI, bubblewrap's mounts)."""

import json
from pathlib import Path

import pytest

from colibri.adapters.jail import JailState
from colibri.errors import JailError, StateConflict
from colibri.services.lifecycle.layout import agent_lock
from tests.fakes.jail import FakeJails
from tests.unit.lifecycle.conftest import Cli, show

STEPS = ["jail_created", "jail_started", "secrets_provisioned", "mother_installed", "mother_started"]


def register(cli: Cli, *names: str) -> None:
    for name in names:
        assert cli("register-tenant", name, "--collection", "")[0] == 0


def test_spawn_runs_every_step_then_converges_and_destroy_resets(cli: Cli, fake: FakeJails) -> None:
    register(cli, "demo")
    code, out, err = cli("spawn-agent", "demo", "--capability", "echo", "--json")
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["step"] for e in events if e.get("state") == "done"] == STEPS
    assert events[-1] == {"ok": True, "active": ["demo"]}
    record = show(cli, "demo")
    assert (record["status"], record["spawn_step"], record["backend"]) == ("active", "active", "fake")
    assert record["capabilities"] == [{"name": "echo", "version": "1"}]
    root = fake.root("demo")
    identity = json.loads((root / "usr/local/etc/colibri/agent.json").read_text())
    assert identity["tenant"] == "demo" and identity["secrets_expected"] is False
    assert (root / "usr/local/libexec/colibri/handlers/echo").is_file()
    assert cli("reconcile") == (0, "no drift\n", "")
    assert cli("spawn-agent", "demo")[0] == 0  # converges: the same jail, created once
    assert fake.calls.count(("create", "demo")) == 1
    assert cli("destroy-agent", "demo", "--yes")[0] == 0
    assert fake.info("demo").state is JailState.ABSENT and not root.exists()
    record = show(cli, "demo")
    assert (record["status"], record["jail_root"], record["spawn_step"]) == ("registered", None, None)


def test_a_mother_that_exits_fails_the_spawn_and_a_rerun_converges(cli: Cli, fake: FakeJails) -> None:
    register(cli, "demo")
    fake.mother_exits = True
    code, _, err = cli("spawn-agent", "demo")
    assert code == 17 and "the mother skill exited right after starting in jail demo" in err
    record = show(cli, "demo")
    assert (record["status"], record["spawn_step"]) == ("failed", "mother_installed")
    assert "mother skill exited" in str(record["last_error"])
    fake.mother_exits = False
    assert cli("spawn-agent", "demo")[0] == 0
    assert show(cli, "demo")["status"] == "active"


def test_a_mother_that_refuses_is_named_and_stopped(cli: Cli, fake: FakeJails) -> None:
    register(cli, "demo")
    fake.mother_refuses = ".env is not 0600"
    code, _, err = cli("spawn-agent", "demo")
    assert code == 17
    assert err == "colibri: the mother skill refused to start in jail demo: .env is not 0600\n"
    assert show(cli, "demo")["status"] == "failed"


def test_start_agent_stops_the_jail_again_when_the_mother_refuses(cli: Cli, fake: FakeJails) -> None:
    register(cli, "demo")
    assert cli("spawn-agent", "demo")[0] == 0
    assert cli("stop-agent", "demo")[0] == 0
    assert show(cli, "demo")["status"] == "stopped"
    fake.mother_refuses = "refusing: .env is not 0600"
    code, _, err = cli("start-agent", "demo")
    assert code == 17 and "refusing: .env is not 0600" in err and "jail demo was stopped again" in err
    assert show(cli, "demo")["status"] == "stopped" and fake.info("demo").state is JailState.STOPPED
    fake.mother_refuses = None
    assert cli("start-agent", "demo")[0] == 0
    assert show(cli, "demo")["status"] == "active"


def test_a_silent_mother_is_not_active(cli: Cli, fake: FakeJails, monkeypatch: pytest.MonkeyPatch) -> None:
    from colibri.services.lifecycle import mother

    monkeypatch.setattr(mother, "MOTHER_READY_TIMEOUT", 0.3)
    register(cli, "demo")
    fake.mother_silent = True
    code, _, err = cli("spawn-agent", "demo")
    assert code == 17 and "did not say it was ready within 0.3 s (stopped again)" in err
    assert show(cli, "demo")["status"] == "failed"


def test_a_refused_template_or_capability_is_not_kept(cli: Cli) -> None:
    register(cli, "demo")
    code, _, err = cli("spawn-agent", "demo", "--template", "colibri/nope")
    assert (code, err) == (4, "colibri: template not found: colibri/nope\n")
    record = show(cli, "demo")
    assert (record["status"], record["template"]) == ("failed", None)
    code, _, err = cli("spawn-agent", "demo", "--capability", "paint")
    assert code == 7 and "no handler for capability paint" in err
    assert show(cli, "demo")["capabilities"] in (None, [])
    assert cli("spawn-agent", "demo", "--capability", "../x")[0] == 7
    assert cli("spawn-agent", "demo")[0] == 0  # neither is tried again
    record = show(cli, "demo")
    assert (record["status"], record["template"]) == ("active", "colibri/agent")
    code, _, err = cli("spawn-agent", "demo", "--template", "colibri/other")
    assert code == 5 and "was made from template colibri/agent; --template colibri/other applies" in err
    assert show(cli, "demo")["template"] == "colibri/agent"


class _Killed(BaseException):
    """What kill -9 leaves: the run stops dead, nothing marks the tenant failed."""


@pytest.mark.parametrize("step", STEPS)
def test_a_spawn_cut_short_after_any_step_converges_on_a_rerun(tmp_path: Path, fake: FakeJails, step: str) -> None:
    from colibri.cli.context import Adapters, Context

    context = Context(adapters=Adapters(jail_backend=fake))
    context.tenants().register("demo", "", None)

    def cut(tenant: str, at: str, state: str, detail: str) -> None:
        if at == step and state == "done":
            raise _Killed

    with pytest.raises(_Killed):
        context.spawner().spawn("demo", capabilities=["echo"], on_step=cut)
    assert context.tenants().show("demo")["status"] == "spawning"  # as a kill -9 leaves it
    record = context.spawner().spawn("demo")
    assert (record["status"], record["spawn_step"]) == ("active", "active")
    assert fake.calls.count(("create", "demo")) == 1
    assert context.reconciler().reconcile() == []
    context.close()


def test_a_create_cut_short_is_replaced_not_taken_for_a_foreign_jail(cli: Cli, fake: FakeJails) -> None:
    register(cli, "demo")
    fake.add_foreign("demo")  # what bastille leaves when colibri's create is killed before its marker
    code, _, err = cli("spawn-agent", "demo")
    assert code == 5 and "colibri did not create it" in err
    fake.interrupted_creates.add("demo")
    assert cli("spawn-agent", "demo")[0] == 0
    assert fake.info("demo").managed


def test_one_tenant_one_lifecycle_at_a_time(cli: Cli, tmp_path: Path) -> None:
    from colibri.cli.context import Context

    register(cli, "demo")
    with agent_lock(Context().settings.run_dir / "locks", "demo"):
        for args in (("spawn-agent", "demo"), ("destroy-agent", "demo", "--yes"), ("remove-tenant", "demo")):
            code, _, err = cli(*args)
            assert code == 5 and "demo" in err, (args, err)
    assert cli("spawn-agent", "demo")[0] == 0


def test_start_stop_destroy_need_a_spawned_agent(cli: Cli) -> None:
    register(cli, "demo")
    code, _, err = cli("start-agent", "demo")
    assert code == 5 and "has no agent yet" in err
    assert cli("stop-agent", "ghost")[0] == 4
    assert cli("destroy-agent", "demo", "--yes")[0] == 0  # nothing to destroy: still registered
    assert show(cli, "demo")["status"] == "registered"


def test_remove_tenant_refuses_then_destroys_its_jail(cli: Cli, fake: FakeJails) -> None:
    register(cli, "demo")
    assert cli("spawn-agent", "demo")[0] == 0
    code, _, err = cli("remove-tenant", "demo")
    assert (code, err) == (
        5,
        "colibri: tenant demo is active and may still have a jail; "
        "destroy it first: colibri remove-tenant demo --destroy-jail\n",
    )
    assert cli("remove-tenant", "demo", "--destroy-jail", "--yes") == (0, "removed tenant demo\n", "")
    assert fake.info("demo").state is JailState.ABSENT
    assert show(cli, "demo")["status"] == "removed"


def test_reconcile_reports_then_repairs_drift(cli: Cli, fake: FakeJails) -> None:
    register(cli, "demo", "gone", "idle")
    for name in ("demo", "gone", "idle"):
        assert cli("spawn-agent", name)[0] == 0
    assert cli("stop-agent", "idle")[0] == 0
    fake.stop("demo")  # behind colibri's back: the tenant is still active
    fake.start("idle")  # and this one runs while it should not
    fake.destroy("gone")  # and this jail vanished altogether
    fake.add_foreign("zeta")
    code, out, _ = cli("reconcile", "--json")  # a dry run: nothing changed
    kinds = sorted((d["kind"], d["jail"]) for d in json.loads(out)["data"])
    assert code == 0 and kinds == [
        ("foreign_jail", "zeta"),
        ("missing_jail", "gone"),
        ("running_jail", "idle"),
        ("stopped_jail", "demo"),
    ]
    assert fake.info("demo").state is JailState.STOPPED
    code, out, _ = cli("reconcile", "--apply", "--json")
    assert code == 0 and all(d["applied"] for d in json.loads(out)["data"] if d["kind"] != "foreign_jail")
    assert fake.info("demo").state is JailState.RUNNING and fake.info("idle").state is JailState.STOPPED
    assert show(cli, "gone")["status"] == "failed"
    code, out, _ = cli("reconcile", "--json")
    assert [d["kind"] for d in json.loads(out)["data"]] == ["foreign_jail"]


def test_a_repair_that_fails_is_exit_18_naming_it(cli: Cli, fake: FakeJails) -> None:
    register(cli, "demo")
    assert cli("spawn-agent", "demo")[0] == 0
    fake.stop("demo")
    fake.fail["start"] = JailError("the fake refuses to start")
    code, out, _ = cli("reconcile", "--apply", "--json")
    document = json.loads(out)
    assert code == 18 and document["ok"] is False and document["error"]["code"] == 18
    assert document["data"][0]["error"] == "the fake refuses to start"


def test_a_socket_mount_gone_from_a_running_jail_is_drift(cli: Cli, fake: FakeJails) -> None:
    register(cli, "demo")
    assert cli("spawn-agent", "demo")[0] == 0
    assert fake.umount("demo", "/var/run/colibri")
    code, out, _ = cli("reconcile", "--json")
    assert [d["kind"] for d in json.loads(out)["data"]] == ["unmounted_socket"]
    code, _, err = cli("start-agent", "demo")  # running without it: refused, not reported as fine
    assert code == 11 and "runs without its socket mount" in err


def test_the_state_machine_refuses_what_is_not_an_edge(cli: Cli) -> None:
    from colibri.cli.context import Context
    from colibri.domain import TenantStatus
    from colibri.store.repos import TenantRepo

    register(cli, "demo")
    context = Context()
    with context.store.session() as session, pytest.raises(StateConflict, match="registered; it cannot become active"):
        TenantRepo(session).change("demo", TenantStatus.ACTIVE)
    assert show(cli, "demo")["status"] == "registered"
    context.close()


def test_a_batch_spawn_reports_each_failure_with_the_worst_exit_code(cli: Cli) -> None:
    register(cli, "ant")
    code, out, err = cli("spawn-agent", "ant", "ghost")
    assert code == 4  # ghost: TenantNotFound; ant still spawned
    assert out.splitlines()[-1] == "active: ant"
    assert err == "colibri: 1 of 2 spawns failed: ghost: tenant not found: ghost\n"
    assert show(cli, "ant")["status"] == "active"
