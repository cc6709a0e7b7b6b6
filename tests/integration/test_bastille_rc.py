"""Issue 9, defects 1, 2, 3 and 8 on the bastille backend: pkg(7) in a fresh thin jail, rc.subr's
answers to service(8), the mother under daemon(8), and the mother's one user variable.

Everything runs for real in the bastille 1.4.4 emulator (tests/emulators/bastille): its /etc/rc.subr
(jailbin/rc.subr, after libexec/rc/rc.subr), service(8), daemon(8), su(1) and pkg(7)/pkg(8) stand-ins
(jailbin/_freebsd.py, after usr.sbin/service, usr.sbin/daemon/daemon.c, usr.sbin/pkg/pkg.c) run
the shipped template, bootstrap script and rc.d script unchanged, and the mother skill is the real
one (skills/mother), run by the jail's /usr/local/bin/python3.11 from the warm package cache.
"""

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from colibri.adapters.bastille.backend import Bastille
from colibri.adapters.runner import ShRunner
from colibri.cli.context import Context
from colibri.errors import BastilleError, MotherNotReady
from colibri.resources import shipped
from colibri.services.lifecycle.layout import SpawnPaths
from colibri.services.lifecycle.operations import AgentService
from colibri.services.lifecycle.pipeline import SpawnService
from colibri.services.lifecycle.reconcile import Reconciler
from tests.conftest import Invoke
from tests.contract.conftest import MIRROR
from tests.emulators.bastille.fixtures import BastilleEmulator, bastille_emulator_fixture  # noqa: F401
from tests.emulators.bastille.packages import PKG_VERSION, fingerprints_of, warm_cache

pytestmark = pytest.mark.integration

REL = "14.3-RELEASE"
MOTHER = "colibri_mother"


# ---- set-up -------------------------------------------------------------------------------------------
@pytest.fixture(name="emu")
def emu_fixture(bastille_emulator: BastilleEmulator, monkeypatch: pytest.MonkeyPatch) -> BastilleEmulator:
    emu = bastille_emulator
    monkeypatch.setenv("COLIBRI_JAIL_BACKEND", "bastille")
    monkeypatch.setenv("COLIBRI_BASTILLE_PREFIX", str(emu.prefix))
    monkeypatch.setenv("COLIBRI_BASTILLE_CONFIG", str(emu.conf_path))
    monkeypatch.setenv("COLIBRI_BASTILLE_RELEASE", emu.release)
    monkeypatch.setenv("COLIBRI_JAIL_IP_POOL", "10.17.89.0/24")
    monkeypatch.setenv("COLIBRI_PKG_REPOSITORY_URL", f"file:///{MIRROR}")
    monkeypatch.setenv("COLIBRI_PKG_FINGERPRINTS_DIR", str(fingerprints_of(cache(emu))))
    return emu


@pytest.fixture(name="ctx")
def ctx_fixture(emu: BastilleEmulator) -> Iterator[Context]:
    ctx = Context()
    yield ctx
    ctx.close()


def cache(emu: BastilleEmulator) -> Path:
    """The first-party repository's offline mirror in the release (so in every new thin jail)."""
    return emu.prefix / "releases" / emu.release / MIRROR


def jails(emu: BastilleEmulator, ctx: Context) -> Bastille:
    runner = ShRunner({"PATH": emu.env["PATH"], "LANG": "C.UTF-8"})
    return Bastille.from_settings(ctx.settings, runner, shipped("jails"))


def spawner(ctx: Context, backend: Bastille) -> SpawnService:
    s = ctx.settings
    paths = SpawnPaths(s.run_dir, shipped("skills"), s.jail_user, s.jail_ip_pool, s.jail_template)
    return SpawnService(ctx.store, backend, paths, provision=ctx.secrets().provision)


def stage_secrets(ctx: Context, tenant: str) -> None:
    """A staged provider.env (root-only): provisioning writes the tenant's .env from it."""
    staged = ctx.settings.staged_dir / tenant
    staged.mkdir(parents=True, mode=0o700, exist_ok=True)
    os.chmod(ctx.settings.staged_dir, 0o700)
    env = staged / "provider.env"
    env.write_text("PROVIDER_KEY=k-123\n")
    env.chmod(0o600)


