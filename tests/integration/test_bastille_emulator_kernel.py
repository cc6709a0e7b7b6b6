"""The emulator's kernel side (jail parameters, jls, rctl, sysctl, ``bastille limits``) behaves like
FreeBSD 14 and Bastille 1.4.4 (limits.sh, start.sh, stop.sh; usr.bin/rctl/rctl.c, sys/kern/kern_rctl.c,
usr.sbin/jls/jls.c, lib/libjail): strict where they are strict, lying where they lie."""

from __future__ import annotations

import subprocess

import pytest

from tests.emulators.bastille.fixtures import BastilleEmulator, bastille_emulator_fixture  # noqa: F401

pytestmark = pytest.mark.integration

REL = "14.3-RELEASE"


def run(emu: BastilleEmulator, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), env={**emu.env, **env}, capture_output=True, text=True, timeout=60)


@pytest.fixture(name="emu")
def emu_fixture(bastille_emulator: BastilleEmulator) -> BastilleEmulator:
    r = bastille_emulator.run("create", "j1", REL, "10.17.89.20")
    assert r.returncode == 0 and bastille_emulator.is_running("j1"), r.stderr
    return bastille_emulator


def test_jls_reports_kernel_defaults_and_rejects_unknown_parameters(emu: BastilleEmulator) -> None:
    r = run(emu, "jls", "-j", "j1", "-h", "securelevel", "enforce_statfs", "allow.raw_sockets", "allow.set_hostname",
            "sysvshm", "children.max")  # fmt: skip
    # Bastille's jail.conf sets securelevel 2 / enforce_statfs 2; the rest are FreeBSD's defaults
    assert (r.returncode, r.stdout) == (0, "securelevel enforce_statfs allow.raw_sockets allow.set_hostname "
                                        "sysvshm children.max\n2 2 false true disable 0\n")  # fmt: skip
    r = run(emu, "jls", "-j", "j1", "-n", "allow.raw_sockets", "allow.set_hostname")
    assert r.stdout == "allow.noraw_sockets allow.set_hostname\n"
    r = run(emu, "jls", "-j", "j1", "allow.nosuch")
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "jls: unknown parameter: allow.nosuch\n")
    r = run(emu, "jls", "-j", "nojail", "allow.nosuch")  # parameters are looked up before the jail
    assert r.stderr == "jls: unknown parameter: allow.nosuch\n"


def test_jail_conf_parameters_are_live_and_unknown_ones_stop_the_start(emu: BastilleEmulator) -> None:
    for param, value in (("allow.raw_sockets", "1"), ("sysvshm", "new"), ("children.max", "3")):
        assert emu.run("config", "j1", "set", param, value).returncode == 0
    assert emu.run("restart", "j1").returncode == 0
    r = run(emu, "jls", "-j", "j1", "-h", "allow.raw_sockets", "sysvshm", "children.max")
    assert r.stdout.splitlines()[1] == "true new 3"
    conf = emu.jails_dir / "j1" / "jail.conf"
    conf.write_text(conf.read_text().replace("  children.max = 3;", "  allow.frobnicate = 1;"))
    r = emu.run("restart", "j1")
    assert r.returncode == 0  # start.sh ignores jail -c's status
    assert "jail: j1: unknown parameter: allow.frobnicate" in r.stderr and not emu.is_running("j1")


def test_config_set_rejects_what_config_sh_rejects(emu: BastilleEmulator) -> None:
    r = emu.run("config", "j1", "set", "allow.frobnicate", "1")
    assert (r.returncode, r.stderr) == (1, "[ERROR]: Unsupported property: allow.frobnicate\n")


def test_sysctl_and_rctl_on_a_host_without_racct(emu: BastilleEmulator) -> None:
    assert run(emu, "sysctl", "-n", "kern.racct.enable").stdout == "1\n"
    r = run(emu, "sysctl", "-n", "kern.racct.enable", BASTILLE_EMU_RACCT="0")
    assert (r.returncode, r.stdout) == (0, "0\n")
    r = run(emu, "sysctl", "-n", "kern.racct.enable", BASTILLE_EMU_RACCT="absent")
    assert (r.returncode, r.stderr) == (1, "sysctl: unknown oid 'kern.racct.enable'\n")
    r = run(emu, "sysctl", "kern.racct.enable=1")
    assert r.returncode == 1 and "read only tunable" in r.stderr
    r = run(emu, "rctl", "-a", "jail:j1:maxproc:deny=10/jail", BASTILLE_EMU_RACCT="0")
    assert (r.returncode, r.stderr) == (
        1, "rctl: RACCT/RCTL present, but disabled; enable using kern.racct.enable=1 tunable\n")  # fmt: skip
    r = run(emu, "rctl", "jail:j1", BASTILLE_EMU_RACCT="absent")
    assert r.stderr == "rctl: RACCT/RCTL support not present in kernel; see rctl(8) for details\n"
    r = run(emu, "rctl", "-a", "jail:j1:maxproc:deny=10/jail", BASTILLE_EMU_RACCT="no-rctl")
    assert r.stderr == "rctl: failed to add rule 'jail:j1:maxproc:deny=10/jail': Function not implemented\n"


