"""The shipped shell scripts: syntax, and the rc.d script's command line against the real CLI.

FreeBSD's rc.subr is not here, so the rc.d script is sourced under a stub rc.subr (written
below) whose ``run_rc_command`` prints what the real one would run.  The daemon(8) flags are
checked against daemon(8)'s own getopt string, and the ``colibri ...`` argv after ``--`` is
parsed by colibri's own typer app, so an option the daemon does not have fails here.
"""

import getopt
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from colibri.cli.app import app
from tests.conftest import REPO

RC_SCRIPT = REPO / "etc/rc.d/colibri"
SHIPPED_SH = sorted(
    {RC_SCRIPT, REPO / "jails/agent-jail-bootstrap.sh", REPO / "jails/agent/sandbox/etc/rc"}
    | set((REPO / "jails").glob("**/rc.d/*"))
)
# usr.sbin/daemon/daemon.c (FreeBSD 14): the short options daemon(8) accepts.
DAEMON_GETOPT = "cfHSp:P:ru:o:s:l:t:m:R:T:h"

STUB_RC_SUBR = r"""
# A stand-in for /etc/rc.subr: enough of it to run the rc.d script and print what it would do.
load_rc_config() { if [ -n "${TEST_RC_CONF:-}" ]; then . "$TEST_RC_CONF"; fi; }
check_pidfile() { case "$1" in *_child.pid) echo 222 ;; *) echo 111 ;; esac; }
kill() { echo "kill $*"; }
install() { echo "install $*"; }
run_rc_command() {
    case "$1" in
    start)
        eval "rc_flags=\$${name}_flags"
        for var in name rcvar pidfile procname command command_interpreter required_files \
                   extra_commands start_precmd reload_cmd status_cmd; do
            eval "echo \"$var=\${$var-<unset>}\""
        done
        eval "echo \"user=\${${name}_user-<unset>}\""
        eval "echo \"env=\${${name}_env-<unset>}\""
        eval "set -- $command $rc_flags $command_args"
        for arg in "$@"; do echo "argv:$arg"; done
        eval "$start_precmd"
        ;;
    reload) eval "$reload_cmd" ;;
    status) eval "$status_cmd" ;;
    esac
}
"""


def test_shipped_scripts_found() -> None:
    names = {p.relative_to(REPO).as_posix() for p in SHIPPED_SH}
    assert "etc/rc.d/colibri" in names
    assert "jails/agent/overlay/usr/local/etc/rc.d/colibri_mother" in names
    assert "jails/agent/sandbox/etc/rc.d/colibri_mother" in names


@pytest.mark.integration  # runs sh(1) on the script
@pytest.mark.parametrize("script", SHIPPED_SH, ids=lambda p: p.relative_to(REPO).as_posix())
def test_sh_syntax(script: Path) -> None:
    assert script.read_text().startswith("#!/bin/sh\n"), f"{script} must be a /bin/sh script"
    assert os.access(script, os.X_OK), f"{script} must be executable (rc(8) skips it otherwise)"
    result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


FREEBSD_RC = [p for p in SHIPPED_SH if p.parent.name == "rc.d" and "overlay" in p.parts] + [RC_SCRIPT]


@pytest.mark.parametrize("script", FREEBSD_RC, ids=lambda p: p.name)
def test_rc_headers(script: Path) -> None:
    text = script.read_text()
    name = script.name
    assert f"# PROVIDE: {name}\n" in text
    assert "# REQUIRE: " in text
    assert "# KEYWORD: shutdown\n" in text
    assert f'name="{name}"' in text
    assert 'rcvar="${name}_enable"' in text
    assert text.rstrip().endswith('run_rc_command "$1"')


def run_rc_process(tmp_path: Path, verb: str, rc_conf: str = "") -> subprocess.CompletedProcess[str]:
    """Run the rc.d script with ``verb`` under the stub rc.subr and the given rc.conf lines."""
    text = RC_SCRIPT.read_text()
    assert text.count("\n. /etc/rc.subr\n") == 1
    stub = tmp_path / "rc.subr"
    stub.write_text(STUB_RC_SUBR)
    script = tmp_path / "colibri.rc"
    script.write_text(text.replace("\n. /etc/rc.subr\n", f"\n. {stub}\n"))
    conf = tmp_path / "rc.conf"
    conf.write_text(rc_conf)
    env = {**os.environ, "TEST_RC_CONF": str(conf)}
    return subprocess.run(["sh", str(script), verb], capture_output=True, text=True, env=env, check=False)


def run_rc(tmp_path: Path, verb: str, rc_conf: str = "") -> list[str]:
    """Run the rc.d script and return its output lines; it must succeed."""
    result = run_rc_process(tmp_path, verb, rc_conf)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def report(lines: list[str]) -> tuple[dict[str, str], list[str]]:
    fields = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("argv:"))
    argv = [line.removeprefix("argv:") for line in lines if line.startswith("argv:")]
    return fields, argv