def in_jail(emu: BastilleEmulator, jail: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """jexec(8) into the jail, as colibri's adapter does (the real exit status, both streams)."""
    return subprocess.run(["jexec", "-l", "-U", "root", jail, *argv], env=emu.env, capture_output=True, text=True)


def create_plain(emu: BastilleEmulator, name: str, ip: str) -> None:
    r = emu.run("create", name, REL, ip)
    assert r.returncode == 0, r.stdout + r.stderr


def mother_pid(root: Path) -> int:
    return int((root / "var/run/colibri_mother_child.pid").read_text().split()[0])


# ---- defect 1: pkg(7) in a fresh thin jail --------------------------------------------------------------
def test_pkg7_in_a_fresh_thin_jail_is_strict_like_freebsd(emu: BastilleEmulator) -> None:
    """No pkg(8) in a new thin jail (its /usr/local is its own): pkg(7) only bootstraps, and without
    a tty it refuses (usr.sbin/pkg/pkg.c); a local pkg package bootstraps it offline, with the
    signature the repository config asks for (or SIGNATURE_TYPE=none)."""
    all_dir = warm_cache(cache(emu))
    create_plain(emu, "fresh", "10.17.89.30")
    python = f"/{MIRROR}/All/{all_dir.joinpath('python311-3.11.13.pkg').name}"
    r = in_jail(emu, "fresh", "pkg", "add", python)
    assert r.returncode == 1
    assert r.stderr.startswith("The package management tool is not yet installed on your system.\n")
    assert "non-interactive (stdin not being a tty)" in r.stderr
    assert in_jail(emu, "fresh", "pkg", "-N").stderr == "pkg: pkg is not installed\n"
    assert in_jail(emu, "fresh", "pkg", "info", "-e", "python311").returncode == 1

    local = f"/{MIRROR}/All/pkg-{PKG_VERSION}.pkg"
    r = in_jail(emu, "fresh", "pkg", "add", local)  # FreeBSD.conf: signature_type "fingerprints"
    assert (r.returncode, r.stderr) == (1, "Signature for pkg not available.\n")
    r = in_jail(emu, "fresh", "env", "SIGNATURE_TYPE=none", "pkg", "add", local)
    assert r.returncode == 0, r.stderr
    assert in_jail(emu, "fresh", "pkg", "-N").returncode == 0
    assert in_jail(emu, "fresh", "pkg", "info", "-e", "pkg").returncode == 0
    assert in_jail(emu, "fresh", "pkg", "info", "-e", "python311").returncode == 1
    r = in_jail(emu, "fresh", "pkg", "add", python)
    assert r.returncode == 0 and "Installing python311-3.11.13..." in r.stdout
    assert in_jail(emu, "fresh", "pkg", "info", "-e", "python311-3.11.13").returncode == 0
    assert in_jail(emu, "fresh", "/usr/local/bin/python3.11", "-c", "print(6 * 7)").stdout == "42\n"
    # not a package at all
    (emu.jail_root("fresh") / MIRROR / "junk.pkg").write_bytes(b"not an archive\n")
    r = in_jail(emu, "fresh", "pkg", "add", f"/{MIRROR}/junk.pkg")
    assert r.returncode == 1 and "Unrecognized archive format" in r.stderr


def test_a_cold_cache_without_pkg_is_refused_before_anything_is_installed(emu: BastilleEmulator, ctx: Context) -> None:
    warm_cache(cache(emu), with_pkg=False)  # python311 only: pkg(8) cannot be bootstrapped
    backend = jails(emu, ctx)
    cold = r"cold package cache: missing pkg in /var/cache/colibri-pkg; nothing was installed"
    with pytest.raises(BastilleError, match=cold):
        backend.create("cold", ip="10.17.89.31", template=None)
    assert emu.run("list", "jails").stdout == ""


def test_the_agent_template_bootstraps_pkg_offline(emu: BastilleEmulator, ctx: Context) -> None:
    """A fresh thin jail and a warm cache (pkg + python311): pkg(8) is bootstrapped from the
    cached pkg package first, then the pinned packages are added, all without a network or a tty."""
    warm_cache(cache(emu))
    info = jails(emu, ctx).create("warm", ip="10.17.89.32", template=None)
    root = info.root
    assert (root / "usr/local/sbin/pkg").is_file()
    assert os.readlink(root / "usr/local/bin/python3.11") == "/usr/bin/python3"
    assert in_jail(emu, "warm", "pkg", "info", "-e", "python311-3.11.13").returncode == 0
    # applied again, it changes nothing
    r = in_jail(emu, "warm", "/bin/sh", "/usr/local/libexec/colibri/agent-jail-bootstrap.sh")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pkg already installed" in r.stdout and "python311-3.11.13 already installed" in r.stdout


# ---- the emulator's rc.subr, service(8) and daemon(8) ---------------------------------------------------
SLEEPER = """#!/bin/sh
# PROVIDE: ticker
. /etc/rc.subr
name="ticker"
rcvar="${name}_enable"
load_rc_config $name
: ${ticker_enable:="NO"}
pidfile="/var/run/${name}.pid"
procname="/usr/sbin/daemon"
command="/usr/sbin/daemon"
command_args="-f -R 1 -P ${pidfile} -p /var/run/${name}_child.pid -o /var/log/${name}.log -H -- \\
    /bin/sh -c 'while :; do echo tick; sleep 0.2; done'"
run_rc_command "$1"
"""


def wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_service_answers_like_rc_subr_and_daemon_supervises(emu: BastilleEmulator) -> None:
    create_plain(emu, "svc", "10.17.89.33")
    root = emu.jail_root("svc")
    script = root / "usr/local/etc/rc.d/ticker"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(SLEEPER)
    script.chmod(0o555)

    r = in_jail(emu, "svc", "service", "ticker", "start")  # not enabled: rc.subr's notice, exit 0
    assert (r.returncode, r.stdout) == (
        0,
        "Cannot 'start' ticker. Set ticker_enable to YES in /etc/rc.conf or use 'onestart' instead of 'start'.\n",
    )
    r = in_jail(emu, "svc", "service", "ticker", "onestart")
    assert (r.returncode, r.stdout) == (0, "Starting ticker.\n"), r.stderr
    supervisor = (root / "var/run/ticker.pid").read_text().split()[0]
    r = in_jail(emu, "svc", "service", "ticker", "onestart")
    assert (r.returncode, r.stdout, r.stderr) == (1, "", f"ticker already running?  (pid={supervisor}).\n")
    r = in_jail(emu, "svc", "service", "ticker", "onestatus")
    assert (r.returncode, r.stdout) == (0, f"ticker is running as pid {supervisor}.\n")

    # daemon(8): the child's pid in -p, its output through the supervisor into -o, restart after -R
    log = root / "var/log/ticker.log"
    assert wait_for(lambda: log.exists() and "tick" in log.read_text())
    child = (root / "var/run/ticker_child.pid").read_text().split()[0]
    assert in_jail(emu, "svc", "kill", "-KILL", child).returncode == 0
    # daemon(8) rewrites the pidfile in place (ftruncate, then write, as pidfile_write(3) does): a
    # reader may see it empty for a moment, as it may on FreeBSD
    assert wait_for(lambda: (root / "var/run/ticker_child.pid").read_text().split() not in ([], [child]))
    assert in_jail(emu, "svc", "service", "ticker", "onestatus").stdout == f"ticker is running as pid {supervisor}.\n"
    # -H: newsyslog moves the file and signals the supervisor, which reopens its output file
    log.rename(root / "var/log/ticker.log.0")
    assert in_jail(emu, "svc", "kill", "-HUP", supervisor).returncode == 0
    assert wait_for(lambda: log.exists() and "tick" in log.read_text())

    r = in_jail(emu, "svc", "service", "ticker", "onestop")
    assert r.returncode == 0 and r.stdout.startswith("Stopping ticker.\n"), r.stderr
    assert not (root / "var/run/ticker.pid").exists()
    r = in_jail(emu, "svc", "service", "ticker", "onestop")
    assert (r.returncode, r.stderr) == (1, "ticker not running? (check /var/run/ticker.pid).\n")
    r = in_jail(emu, "svc", "service", "ticker", "onestatus")
    assert (r.returncode, r.stdout) == (1, "ticker is not running.\n")


# ---- defects 2 and 3: start after stop, readiness, refusals ---------------------------------------------
def spawn_active(emu: BastilleEmulator, ctx: Context, invoke: Invoke, tenant: str) -> Bastille:
    warm_cache(cache(emu))
    assert invoke("register-tenant", tenant, "--collection", "")[0] == 0
    stage_secrets(ctx, tenant)
    backend = jails(emu, ctx)
    result = spawner(ctx, backend).spawn(tenant)
    assert result["status"] == "active", result
    return backend


def ready_lines(root: Path) -> list[str]:
    return re.findall(r"^mother\[\d+\]: ready: .*$", (root / "var/log/colibri_mother.log").read_text(), re.M)


def test_start_after_stop_and_reconcile_find_the_mother_rc_already_started(
    emu: BastilleEmulator, ctx: Context, invoke: Invoke
) -> None:
    warm_cache(cache(emu))
    for tenant in ("acme", "beta"):
        assert invoke("register-tenant", tenant, "--collection", "")[0] == 0
        stage_secrets(ctx, tenant)
    backend = jails(emu, ctx)
    assert spawner(ctx, backend).spawn_many(["acme", "beta"], parallelism=2) == {"acme": None, "beta": None}
    for tenant in ("acme", "beta"):  # both mothers said ready, each with its own .env
        assert len(ready_lines(backend.root(tenant))) == 1
        assert json.loads(invoke("show-tenant", tenant, "--json")[1])["data"]["status"] == "active"
    root = backend.root("acme")
    env = root / "home/agent/.env"
    assert (env.stat().st_mode & 0o777, env.stat().st_uid) == (0o600, backend.user_ids("acme", "agent")[0])
    service = AgentService(ctx.store, backend, ctx.settings.run_dir / "locks")

    assert service.stop("acme")["status"] == "stopped" and not emu.is_running("acme")
    # The jail's rc starts colibri_mother at boot; `service colibri_mother start` would now be
    # "already running?", exit 1.  start-agent asks first and waits for this boot's ready line.
    assert service.start("acme")["status"] == "active"
    assert len(ready_lines(root)) == 2
    pid = mother_pid(root)
    assert service.start("acme")["status"] == "active"  # again: idempotent, the same mother
    assert mother_pid(root) == pid and len(ready_lines(root)) == 2

    # a jail stopped behind colibri's back: reconcile --apply starts it and its mother
    assert emu.run("stop", "acme").returncode == 0
    drifts = Reconciler(ctx.store, service).reconcile(apply=True)
    assert [(d.kind, d.applied, d.error) for d in drifts] == [("stopped_jail", True, None)]
    assert emu.is_running("acme") and len(ready_lines(root)) == 3
    status = in_jail(emu, "acme", "service", MOTHER, "status")
    assert status.returncode == 0 and status.stdout.startswith(f"{MOTHER} is running as pid ")


def test_a_refusing_mother_is_never_active_and_does_not_loop(
    emu: BastilleEmulator, ctx: Context, invoke: Invoke
) -> None:
    backend = spawn_active(emu, ctx, invoke, "acme")
    root = backend.root("acme")
    service = AgentService(ctx.store, backend, ctx.settings.run_dir / "locks")
    service.stop("acme")
    (root / "home/agent/.env").chmod(0o644)  # the mother refuses an unsafe .env (exit 6, under daemon -R)

    with pytest.raises(MotherNotReady) as caught:
        service.start("acme")
    message = str(caught.value)
    assert "the mother skill refused to start in jail acme: /home/agent/.env has mode 0644" in message
    assert message.endswith("; jail acme was stopped again") and caught.value.exit_code == 17
    assert not emu.is_running("acme")
    record = json.loads(invoke("show-tenant", "acme", "--json")[1])["data"]
    assert record["status"] == "stopped"


def test_a_spawn_is_active_only_after_the_mothers_ready_line(
    emu: BastilleEmulator, ctx: Context, invoke: Invoke
) -> None:
    """Under daemon(8) the supervisor runs on while the mother refuses, so `service status` says
    running: the spawn must wait for the ready line, and fail with the refusal's reason."""
    warm_cache(cache(emu))
    backend = jails(emu, ctx)
    assert invoke("register-tenant", "beta", "--collection", "")[0] == 0
    stage_secrets(ctx, "beta")

    def spoil(tenant: str, step: str, state: str, detail: str) -> None:
        if (step, state) == ("mother_started", "start"):
            (backend.root(tenant) / "home/agent/.env").chmod(0o640)

    with pytest.raises(MotherNotReady, match=r"refused to start in jail beta: /home/agent/\.env has mode 0640"):
        spawner(ctx, backend).spawn("beta", on_step=spoil)
    record = json.loads(invoke("show-tenant", "beta", "--json")[1])["data"]
    assert record["status"] == "failed" and "refused to start" in record["last_error"]
    time.sleep(1.5)  # longer than daemon(8)'s old 1 s restart: no second refusal
    assert in_jail(emu, "beta", "service", MOTHER, "status").returncode == 1
    log = (backend.root("beta") / "var/log/colibri_mother.log").read_text()
    assert len(re.findall(r"refusing to start: ", log)) == 1, log


# ---- defect 8: one user variable ----------------------------------------------------------------------
def test_colibri_mother_user_is_the_one_documented_and_read(
    emu: BastilleEmulator, ctx: Context, invoke: Invoke
) -> None:
    backend = spawn_active(emu, ctx, invoke, "acme")
    root = backend.root("acme")
    script = (root / "usr/local/etc/rc.d/colibri_mother").read_text()
    assert "# colibri_mother_user (str):" in script and "colibri_mother_runas:=" not in script

    # the documented variable, set to its default, must not break start (rc.subr's su(1) wrapping)
    assert in_jail(emu, "acme", "sysrc", "colibri_mother_user=agent").returncode == 0
    r = in_jail(emu, "acme", "service", MOTHER, "restart")
    assert r.returncode == 0, r.stdout + r.stderr
    assert wait_for(lambda: len(ready_lines(root)) == 2)

    # another user is really the one the mother runs as (agent's home is closed to it)
    assert in_jail(emu, "acme", "pw", "useradd", "worker", "-u", "1002", "-m").returncode == 0
    assert in_jail(emu, "acme", "sysrc", "colibri_mother_user=worker").returncode == 0
    assert in_jail(emu, "acme", "service", MOTHER, "restart").returncode == 0
    log = root / "var/log/colibri_mother.log"
    refused = "refusing to start: cannot inspect /home/agent/.env: Permission denied"
    assert wait_for(lambda: refused in log.read_text()), log.read_text()
    assert in_jail(emu, "acme", "service", MOTHER, "stop").returncode == 0

    # a user the jail does not have: start refuses, saying which
    assert in_jail(emu, "acme", "sysrc", "colibri_mother_user=ghost").returncode == 0
    r = in_jail(emu, "acme", "service", MOTHER, "start")
    assert r.returncode == 1 and "colibri_mother_user ghost does not exist in this jail" in r.stderr


def test_a_disabled_mother_is_said_so_not_waited_for(emu: BastilleEmulator, ctx: Context, invoke: Invoke) -> None:
    backend = spawn_active(emu, ctx, invoke, "acme")
    assert in_jail(emu, "acme", "sysrc", "colibri_mother_enable=NO").returncode == 0
    service = AgentService(ctx.store, backend, ctx.settings.run_dir / "locks")
    service.stop("acme")
    with pytest.raises(MotherNotReady, match=r"did not start in jail acme: Cannot 'start' colibri_mother\. Set"):
        service.start("acme")
    assert not emu.is_running("acme")
