"""Issue 9 defects 4, 5 and 7 on the bastille backend, against the (stricter) bastille 1.4.4 emulator:
adopting checks before it changes and undoes on failure, release takes colibri out of the jail,
mounts are checked live (the host's ``mount -p``), a host without ``bastille bootstrap`` is named.

Like test_bastille_faults.py, spawns run through ``SpawnService`` and stop at ``mother_started``
(the emulator's service(8) only book-keeps rc.subr scripts; the whole lifecycle with the real
mother is test_bastille_lifecycle.py).
"""

import subprocess
from pathlib import Path

import pytest

from colibri.adapters.bastille.backend import Bastille
from colibri.adapters.jail import JailState, Mount
from colibri.adapters.runner import ShRunner
from colibri.cli.context import Context
from colibri.errors import BastilleError, JailError, SecretsError
from colibri.resources import shipped
from colibri.services.lifecycle.layout import SpawnPaths
from colibri.services.lifecycle.operations import AgentService
from colibri.services.lifecycle.pipeline import SpawnService
from tests.conftest import Invoke
from tests.emulators.bastille.fixtures import BastilleEmulator, bastille_emulator_fixture, make_emulator  # noqa: F401
from tests.integration.test_bastille_faults import (  # noqa: F401  (fixtures used by name)
    backend,
    ctx_fixture,
    emu_fixture,
    register,
    spawn_to_mother_installed,
    tenant,
)

pytestmark = pytest.mark.integration

RC_SCRIPT = "usr/local/etc/rc.d/colibri_mother"


def spawner(ctx: Context, jails: Bastille, provision: object = None) -> SpawnService:
    s = ctx.settings
    paths = SpawnPaths(
        s.run_dir, shipped("skills"), s.jail_user, s.jail_ip_pool, s.jail_template, state_dir=s.state_dir
    )
    return SpawnService(ctx.store, jails, paths, provision=provision)  # type: ignore[arg-type]


def agent_service(ctx: Context, jails: Bastille) -> AgentService:
    return AgentService(ctx.store, jails, ctx.settings.run_dir / "locks", state_dir=ctx.settings.state_dir)


def host_mounts(emu: BastilleEmulator) -> str:
    """What FreeBSD's ``mount -p -t nullfs`` says on the emulated host."""
    return subprocess.run(["mount", "-p", "-t", "nullfs"], env=emu.env, capture_output=True, text=True).stdout


def prepared_jail(emu: BastilleEmulator, *, home: bool = True) -> Path:
    """A jail colibri did not create, prepared by its operator for an agent (the user, its home,
    the mother's rc.d script), then stopped."""
    assert emu.run("create", "demo", emu.release, "10.17.89.9").returncode == 0
    made = emu.run("cmd", "demo", "pw", "useradd", "agent", "-u", "1001", "-m", "-d", "/home/agent")
    assert made.returncode == 0, made.stdout + made.stderr
    root = emu.jail_root("demo")
    script = root / RC_SCRIPT
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text((shipped("jails") / "agent/overlay" / RC_SCRIPT).read_text())
    script.chmod(0o555)
    if not home:
        (root / "home/agent").rmdir()
    assert emu.run("stop", "demo").returncode == 0
    return root


def snapshot(root: Path) -> list[str]:
    """Every path of the jail root but the thin jail's read-only release (its /.bastille) and the
    emulator's own book-keeping (``.emulated-*``: its stand-in for rc.subr's state, see README)."""
    out = []
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if ".bastille" in parts or any(p.startswith(".emulated-") for p in parts):
            continue
        st = path.lstat()
        content = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        out.append(f"{path.relative_to(root)} {st.st_uid}:{st.st_gid} {st.st_mode:o} {hash(content)}")
    return out


def fstab(emu: BastilleEmulator) -> str:
    return (emu.jails_dir / "demo" / "fstab").read_text()


def test_an_adoption_without_the_agents_home_changes_nothing(
    emu: BastilleEmulator, ctx: Context, invoke: Invoke
) -> None:
    root = prepared_jail(emu, home=False)
    register(invoke, "demo")
    before, lines = snapshot(root), fstab(emu)
    with pytest.raises(JailError, match="cannot adopt jail demo: the agent's home /home/agent"):
        spawner(ctx, backend(emu, ctx.settings)).spawn("demo", adopt=("demo", root))
    assert snapshot(root) == before and fstab(emu) == lines and not emu.is_running("demo")
    record = tenant(invoke, "demo")
    assert (record["status"], record["adopted"], record["backend"]) == ("failed", False, None)


def test_an_adoption_failing_later_is_undone(emu: BastilleEmulator, ctx: Context, invoke: Invoke) -> None:
    root = prepared_jail(emu)
    register(invoke, "demo")
    before, lines = snapshot(root), fstab(emu)

    def vault_down(tenant_id: str) -> None:
        raise SecretsError("the vault is down")

    jails = backend(emu, ctx.settings)
    with pytest.raises(SecretsError, match="the vault is down"):
        spawner(ctx, jails, vault_down).spawn("demo", adopt=("demo", root))
    # It had added the socket mount (live), enabled the mother and started the jail: all undone.
    assert not emu.is_running("demo") and fstab(emu) == lines and "/var/run/colibri" not in host_mounts(emu)
    assert snapshot(root) == before
    record = tenant(invoke, "demo")
    assert (record["status"], record["adopted"], record["jail_root"]) == ("failed", False, None)


