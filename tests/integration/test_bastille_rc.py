"""Issue 9, defects 1, 2, 3 and 8 on the bastille backend: pkg(7) in a fresh thin jail, rc.subr's
answers to service(8), the mother under daemon(8), and the mother's one user variable.

Everything runs for real in the bastille 1.4.4 emulator (tests/emulators/bastille): its /etc/rc.subr
(jailbin/rc.subr, after libexec/rc/rc.subr), service(8), daemon(8), su(1) and pkg(7)/pkg(8) stand-ins
(jailbin/_freebsd.py, after usr.sbin/service, usr.sbin/daemon/daemon.c, usr.sbin/pkg/pkg.c) run
the shipped template, bootstrap script and rc.d script unchanged, and the mother skill is the real
one (skills/mother), run by the jail's /usr/local/bin/python3.11 from the warm package cache.
"""

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from colibri.adapters.bastille import Bastille
from colibri.adapters.runner import ShRunner
from colibri.cli.context import Context
from colibri.errors import BastilleError
from colibri.resources import shipped
from colibri.services.spawn import SpawnPaths, SpawnService
from tests.emulators.bastille.fixtures import BastilleEmulator, bastille_emulator_fixture  # noqa: F401
from tests.emulators.bastille.packages import PKG_VERSION, warm_cache

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
    return emu


@pytest.fixture(name="ctx")
def ctx_fixture(emu: BastilleEmulator) -> Iterator[Context]:
    ctx = Context()
    yield ctx
    ctx.close()


def cache(emu: BastilleEmulator) -> Path:
    return emu.prefix / "releases" / emu.release / "var/cache/pkg"


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
    python = f"/var/cache/pkg/All/{all_dir.joinpath('python311-3.11.13.pkg').name}"
    r = in_jail(emu, "fresh", "pkg", "add", python)
    assert r.returncode == 1
    assert r.stderr.startswith("The package management tool is not yet installed on your system.\n")
    assert "non-interactive (stdin not being a tty)" in r.stderr
    assert in_jail(emu, "fresh", "pkg", "-N").stderr == "pkg: pkg is not installed\n"
    assert in_jail(emu, "fresh", "pkg", "info", "-e", "python311").returncode == 1

    local = f"/var/cache/pkg/All/pkg-{PKG_VERSION}.pkg"
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
    (emu.jail_root("fresh") / "var/cache/pkg/junk.pkg").write_bytes(b"not an archive\n")
    r = in_jail(emu, "fresh", "pkg", "add", "/var/cache/pkg/junk.pkg")
    assert r.returncode == 1 and "Unrecognized archive format" in r.stderr


def test_a_cold_cache_without_pkg_is_refused_before_anything_is_installed(emu: BastilleEmulator, ctx: Context) -> None:
    warm_cache(cache(emu), with_pkg=False)  # python311 only: pkg(8) cannot be bootstrapped
    backend = jails(emu, ctx)
    cold = r"cold package cache: missing pkg in /var/cache/pkg; nothing was installed"
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