def test_rctl_rules_as_the_kernel_keeps_them(emu: BastilleEmulator) -> None:
    assert run(emu, "rctl", "-a", "jail:j1:memoryuse:deny=1G/jail", "j:j1:maxproc:deny=64").returncode == 0
    assert run(emu, "rctl", "jail:j1").stdout == "jail:j1:memoryuse:deny=1073741824\njail:j1:maxproc:deny=64\n"
    assert run(emu, "rctl", "-h", "jail:j1:memoryuse").stdout == "jail:j1:memoryuse:deny=1.0G\n"
    assert run(emu, "rctl", "-a", "jail:j1:memoryuse:deny=2G/jail").returncode == 0  # replaces the deny rule
    assert run(emu, "rctl", "jail:j1:memoryuse").stdout == "jail:j1:memoryuse:deny=2147483648\n"
    r = run(emu, "rctl", "-a", "jail:j1:bogus:deny=1/jail", "jail:j1:cputime:deny=10/jail", "jail:j1:nthr:deny=x")
    assert r.returncode == 3 and r.stderr.splitlines() == [
        "rctl: failed to add rule 'jail:j1:bogus:deny=1/jail': Invalid argument",
        "rctl: failed to add rule 'jail:j1:cputime:deny=10/jail': Operation not supported",
        "rctl: malformed rule 'jail:j1:nthr:deny=x': invalid numeric value 'x'",
    ]
    assert run(emu, "rctl", "-r", "jail:j1:").returncode == 0
    r = run(emu, "rctl", "-r", "jail:j1:")
    assert (r.returncode, r.stderr) == (1, "rctl: failed to remove rule 'jail:j1:': No such process\n")


def test_bastille_limits_as_limits_sh_does_it(emu: BastilleEmulator) -> None:
    r = emu.run("limits", "j1", "add", "maxproc", "64")
    assert (r.returncode, r.stderr) == (0, "\n[j1]:\nmaxproc 64\n")
    assert (emu.jails_dir / "j1" / "rctl.conf").read_text() == "jail:j1:maxproc:deny=64/jail\n"
    # an update: the kernel gets the new value, rctl.conf keeps the old line (limits.sh's sed never matches)
    assert emu.run("limits", "j1", "maxproc", "128").returncode == 0  # no action word: add
    assert run(emu, "rctl", "jail:j1").stdout == "jail:j1:maxproc:deny=128\n"
    assert (emu.jails_dir / "j1" / "rctl.conf").read_text() == "jail:j1:maxproc:deny=64/jail\n"
    # a rule the kernel refuses: rctl's status is the script's
    r = emu.run("limits", "j1", "add", "cputime", "10")
    assert (
        r.returncode == 1
        and "rctl: failed to add rule 'jail:j1:cputime:deny=10/jail': Operation not supported" in r.stderr
    )
    # restart: stop clears the kernel's rules, start re-adds rctl.conf (the stale value comes back)
    assert emu.run("restart", "j1").returncode == 0
    assert run(emu, "rctl", "jail:j1:maxproc").stdout == "jail:j1:maxproc:deny=64\n"
    assert emu.run("limits", "j1", "remove", "maxproc").returncode == 0
    assert run(emu, "rctl", "jail:j1:maxproc").stdout == ""
    # a stopped jail: skipped, exit 0
    assert emu.run("stop", "j1").returncode == 0
    r = emu.run("limits", "j1", "add", "maxproc", "64")
    assert r.returncode == 0 and "Jail is not running.\nUse [-a|--auto] to auto-start the jail." in r.stderr


def test_bastille_limits_without_racct_exits_1_before_anything(emu: BastilleEmulator) -> None:
    r = emu.run("limits", "j1", "add", "maxproc", "64", env={"BASTILLE_EMU_RACCT": "0", "BASTILLE_EMU_UID": "1001"})
    assert r.returncode == 1  # the racct check comes before the root check
    assert r.stderr == "[ERROR]: Racct not enabled. Append 'kern.racct.enable=1' to /boot/loader.conf and reboot\n"
    assert not (emu.jails_dir / "j1" / "rctl.conf").exists()
    r = emu.run("limits", "j1", env={"BASTILLE_EMU_RACCT": "1"})
    assert r.returncode == 1 and "Usage: bastille limits" in r.stderr
