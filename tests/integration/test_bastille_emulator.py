"""The bastille 1.4.4 emulator behaves like the reference says the real tool does.

References in test names and messages are to /work/shared/reference/bastille.md (ref §N).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from tests.emulators.bastille.fixtures import BastilleEmulator, bastille_emulator_fixture  # noqa: F401

pytestmark = pytest.mark.integration

REL = "14.3-RELEASE"


def create(emu: BastilleEmulator, name: str, ip: str, *opts: str) -> None:
    r = emu.run("create", *opts, name, REL, ip)
    assert r.returncode == 0, r.stderr
    assert emu.is_running(name)


# ---------------------------------------------------------------------------- global options (ref §1)


def test_version_is_on_stderr_and_usage_exits_1(bastille_emulator: BastilleEmulator) -> None:
    emu = bastille_emulator
    for flag in ("--version", "-v", "version"):
        r = emu.run(flag)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "1.4.4\n")  # ref §1.5: 1.4.x -> stderr
    r = emu.run("--version", env={"BASTILLE_EMU_VERSION": "2.0.0"})
    assert r.stderr == "2.0.0\n"
    for argv in ([], ["-h"], ["help"], ["frobnicate"]):
        r = emu.run(*argv)
        assert r.returncode == 1 and "Usage:\n  bastille [option(s)] COMMAND" in r.stdout
    r = emu.run("-q", "list")  # master's -q/-j/-p are not 1.4.4 global options (ref §8.6)
    assert (r.returncode, r.stderr) == (1, 'Unknown Option: "-q"\n')
    r = emu.run("-c", str(emu.conf_path), "list")  # -c only takes names under /usr/local/etc/bastille
    assert r.returncode == 1 and f"Not a valid config file: {emu.conf_path}" in r.stderr


def test_root_prefix_mode_and_missing_config(bastille_emulator: BastilleEmulator) -> None:
    emu = bastille_emulator
    r = emu.run("list", "jails", env={"BASTILLE_EMU_UID": "1001"})
    assert r.returncode == 1
    assert r.stderr == "Bastille: Permission Denied\nroot / sudo / doas required\n"
    assert emu.run("--version", env={"BASTILLE_EMU_UID": "1001"}).returncode == 0
    emu.prefix.chmod(0o755)
    r = emu.run("list", "jails")
    assert r.returncode == 1 and f"Insecure permissions on {emu.prefix}\nTry: chmod 0750" in r.stderr
    emu.prefix.chmod(0o750)
    r = emu.run("--version", env={"BASTILLE_CONFIG": str(emu.prefix / "missing.conf")})
    assert r.returncode == 1 and "[ERROR]: No config file found!" in r.stdout


# ---------------------------------------------------------------------------- create (ref §2.2, §3)


def test_name_validation_messages(bastille_emulator: BastilleEmulator) -> None:
    emu = bastille_emulator
    cases = {
        ("_agent",): "[ERROR]: Jail names may not begin with (-|_) characters!",
        ("agent.1",): "[ERROR]: Jail names may not contain special characters!",
        ("12345",): "[ERROR]: Jail names may not contain only digits.",
        ("-V", "agent_1"): "[ERROR]: VNET jail names may not contain (-|_) characters.",
    }
    for argv, message in cases.items():
        *opts, name = argv
        extra = ["em0"] if opts else []
        r = emu.run("create", *opts, name, REL, "10.17.89.20", *extra)
        assert r.returncode == 1, argv
        assert message in r.stderr.splitlines(), (argv, r.stderr)
        assert not (emu.jails_dir / name).exists()
    r = emu.run("create", "-T", "-C", "x1", REL, "10.17.89.20")
    assert "[ERROR]: Clonejail and Thickjail can't be used together." in r.stderr
    r = emu.run("create", "x1", "13.9-RELEASE", "10.17.89.20")
    assert r.returncode == 1 and "[ERROR]: Release must be bootstrapped first." in r.stderr
    r = emu.run("create", "x1", REL, "10.17.89.300")
    assert r.returncode == 1 and "[ERROR]: Invalid IP: 10.17.89.300" in r.stderr
    r = emu.run("create", "x1", REL)
    assert r.returncode == 1 and "Usage: bastille create [option(s)] NAME RELEASE IP [INTERFACE]" in r.stderr


def test_create_thin_and_thick_layouts(bastille_emulator: BastilleEmulator) -> None:
    emu = bastille_emulator
    r = emu.run("create", "colibri1", REL, "10.17.89.10")
    assert r.returncode == 0, r.stderr
    # jail(8)'s lines are on stdout (with the template's sysrc/cp -v output); status lines on stderr
    jail8 = [x for x in r.stdout.splitlines() if x.startswith("colibri1: ")]
    assert jail8 == ["colibri1: created", "colibri1: removed", "colibri1: created"]
    assert "sendmail_enable: NO -> NO" in r.stdout.splitlines()  # sysrc output, via jexec
    for line in ("Creating jail: colibri1...", "Valid IP: 10.17.89.10", "Creating a thinjail...",
                 "Applying template: default/thin...", "Template applied: default/thin"):  # fmt: skip
        assert line in r.stderr.splitlines()
    jail = emu.jails_dir / "colibri1"
    root = jail / "root"
    assert stat.S_IMODE(jail.stat().st_mode) == 0o700
    assert os.readlink(root / "bin") == "/.bastille/bin"  # thin = absolute links (ref §3, §8.9)
    assert os.readlink(root / "usr" / "lib") == "/.bastille/usr/lib"
    assert (root / "etc").is_dir() and not (root / "etc").is_symlink()
    assert (root / "usr" / "local").is_dir() and (root / ".bastille").is_dir()
    fstab = (jail / "fstab").read_text()
    assert fstab == f"{emu.prefix}/releases/{REL} {root}/.bastille nullfs ro 0 0\n"
    conf = (jail / "jail.conf").read_text()
    assert "  ip4.addr = bastille0|10.17.89.10;\n" in conf and f"  path = {root};\n" in conf
    assert (jail / "settings.conf").read_text() == 'boot="on"\ndepend=""\npriority="99"\n'
    assert 'sendmail_enable="NO"' in (root / "etc" / "rc.conf").read_text()  # default/base template ran

    r = emu.run("create", "-T", "--no-boot", "-p", "10", "thick1", REL, "10.17.89.11")
    assert r.returncode == 0, r.stderr
    troot = emu.jail_root("thick1")
    assert (troot / "bin").is_dir() and not (troot / "bin").is_symlink()
    assert (troot / "bin" / "freebsd-version").is_file()
    assert (emu.jails_dir / "thick1" / "fstab").read_text() == ""
    assert 'priority="10"' in (emu.jails_dir / "thick1" / "settings.conf").read_text()

    table = emu.run("list").stdout.splitlines()
    assert table[0].split() == ["JID", "Name", "Boot", "Prio", "State", "Type", "IP", "Address", "Published",
                                "Ports", "Release", "Tags"]  # fmt: skip
    rows = {line.split()[1]: line.split() for line in table[1:]}
    assert rows["colibri1"][2:7] == ["on", "99", "Up", "thin", "10.17.89.10"]
    assert rows["thick1"][2:7] == ["off", "10", "Up", "thick", "10.17.89.11"]
    assert emu.run("list", "jails").stdout == "colibri1\nthick1\n"
    assert '"Name":"thick1","Boot":"off"' in emu.run("list", "-j").stdout


# ---------------------------------------------------------------------------- start/stop/destroy (ref §2.3, §2.4, §7)


def test_lying_exit_codes_of_start_stop_destroy(bastille_emulator: BastilleEmulator) -> None:
    emu = bastille_emulator
    create(emu, "web1", "10.17.89.12")
    r = emu.run("start", "web1")
    assert (r.returncode, r.stderr) == (0, "\n[web1]:\nJail is already running.\n")
    r = emu.run("destroy", "-y", "web1")  # running, no -a: skipped, exit 0 (ref §8.2)
    assert r.returncode == 0 and "Jail is running.\nUse [-a|--auto] to auto-stop the jail." in r.stderr
    assert emu.is_running("web1") and (emu.jails_dir / "web1").is_dir()
    assert emu.run("stop", "web1").stdout == "web1: removed\n"
    r = emu.run("stop", "web1")
    assert (r.returncode, r.stderr) == (0, "\n[web1]:\nJail is already stopped.\n")
    r = emu.run("destroy", "web1")  # prompts; no answer on stdin -> exit 1, nothing removed
    assert r.returncode == 1 and "[ERROR]: Invalid input. Please answer 'y' or 'n'." in r.stderr
    r = emu.run("destroy", "web1", input="n\n")
    assert r.returncode == 1 and "[ERROR]: Cancelled by user." in r.stderr
    assert (emu.jails_dir / "web1").is_dir()
    emu.run("start", "web1")
    r = emu.run("destroy", "-afy", "web1")
    assert r.returncode == 0, r.stderr
    assert not (emu.jails_dir / "web1").exists()
    r = emu.jls("-j", "web1", "name")
    assert (r.returncode, r.stderr) == (1, 'jls: jail "web1" not found\n')
    r = emu.run("start", "web1")
    assert (r.returncode, r.stderr) == (1, 'Jail not found "web1"\n')


# ---------------------------------------------------------------------------- TARGET (ref §1.7, §8.5)


def test_target_resolution_hazards(bastille_emulator: BastilleEmulator) -> None:
    emu = bastille_emulator
    create(emu, "agent10", "10.17.89.13")
    create(emu, "web1", "10.17.89.14", "--tags", "front")
    create(emu, "web2", "10.17.89.15", "--tags", "front")
    hostname = ("cmd", "/bin/hostname")
    # prefix autocomplete: "agent1" silently selects agent10
    r = emu.run(hostname[0], "agent1", hostname[1])
    assert (r.returncode, r.stdout, r.stderr) == (0, "agent10\n", "\n[agent10]:\n")
    r = emu.run(hostname[0], "web", hostname[1])
    assert r.returncode == 1 and r.stderr.startswith("Multiple jails found for web:\nweb1\nweb2")
    # all digits = a JID
    jid = emu.jls("-j", "web2", "jid").stdout.strip()
    assert emu.run(hostname[0], jid, hostname[1]).stdout == "web2\n"
    r = emu.run(hostname[0], "999", hostname[1])
    assert r.returncode == 1 and 'Error: JID "999" not found. Is jail running?' in r.stderr
    # ALL (sorted by priority), space-separated lists in one word, tags
    assert emu.run(hostname[0], "ALL", hostname[1]).stdout.split() == ["agent10", "web1", "web2"]
    assert emu.run(hostname[0], "web2 agent10", hostname[1]).stdout.split() == ["agent10", "web2"]
    assert emu.run(hostname[0], "front", hostname[1]).stdout.split() == ["web1", "web2"]
    r = emu.run(hostname[0], "nosuch", hostname[1])
    assert (r.returncode, r.stderr) == (1, 'Jail not found "nosuch"\n')


# ---------------------------------------------------------------------------- cmd (ref §2.6, §8.4)


def test_cmd_really_runs_inside_the_jail(bastille_emulator: BastilleEmulator) -> None:
    emu = bastille_emulator
    create(emu, "box", "10.17.89.16")
    r = emu.run("cmd", "box", "/bin/sh", "-c", "id -u; cat /etc/passwd")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "0"
    assert "root:*:0:0:Charlie &:/root:/bin/csh" in out  # the jail's FreeBSD passwd, not the host's
    assert r.stderr == "\n[box]:\n"  # the header is on stderr in 1.4.x
    # jexec -l: clean environment, no shell, stdin passed through, cwd = home
    r = emu.run("cmd", "box", "/bin/sh", "-c", 'echo "[$LEAK]" "$HOME" "$(pwd)"; cat', input="secret\n",
                env={"LEAK": "host-value"})  # fmt: skip
    assert r.stdout == "[] /root /root\nsecret\n"
    r = emu.run("cmd", "box", "echo", "a;", "b")
    assert r.stdout == "a; b\n"
    # exit codes collapse to 0/1 (ref §2.6)
    r = emu.run("cmd", "box", "/bin/sh", "-c", "exit 3")
    assert (r.returncode, r.stderr) == (1, "\n[box]:\n[ERROR]: Command failed on 1 jails.\n")
    assert r.stdout == "\n"
    r = emu.run("cmd", "box", "no-such-program")
    assert r.returncode == 1 and "jexec: execvp: no-such-program: No such file or directory" in r.stderr
    # files written inside are on the host under jails/NAME/root; processes outlive the cmd
    r = emu.run("cmd", "box", "/bin/sh", "-c", "echo hi > /usr/local/x && (sleep 30 >/dev/null 2>&1 &)")
    assert r.returncode == 0, r.stderr
    assert (emu.jail_root("box") / "usr" / "local" / "x").read_text() == "hi\n"
    assert "sleep 30" in emu.run("cmd", "box", "ps", "-eo", "args").stdout
    # a stopped jail: the command never runs, exit 0 (ref §7)
    emu.run("stop", "box")
    r = emu.run("cmd", "box", "/bin/sh", "-c", "touch /tmp/ran")
    assert r.returncode == 0 and "Jail is not running." in r.stderr
    assert not (emu.jail_root("box") / "tmp" / "ran").exists()


# ---------------------------------------------------------------------------- mount, template (ref §2.8, §2.10)


def test_mount_template_and_arg_eval(bastille_emulator: BastilleEmulator, tmp_path: Path) -> None:
    emu = bastille_emulator
    create(emu, "tpl", "10.17.89.17")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "hello").write_text("from host\n")
    r = emu.run("mount", "tpl", str(shared), "/mnt/shared")  # default: nullfs ro
    assert r.returncode == 0, r.stderr
    assert f"Added: {shared} {emu.jail_root('tpl')}/mnt/shared nullfs ro 0 0" in r.stderr
    assert emu.run("cmd", "tpl", "cat", "/mnt/shared/hello").stdout == "from host\n"
    assert emu.run("cmd", "tpl", "touch", "/mnt/shared/x").returncode == 1  # read-only
    assert emu.run("umount", "tpl", "/mnt/shared").returncode == 0
    assert emu.run("cmd", "tpl", "ls", "/mnt/shared").stdout == ""
    tdir = emu.prefix / "templates" / "local" / "agent"
    (tdir / "usr" / "local" / "etc").mkdir(parents=True)
    (tdir / "usr" / "local" / "etc" / "agent.conf").write_text("name=${NAME} jail=${JAIL_NAME}\n")
    (tdir / "Bastillefile").write_text(
        "ARG+ NAME\n"
        "ARG GREETING=hello\n"
        "ARG HOMEVAR\n"
        "CMD pw useradd ${NAME} -m -s /bin/sh\n"
        "CP usr /\n"
        "RENDER /usr/local/etc/agent.conf\n"
        'SYSRC agent_greeting="${GREETING}"\n'
        'CMD echo "${HOMEVAR}" > /tmp/homevar\n'
        "PKG py311-httpx\n"
    )
    r = emu.run("template", "tpl", "local/agent")
    assert r.returncode == 1 and "[ERROR]: No value provided for mandatory arg: NAME" in r.stderr
    r = emu.run(
        "template", "tpl", "local/agent", "--arg", "NAME=agent", "--arg", 'GREETING=say "hi" there',
        "--arg", "HOMEVAR=$EMU_TEST_SECRET", env={"EMU_TEST_SECRET": "expanded-on-host"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    root = emu.jail_root("tpl")
    assert "agent:*:1001:1001:User &:/home/agent:/bin/sh" in (root / "etc" / "passwd").read_text()
    assert (root / "usr" / "local" / "etc" / "agent.conf").read_text() == "name=agent jail=tpl\n"
    # --arg values go through the host shell: quotes stripped, $VAR expanded (ref §8.10)
    assert 'agent_greeting="say hi there"' in (root / "etc" / "rc.conf").read_text()
    assert (root / "tmp" / "homevar").read_text() == "expanded-on-host\n"
    assert emu.run("cmd", "tpl", "pkg", "info", "py311-httpx").returncode == 0
    r = emu.run("pkg", "tpl", "install", "-y", "nope", env={"BASTILLE_EMU_PKG_AVAILABLE": "py311-httpx"})
    assert r.returncode == 1 and "No packages available to install matching 'nope'" in r.stderr
    assert emu.run("config", "tpl", "get", "ip4.addr").stdout == "bastille0|10.17.89.17\n"
    assert emu.run("config", "tpl", "get", "allow.mlock").stdout == "not set\n"
    assert emu.run("sysrc", "tpl", "-n", "agent_greeting").stdout == "say hi there\n"


# ---------------------------------------------------------------------------- fault injection (README)


def test_fault_injection(bastille_emulator: BastilleEmulator) -> None:
    emu = bastille_emulator
    create(emu, "f1", "10.17.89.18")
    emu.run("stop", "f1")
    r = emu.run("start", "f1", env={"BASTILLE_EMU_FAIL": "start"})  # jail -c fails, exit 0 (ref §2.3)
    assert r.returncode == 0 and "emulated failure" in r.stderr and not emu.is_running("f1")
    r = emu.run("destroy", "-afy", "f1", env={"BASTILLE_EMU_FAIL": "destroy:busy"})
    assert r.returncode == 0 and "[ERROR]: Jail dataset(s) appears to be busy, exiting." in r.stderr
    assert (emu.jails_dir / "f1" / "jail.conf").is_file()
    # start fails inside create: the half-made jail is destroyed, exit 1 (ref §2.2 step 6)
    r = emu.run("create", "f2", REL, "10.17.89.19", env={"BASTILLE_EMU_FAIL": "start"})
    assert r.returncode == 1 and "[ERROR]: Failed to create jail: f2" in r.stderr
    assert not (emu.jails_dir / "f2").exists()
    # copying the release fails right after root/ exists: the cleanup prompts, residue stays (ref §4.6)
    r = emu.run("create", "f3", REL, "10.17.89.21", env={"BASTILLE_EMU_FAIL": "create:after-root"})
    assert r.returncode == 1 and "[ERROR]: Failed to copy release files. Please retry create!" in r.stderr
    assert (emu.jails_dir / "f3" / "root").is_dir()
    assert "f3" in emu.run("list", "jails").stdout.split()
    assert not emu.is_running("f3")
    r = emu.run("cmd", "f1", "true", env={"BASTILLE_EMU_FAIL": "cmd"})
    assert r.returncode == 0  # f1 is stopped: "Jail is not running." wins
    assert re.search(r"Jail is not running\.", r.stderr)