def split_daemon(argv: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """daemon(8)'s options (parsed with its own getopt string) and the child's argv."""
    assert argv[0] == "/usr/sbin/daemon"
    assert "--" in argv, "end daemon(8)'s options with -- so the child's options are never its own"
    opts, child = getopt.getopt(argv[1:], DAEMON_GETOPT)
    flags: dict[str, list[str]] = {}
    for flag, value in opts:
        flags.setdefault(flag, []).append(value)
    return flags, child


def parse_colibri(args: list[str]) -> list[tuple[str, dict[str, object]]]:
    """Parse a colibri command line with colibri's own app, down to the last subcommand."""
    command = typer.main.get_command(app)
    ctx = command.make_context("colibri", list(args))
    parsed: list[tuple[str, dict[str, object]]] = [("colibri", dict(ctx.params))]
    while True:
        rest = [*ctx._protected_args, *ctx.args]  # what the group hands to its subcommand
        if not rest or not hasattr(command, "resolve_command"):
            assert not rest, f"arguments left over: {rest}"
            return parsed
        name, sub, rest = command.resolve_command(ctx, rest)
        assert name is not None and sub is not None
        ctx = sub.make_context(name, rest, parent=ctx)
        parsed.append((name, dict(ctx.params)))
        command = sub


def child_colibri_args(child: list[str]) -> list[str]:
    assert child[0] == "/usr/local/bin/python3.11", "an absolute interpreter: service(8) gives a minimal PATH"
    assert child[1:3] == ["-m", "colibri"]
    return child[3:]


@pytest.mark.integration  # runs sh(1) on the script
def test_rc_start_defaults(tmp_path: Path) -> None:
    fields, argv = report(run_rc(tmp_path, "start"))
    assert fields["name"] == "colibri" and fields["rcvar"] == "colibri_enable"
    assert fields["command"] == "/usr/sbin/daemon"
    assert fields["procname"] == "daemon"
    assert fields["command_interpreter"] == "<unset>"
    assert fields["user"] == "<unset>", "colibri_user must not reach rc.subr (it would wrap daemon(8) in su)"
    assert "reload" in fields["extra_commands"].split()
    assert fields["required_files"].split() == ["/usr/local/etc/colibri/colibri.toml", "/usr/local/bin/python3.11"]
    assert "/usr/local/bin" in fields["env"]

    flags, child = split_daemon(argv)
    assert flags["-P"] == [fields["pidfile"]], "pidfile must be the supervisor's (-P) so stop reaches the supervisor"
    assert flags["-p"] == ["/var/run/colibri_child.pid"] != flags["-P"]
    assert "-r" in flags and flags["-R"] == ["5"]
    assert flags["-o"] == ["/var/log/colibri/colibri.log"] and "-H" in flags
    assert "-u" not in flags and "-S" not in flags

    parsed = parse_colibri(child_colibri_args(child))
    assert [name for name, _ in parsed] == ["colibri", "daemon"]
    assert parsed[0][1]["config"] == Path("/usr/local/etc/colibri/colibri.toml")
    assert parsed[1][1]["log_target"] == "stderr"
    assert "install -d -m 0750 /var/log/colibri" in run_rc(tmp_path, "start")


@pytest.mark.integration  # runs sh(1) on the script
def test_rc_start_syslog_user_and_overrides(tmp_path: Path) -> None:
    conf = (
        'colibri_enable="YES"\ncolibri_user="colibri"\ncolibri_log_target="syslog"\n'
        'colibri_config="/etc/alt/colibri.toml"\ncolibri_python="/usr/local/bin/python3.11"\n'
        'colibri_restart_delay="9"\ncolibri_flags="-s info"\n'
    )
    fields, argv = report(run_rc(tmp_path, "start", conf))
    assert fields["user"] == "<unset>"
    flags, child = split_daemon(argv)
    assert flags["-u"] == ["colibri"], "daemon(8) -u is the single privilege drop"
    assert "-S" in flags and flags["-T"] == ["colibri"] and flags["-s"] == ["info"]
    assert "-o" not in flags and flags["-R"] == ["9"]
    parsed = parse_colibri(child_colibri_args(child))
    assert parsed[0][1]["config"] == Path("/etc/alt/colibri.toml")
    assert parsed[1][1]["log_target"] == "syslog"


def test_unknown_daemon_option_is_caught() -> None:
    """The parser above really rejects what colibri does not have (so the checks mean something)."""
    from typer._click.exceptions import UsageError

    with pytest.raises(UsageError):
        parse_colibri(["--config", "/x.toml", "daemon", "--log-file", "/x.log"])
    with pytest.raises(getopt.GetoptError):
        getopt.getopt(["-X"], DAEMON_GETOPT)


@pytest.mark.integration  # runs sh(1) on the script
def test_rc_reload_signals_the_child_not_the_supervisor(tmp_path: Path) -> None:
    lines = run_rc(tmp_path, "reload")
    assert "kill -HUP 222" in lines
    assert not any("111" in line for line in lines)


@pytest.mark.integration  # runs sh(1) on the script
def test_rc_status_asks_the_daemon(tmp_path: Path) -> None:
    """status runs the real ``colibri daemon status`` line: with no daemon it says so (exit 16)."""
    config = tmp_path / "colibri.toml"
    config.write_text("")
    result = run_rc_process(tmp_path, "status", f'colibri_python="{sys.executable}"\ncolibri_config="{config}"\n')
    assert "colibri is running as pid 222 (supervisor 111)." in result.stdout
    assert result.returncode == 16, result.stdout + result.stderr
    assert "daemon" in result.stderr


def test_newsyslog_snippet_signals_the_supervisor() -> None:
    lines = [
        line.split()
        for line in (REPO / "etc/newsyslog.conf.d/colibri.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(lines) == 1
    name, owner, mode, count, size, when, flags, pidfile, signal = lines[0]
    assert name == "/var/log/colibri/*.log" and "G" in flags
    assert owner == "root:wheel" and mode == "600"
    assert count.isdigit() and (size == "*" or size.isdigit()) and when.startswith("@")
    assert pidfile == "/var/run/colibri.pid" and signal == "1"
    assert "-H" in RC_SCRIPT.read_text(), "daemon(8) must reopen its output file on SIGHUP"
