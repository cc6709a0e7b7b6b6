"""Issue 3, "Bad input and faults", on the bastille backend: the real adapter against the bastille 1.4.4
emulator (tests/emulators/bastille, real processes, faults injected with BASTILLE_EMU_FAIL).

Every case ends in a clear error with nothing changed, or in a converged state; the emulator's
call log (``${prefix}/.emulator/log``) shows what colibri asked bastille to do.

Two limits of this file, said plainly:

* Spawns stop at the ``mother_installed`` boundary: these cases are about bastille's faults, so
  each spawn here is cut at the start of ``mother_started`` (as a kill -9 there would) and the
  tenant stays ``spawning`` at ``mother_installed``.  The real mother under the emulator's
  rc.subr, service(8) and daemon(8) runs in tests/integration/test_bastille_rc.py.
* Spawns run through ``SpawnService`` (in threads for the concurrent cases) built from the same
  settings as the CLI, not through ``colibri spawn-agent`` in a subprocess: the CLI's
  ``Context.backend()`` runs bastille, jls and jexec with a fixed system PATH, which cannot reach
  the emulator.  A StateConflict here is what the CLI turns into exit 5.
"""

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colibri.adapters.bastille.backend import Bastille
from colibri.adapters.jail import JailState
from colibri.adapters.runner import ShRunner
from colibri.cli.context import Context
from colibri.errors import (
    BastilleError,
    ColibriError,
    InvalidInput,
    JailError,
    JailExists,
    JailNotFound,
    StateConflict,
)
from colibri.resources import shipped
from colibri.services.lifecycle.layout import SpawnPaths
from colibri.services.lifecycle.operations import AgentService
from colibri.services.lifecycle.pipeline import SpawnService
from colibri.settings import Settings
from tests.contract.conftest import MIRROR, warm_package_cache
from tests.emulators.bastille.fixtures import BastilleEmulator, bastille_emulator_fixture  # noqa: F401

pytestmark = pytest.mark.integration

from tests.conftest import Invoke  # noqa: E402

PACKAGE = "All/python311-3.11.13.pkg"  # the pinned package agent-jail-bootstrap.sh wants in the cache


# ---- set-up -------------------------------------------------------------------------------------------
@pytest.fixture(name="emu")
def emu_fixture(bastille_emulator: BastilleEmulator, monkeypatch: pytest.MonkeyPatch) -> BastilleEmulator:
    """The emulator with a warm package cache, and colibri's settings pointing at it."""
    emu = bastille_emulator
    warm_package_cache(emu.prefix / "releases" / emu.release, monkeypatch)
    monkeypatch.setenv("COLIBRI_JAIL_BACKEND", "bastille")
    monkeypatch.setenv("COLIBRI_BASTILLE_PREFIX", str(emu.prefix))
    monkeypatch.setenv("COLIBRI_BASTILLE_CONFIG", str(emu.conf_path))
    monkeypatch.setenv("COLIBRI_BASTILLE_RELEASE", emu.release)
    monkeypatch.setenv("COLIBRI_JAIL_IP_POOL", "10.17.89.0/24")
    return emu


@pytest.fixture(name="ctx")
def ctx_fixture(emu: BastilleEmulator) -> Iterator[Context]:
    ctx = Context()
    yield ctx
    ctx.close()


def backend(emu: BastilleEmulator, settings: Settings, **emu_env: str) -> Bastille:
    """colibri's Bastille adapter from the settings, running the emulator (``emu_env``: its knobs)."""
    runner = ShRunner({"PATH": emu.env["PATH"], "LANG": "C.UTF-8", **emu_env})
    return Bastille.from_settings(settings, runner, shipped("jails"))


def spawner(ctx: Context, jails: Bastille) -> SpawnService:
    s = ctx.settings
    paths = SpawnPaths(s.run_dir, shipped("skills"), s.jail_user, s.jail_ip_pool, s.jail_template)
    return SpawnService(ctx.store, jails, paths, provision=None)


def service(ctx: Context, jails: Bastille) -> AgentService:
    return AgentService(ctx.store, jails, ctx.settings.run_dir / "locks")


class Boundary(Exception):
    """Cuts a spawn where the emulator stops being honest (see the module docstring)."""


def stop_before_mother(tenant: str, step: str, state: str, detail: str) -> None:
    if (step, state) == ("mother_started", "start"):
        raise Boundary(tenant)