def test_adopt_then_release_leaves_nothing_of_colibris(emu: BastilleEmulator, ctx: Context, invoke: Invoke) -> None:
    root = prepared_jail(emu)
    register(invoke, "demo")
    before, lines = snapshot(root), fstab(emu)
    jails = backend(emu, ctx.settings)
    spawn = spawner(ctx, jails)

    def cut(tenant_id: str, step: str, state: str, detail: str) -> None:
        if (step, state) == ("mother_started", "start"):
            raise KeyboardInterrupt  # as a Ctrl-C there would: see the module docstring

    with pytest.raises(KeyboardInterrupt):
        spawn.spawn("demo", adopt=("demo", root), on_step=cut)
    target = f"{root}/var/run/colibri"
    assert target in fstab(emu) and target in host_mounts(emu)  # configured and live
    assert (root / "usr/local/etc/colibri/agent.json").is_file()
    assert 'colibri_mother_enable="YES"' in (root / "etc/rc.conf").read_text()
    released = agent_service(ctx, jails).release("demo")
    assert "the socket mount on /var/run/colibri" in released["removed"]
    assert "colibri_mother_enable from /etc/rc.conf" in released["removed"]
    assert fstab(emu) == lines and target not in host_mounts(emu)
    assert snapshot(root) == before  # every file and directory colibri added is gone, nothing else
    assert emu.is_running("demo")  # the jail is left as it is
    record = tenant(invoke, "demo")
    assert (record["status"], record["adopted"]) == ("registered", False)


def test_a_mount_that_bastille_did_not_make_live_is_an_error(emu: BastilleEmulator, ctx: Context) -> None:
    jails = backend(emu, ctx.settings)
    jails.create("demo", ip="10.17.89.2", template=None)
    assert jails.info("demo").state is JailState.RUNNING
    shared = ctx.settings.run_dir / "shared"
    shared.mkdir(parents=True)
    mount = Mount(shared, "/var/run/colibri", read_only=False)
    # bastille 1.4.4 mount.sh appends the fstab line, then `mount -F fstab -a` fails: exit 0
    failing = backend(emu, ctx.settings, BASTILLE_EMU_FAIL="mount:live")
    with pytest.raises(BastilleError, match=r"is not mounted on .*/var/run/colibri; nothing was kept"):
        failing.mount("demo", mount)
    assert "/var/run/colibri" not in fstab(emu) and not jails.is_mounted("demo", mount)
    jails.mount("demo", mount)
    assert jails.is_mounted("demo", mount)


@pytest.mark.parametrize("missing", ["templates", "release"])
def test_a_host_without_bastille_bootstrap_is_told_the_command(
    tmp_path: Path, ctx: Context, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    emu = make_emulator(tmp_path / "fresh", release=None if missing == "templates" else "14.3-RELEASE")
    try:
        runner = ShRunner({"PATH": emu.env["PATH"], "LANG": "C.UTF-8"})
        jails = Bastille(
            runner,
            bastille="bastille",
            prefix=emu.prefix,
            release="14.2-RELEASE" if missing == "release" else "14.3-RELEASE",
            config=emu.conf_path,
            locks_dir=tmp_path / "locks",
            intents_dir=tmp_path / "intents",
            templates_source=shipped("jails"),
        )
        wanted = "14.2-RELEASE" if missing == "release" else "14.3-RELEASE"
        with pytest.raises(BastilleError, match=f"not bootstrapped .*run 'bastille bootstrap {wanted}'"):
            jails.create("demo", ip="10.17.89.2", template=None)
        assert not (emu.prefix / "jails" / "demo").exists()
    finally:
        emu.stop_all()


def test_a_running_jail_is_adopted_without_a_live_bastille_mount(
    emu: BastilleEmulator, ctx: Context, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """review9 F4: mount.sh runs ``mount -F fstab -a`` as host root, which follows a symlink that
    root in the running jail swapped in after colibri's check.  An adoption of a running jail
    stops it first, so the socket mount is only configured, and jail(8) mounts it at the start;
    a failed adoption starts the jail again (it was running)."""
    from colibri.adapters.bastille import argv as bastille_argv

    root = prepared_jail(emu)
    assert emu.run("start", "demo").returncode == 0
    register(invoke, "demo")
    lines = fstab(emu)
    live: list[list[str]] = []
    real = bastille_argv.mount

    def spy(*args: str) -> list[str]:
        live.append(list(args))
        return real(*args)

    monkeypatch.setattr(bastille_argv, "mount", spy)

    def vault_down(tenant_id: str) -> None:
        assert f"{root}/var/run/colibri" in host_mounts(emu)  # mounted by the jail's start
        raise SecretsError("the vault is down")

    with pytest.raises(SecretsError, match="the vault is down"):
        spawner(ctx, backend(emu, ctx.settings), vault_down).spawn("demo", adopt=("demo", root))
    assert live == []  # never `bastille mount` into the running jail
    assert emu.is_running("demo") and fstab(emu) == lines and "/var/run/colibri" not in host_mounts(emu)