def spawn_to_mother_installed(spawn: SpawnService, tenant_id: str) -> ColibriError | None:
    """Run the pipeline up to ``mother_installed``; None when it got there, else colibri's error."""
    try:
        spawn.spawn(tenant_id, on_step=stop_before_mother)
    except Boundary:
        return None
    except ColibriError as exc:
        return exc
    raise AssertionError("the spawn went past mother_installed")


def spawn_at_once(spawn: SpawnService, tenant_ids: list[str]) -> dict[str, ColibriError | None]:
    results: dict[str, ColibriError | None] = {}

    def one(tid: str) -> None:
        results[tid] = spawn_to_mother_installed(spawn, tid)

    threads = [threading.Thread(target=one, args=(tid,)) for tid in tenant_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def register(invoke: Invoke, *names: str) -> None:
    for name in names:
        code, _, err = invoke("register-tenant", name, "--collection", "")
        assert code == 0, err


def tenant(invoke: Invoke, name: str) -> dict[str, Any]:
    code, out, err = invoke("show-tenant", name, "--json")
    assert code == 0, err
    record: dict[str, Any] = json.loads(out)["data"]
    return record


def calls(emu: BastilleEmulator) -> list[list[str]]:
    """Every bastille invocation so far (the emulator's log), as argv lists."""
    log = emu.prefix / ".emulator" / "log"
    return [json.loads(line)["argv"] for line in log.read_text().splitlines()] if log.exists() else []


READ_ONLY = (["--version"], ["list", "jails"])


def jails_on_disk(emu: BastilleEmulator) -> list[str]:
    return sorted(p.name for p in emu.jails_dir.iterdir()) if emu.jails_dir.exists() else []


def intents(settings: Settings) -> list[str]:
    folder = settings.state_dir / "bastille-intents"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---- bastille missing, or of an unknown version ---------------------------------------------------------
def test_bastille_missing_is_named(
    emu: BastilleEmulator, ctx: Context, invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere" / "bastille"
    jails = backend(emu, ctx.settings.model_copy(update={"bastille_path": str(missing)}))
    with pytest.raises(BastilleError, match=f"bastille not found \\({missing}\\); install sysutils/bastille"):
        jails.check_version()
    with pytest.raises(BastilleError, match="bastille not found"):
        jails.create("demo", ip="10.17.89.2", template=None)
    # The same through the CLI: spawn-agent fails with the path named, the tenant is failed, no jail.
    monkeypatch.setenv("COLIBRI_BASTILLE_PATH", str(missing))
    register(invoke, "demo")
    code, _, err = invoke("spawn-agent", "demo")
    assert (code, err) == (11, f"colibri: bastille not found ({missing}); install sysutils/bastille\n")
    record = tenant(invoke, "demo")
    assert record["status"] == "failed" and "bastille not found" in record["last_error"]
    assert jails_on_disk(emu) == [] and intents(ctx.settings) == []


@pytest.mark.parametrize("version", ["2.0.0", "0.14.20250420"])
def test_unknown_bastille_major_is_refused(emu: BastilleEmulator, ctx: Context, version: str) -> None:
    jails = backend(emu, ctx.settings, BASTILLE_EMU_VERSION=version)
    expected = f"bastille {version} is not supported: colibri drives bastille 1.x"
    with pytest.raises(BastilleError, match=expected.replace(".", "\\.")):
        jails.check_version()
    with pytest.raises(BastilleError, match="is not supported"):
        jails.create("demo", ip="10.17.89.2", template=None)
    assert jails.info("demo").state is JailState.ABSENT
    assert [c for c in calls(emu) if c != ["--version"]] == [["bootstrap", emu.release]]  # only the fixture's
    assert backend(emu, ctx.settings).check_version() == "1.4.4"


# ---- names bastille would misread ---------------------------------------------------------------------
def test_names_bastille_would_misread_never_reach_it(emu: BastilleEmulator, ctx: Context, invoke: Invoke) -> None:
    for name, why in (("ALL", "reserved"), ("all", "reserved"), ("123", "all digits"), ("a b", "use ASCII")):
        code, _, err = invoke("register-tenant", name, "--collection", "")
        assert code == 7 and why in err, (name, err)
    register(invoke, "agent1")
    code, _, err = invoke("register-tenant", "agent", "--collection", "")
    assert code == 5 and "clashes with tenant agent1: bastille would match one as a prefix" in err

    assert emu.run("create", "agent1", emu.release, "10.17.89.9").returncode == 0  # made outside colibri
    before = len(calls(emu))
    jails = backend(emu, ctx.settings)
    for bad in ("ALL", "all", "123", "agent1 agent2", "-agent1"):
        with pytest.raises(InvalidInput, match="would not name exactly one jail for bastille; refused"):
            jails.create(bad, ip="10.17.89.2", template=None)
        for verb in (jails.start, jails.stop):
            with pytest.raises(InvalidInput, match="would not name exactly one jail"):
                verb(bad)
        with pytest.raises(JailNotFound):  # no such jail directory: refused before bastille is asked
            jails.destroy(bad)
    # No prefix autocomplete: "agent" is not agent1, whatever bastille would have picked.
    assert jails.info("agent").state is JailState.ABSENT
    for call in (jails.start, jails.stop, jails.destroy):
        with pytest.raises(JailNotFound, match=r"^jail not found: agent$"):
            call("agent")
    assert [c for c in calls(emu)[before:] if c not in READ_ONLY] == []  # nothing but --version/list jails
    assert emu.is_running("agent1") and jails_on_disk(emu) == ["agent1"]


# ---- a jail of the same name that colibri did not create --------------------------------------------------
def test_a_foreign_jail_is_refused_and_untouched(emu: BastilleEmulator, ctx: Context, invoke: Invoke) -> None:
    assert emu.run("create", "demo", emu.release, "10.17.89.9").returncode == 0
    conf = (emu.jails_dir / "demo" / "jail.conf").read_bytes()
    before = len(calls(emu))
    register(invoke, "demo")
    jails = backend(emu, ctx.settings)
    error = spawn_to_mother_installed(spawner(ctx, jails), "demo")
    assert isinstance(error, JailExists) and error.exit_code == 5
    assert "a jail named demo exists and colibri did not create it; to use it, adopt it" in str(error)
    record = tenant(invoke, "demo")
    assert (record["status"], record["ip_address"]) == ("failed", None)  # no IP taken from the pool
    with pytest.raises(JailExists, match="colibri did not create it"):
        jails.create("demo", ip="10.17.89.2", template=None)
    with pytest.raises(BastilleError, match="jail demo was not created by colibri; refusing to destroy it"):
        jails.destroy("demo")
    with pytest.raises(JailError, match="not created by colibri; refusing to destroy it"):
        service(ctx, jails).destroy("demo")
    assert [c for c in calls(emu)[before:] if c not in READ_ONLY] == []
    assert emu.is_running("demo") and (emu.jails_dir / "demo" / "jail.conf").read_bytes() == conf
    assert not (emu.jails_dir / "demo" / "colibri.json").exists() and intents(ctx.settings) == []


# ---- bastille failing halfway --------------------------------------------------------------------------
def test_create_failing_after_the_root_leaves_no_half_made_jail(emu: BastilleEmulator, ctx: Context) -> None:
    jails = backend(emu, ctx.settings, BASTILLE_EMU_FAIL="create:after-root")
    with pytest.raises(BastilleError, match=r"Failed to copy release files\. Please retry create!"):
        jails.create("demo", ip="10.17.89.2", template=None)
    # bastille's own cleanup (destroy -af, no -y) stops at its prompt and leaves the jail listed, so
    # colibri destroys its own partial jail (destroy -afy needs the name in ``list jails`` first).
    assert calls(emu)[-3:] == [
        ["create", "demo", emu.release, "10.17.89.2"],
        ["list", "jails"],
        ["destroy", "-afy", "demo"],
    ]
    assert jails_on_disk(emu) == [] and emu.run("list", "jails").stdout == ""
    assert intents(ctx.settings) == []


def test_start_failing_inside_create_leaves_nothing(emu: BastilleEmulator, ctx: Context) -> None:
    jails = backend(emu, ctx.settings, BASTILLE_EMU_FAIL="start")
    with pytest.raises(BastilleError, match=r"bastille create demo failed: \[ERROR\]: Failed to create jail: demo"):
        jails.create("demo", ip="10.17.89.2", template=None)
    assert jails_on_disk(emu) == [] and intents(ctx.settings) == []


def test_template_failures_are_cleaned_up_and_say_why(emu: BastilleEmulator, ctx: Context, invoke: Invoke) -> None:
    jails = backend(emu, ctx.settings, BASTILLE_EMU_FAIL="template")
    with pytest.raises(BastilleError, match=r"template demo colibri/agent failed: \[ERROR\]: Failed to execute"):
        jails.create("demo", ip="10.17.89.2", template=None)
    assert jails_on_disk(emu) == [] and intents(ctx.settings) == []
    assert calls(emu)[-1] == ["destroy", "-afy", "demo"]

    # A cold package cache: agent-jail-bootstrap.sh refuses, and its words reach the operator.
    (emu.prefix / "releases" / emu.release / MIRROR / PACKAGE).unlink()
    register(invoke, "demo")
    error = spawn_to_mother_installed(spawner(ctx, backend(emu, ctx.settings)), "demo")
    assert isinstance(error, BastilleError)
    assert "cold package cache: missing python311-3.11.13 in /var/cache/colibri-pkg; nothing was installed." in str(
        error
    )
    record = tenant(invoke, "demo")
    assert record["status"] == "failed" and "cold package cache" in record["last_error"]
    assert record["spawn_step"] is None  # jail_created was never recorded
    assert jails_on_disk(emu) == [] and emu.run("list", "jails").stdout == "" and intents(ctx.settings) == []


def test_faults_on_a_jail_colibri_made(emu: BastilleEmulator, ctx: Context, invoke: Invoke) -> None:
    register(invoke, "demo")
    jails = backend(emu, ctx.settings)
    assert spawn_to_mother_installed(spawner(ctx, jails), "demo") is None
    made = tenant(invoke, "demo")
    assert (made["status"], made["spawn_step"], made["ip_address"]) == ("spawning", "mother_installed", "10.17.89.2")
    assert service(ctx, jails).stop("demo")["status"] == "stopped"

    # start: jail -c fails, exit 0: an error, the jail stays down, the tenant stays stopped.
    with pytest.raises(BastilleError, match=r"bastille start demo failed: jail: demo: .*emulated failure"):
        service(ctx, backend(emu, ctx.settings, BASTILLE_EMU_FAIL="start")).start("demo")
    assert not emu.is_running("demo") and tenant(invoke, "demo")["status"] == "stopped"

    # destroy: a busy dataset (#1666), exit 0: an error, and the tenant keeps its jail and its IP.
    with pytest.raises(BastilleError, match="bastille destroy demo \\(the jail is still there\\) failed"):
        service(ctx, backend(emu, ctx.settings, BASTILLE_EMU_FAIL="destroy:busy")).destroy("demo")
    record = tenant(invoke, "demo")
    assert (record["status"], record["backend"], record["ip_address"]) == ("stopped", "bastille", "10.17.89.2")
    assert record["jail_root"] == str(emu.jail_root("demo")) and jails_on_disk(emu) == ["demo"]

    assert service(ctx, jails).destroy("demo")["status"] == "registered"
    assert jails_on_disk(emu) == [] and tenant(invoke, "demo")["ip_address"] is None


# ---- kill -9 between bastille create and colibri's marker --------------------------------------------
def test_an_interrupted_create_is_recognised_and_replaced(emu: BastilleEmulator, ctx: Context, invoke: Invoke) -> None:
    register(invoke, "demo")
    folder = ctx.settings.state_dir / "bastille-intents"
    folder.mkdir(parents=True)
    (folder / "demo").write_text(json.dumps({"ip": "10.17.89.2", "template": "colibri/agent"}))
    assert emu.run("create", "demo", emu.release, "10.17.89.2").returncode == 0  # then colibri was killed
    jails = backend(emu, ctx.settings)
    assert jails.info("demo").managed is False and jails.interrupted("demo")
    assert spawn_to_mother_installed(spawner(ctx, jails), "demo") is None
    info = jails.info("demo")
    assert (info.state, info.managed, info.ip) == (JailState.RUNNING, True, "10.17.89.2")
    assert intents(ctx.settings) == [] and jails_on_disk(emu) == ["demo"]
    ran = [c[:2] for c in calls(emu) if c[:1] in (["create"], ["destroy"])]
    assert ran == [["create", "demo"], ["destroy", "-afy"], ["create", "demo"]]  # replaced, once
    record = tenant(invoke, "demo")
    assert (record["spawn_step"], record["ip_address"]) == ("mother_installed", "10.17.89.2")
    assert (emu.jail_root("demo") / "usr/local/etc/colibri/agent.json").is_file()


# ---- IP allocation and concurrent spawns -------------------------------------------------------------
def jail_conf_ip(emu: BastilleEmulator, name: str) -> str:
    lines = [ln.strip() for ln in (emu.jails_dir / name / "jail.conf").read_text().splitlines()]
    (line,) = [ln for ln in lines if ln.startswith("ip4.addr")]
    return line.removeprefix("ip4.addr = bastille0|").rstrip(";")


def test_six_concurrent_spawns_get_distinct_ips(emu: BastilleEmulator, ctx: Context, invoke: Invoke) -> None:
    names = ["ant", "bee", "cow", "doe", "eel", "fox"]
    register(invoke, *names)
    jails = backend(emu, ctx.settings)
    assert spawn_at_once(spawner(ctx, jails), names) == dict.fromkeys(names)
    ips = {name: tenant(invoke, name)["ip_address"] for name in names}
    assert sorted(ips.values()) == [f"10.17.89.{n}" for n in range(2, 8)]  # distinct, the lowest free
    for name, ip in ips.items():
        assert jail_conf_ip(emu, name) == ip and jails.info(name).ip == ip
        assert tenant(invoke, name)["spawn_step"] == "mother_installed"
    assert jails_on_disk(emu) == names


def test_two_spawns_on_a_one_address_pool_then_the_freed_ip_is_reused(
    emu: BastilleEmulator, ctx: Context, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLIBRI_JAIL_IP_POOL", "10.17.90.0/30")  # .1 is the gateway: one address left
    register(invoke, "ant", "bee")
    local = Context()  # settings read after the pool changed
    try:
        jails = backend(emu, local.settings)
        spawn = spawner(local, jails)
        results = spawn_at_once(spawn, ["ant", "bee"])
        winner = next(name for name, error in results.items() if error is None)
        loser = "bee" if winner == "ant" else "ant"
        assert isinstance(results[loser], JailError)
        assert str(results[loser]) == "the jail IP pool 10.17.90.0/30 is exhausted"
        assert tenant(invoke, winner)["ip_address"] == "10.17.90.2" and jail_conf_ip(emu, winner) == "10.17.90.2"
        lost = tenant(invoke, loser)
        assert (lost["status"], lost["ip_address"], lost["last_error"]) == ("failed", None, str(results[loser]))
        assert jails_on_disk(emu) == [winner] and ["create", loser] not in [c[:2] for c in calls(emu)]

        # The winner's jail destroyed (its spawn was cut short, as by kill -9): its IP goes to the loser.
        assert service(local, jails).destroy(winner)["ip_address"] is None
        assert spawn_to_mother_installed(spawn, loser) is None
        assert tenant(invoke, loser)["ip_address"] == "10.17.90.2" and jail_conf_ip(emu, loser) == "10.17.90.2"
        assert jails_on_disk(emu) == [loser]
    finally:
        local.close()


def test_two_spawns_of_one_tenant_at_once(emu: BastilleEmulator, ctx: Context, invoke: Invoke) -> None:
    register(invoke, "demo")
    holding, released = threading.Event(), threading.Event()
    first: list[BaseException | None] = []

    def hold_then_go(tenant_id: str, step: str, state: str, detail: str) -> None:
        if (step, state) == ("jail_created", "start"):  # the first spawn holds the tenant's lock here
            holding.set()
            released.wait(30)
        stop_before_mother(tenant_id, step, state, detail)

    spawn = spawner(ctx, backend(emu, ctx.settings))

    def first_spawn() -> None:
        try:
            spawn.spawn("demo", on_step=hold_then_go)
        except Boundary:
            first.append(None)
        except BaseException as exc:  # reported by the assertion below, not lost in the thread
            first.append(exc)

    thread = threading.Thread(target=first_spawn)
    thread.start()
    try:
        assert holding.wait(30)
        second = spawn_to_mother_installed(spawn, "demo")
    finally:
        released.set()
        thread.join()
    assert isinstance(second, StateConflict) and second.exit_code == 5
    assert "spawn-demo is busy: another colibri process" in str(second)
    assert first == [None]
    record = tenant(invoke, "demo")
    assert (record["status"], record["spawn_step"], record["ip_address"]) == (
        "spawning",
        "mother_installed",
        "10.17.89.2",
    )
    assert jails_on_disk(emu) == ["demo"] and [c[:2] for c in calls(emu)].count(["create", "demo"]) == 1


def test_a_jail_directory_without_jail_conf_is_reported_not_reused(emu: BastilleEmulator, ctx: Context) -> None:
    jails = backend(emu, ctx.settings)
    (emu.jails_dir / "half").mkdir(parents=True)
    (emu.jails_dir / "half" / "root").mkdir()
    with pytest.raises(BastilleError, match=r"half exists but is no jail \(no jail.conf\)"):
        jails.create("half", ip="10.17.89.40", template="colibri/agent")
    assert [c for c in calls(emu) if c[:1] == ["create"]] == []
    assert (emu.jails_dir / "half" / "root").is_dir()  # left for the operator to look at
