"""The agent jail's rc.d script for the mother skill, read the way rc.subr and daemon(8) read it.

The script is sourced under a stub rc.subr whose ``run_rc_command`` prints what the real one
would run (the command line, and ``${name}_user``, which rc.subr would turn into su(1)).  The
daemon(8) flags are parsed with daemon(8)'s own getopt string (usr.sbin/daemon/daemon.c), and the
paths are checked against what colibri reads (the log, the child pidfile) and what newsyslog
rotates.  Behaviour in a running jail: tests/integration/test_bastille_rc.py.
"""

import getopt
import os
import subprocess
from pathlib import Path

import pytest

from colibri.services.lifecycle import mother
from tests.conftest import REPO

SCRIPT = REPO / "jails/agent/overlay/usr/local/etc/rc.d/colibri_mother"
NEWSYSLOG = REPO / "jails/agent/overlay/usr/local/etc/newsyslog.conf.d/colibri_mother.conf"
DAEMON_GETOPT = "cfHSp:P:ru:o:s:l:t:m:R:T:h"

STUB_RC_SUBR = r"""
load_rc_config() { if [ -n "${TEST_RC_CONF:-}" ]; then . "$TEST_RC_CONF"; fi; }
run_rc_command() {
    eval "echo \"user=\${${name}_user-<unset>}\""
    for var in name rcvar pidfile procname command required_files start_precmd; do
        eval "echo \"$var=\${$var-<unset>}\""
    done
    eval "set -- $command \$${name}_flags $command_args"
    for arg in "$@"; do echo "argv:$arg"; done
}
"""


def run(tmp_path: Path, rc_conf: str = "") -> tuple[dict[str, str], list[str]]:
    text = SCRIPT.read_text()
    assert text.count("\n. /etc/rc.subr\n") == 1
    stub = tmp_path / "rc.subr"
    stub.write_text(STUB_RC_SUBR)
    script = tmp_path / "colibri_mother"
    script.write_text(text.replace("\n. /etc/rc.subr\n", f"\n. {stub}\n"))
    conf = tmp_path / "rc.conf"
    conf.write_text(rc_conf)
    result = subprocess.run(
        ["sh", str(script), "start"],
        capture_output=True,
        text=True,
        env={**os.environ, "TEST_RC_CONF": str(conf)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    fields = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("argv:"))
    return fields, [line.removeprefix("argv:") for line in lines if line.startswith("argv:")]


def daemon_flags(argv: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    assert argv[0] == "/usr/sbin/daemon" and "--" in argv
    opts, child = getopt.getopt(argv[1:], DAEMON_GETOPT)
    flags: dict[str, list[str]] = {}
    for flag, value in opts:
        flags.setdefault(flag, []).append(value)
    return flags, child


@pytest.mark.integration  # runs sh(1) on the script
def test_the_documented_user_variable_reaches_daemon_not_rc_subr(tmp_path: Path) -> None:
    fields, argv = run(tmp_path)
    assert fields["user"] == "<unset>", "rc.subr would wrap daemon(8) in su(1)"
    flags, _ = daemon_flags(argv)
    assert flags["-u"] == ["agent"]
    fields, argv = run(tmp_path, 'colibri_mother_user="worker"\n')
    assert fields["user"] == "<unset>"
    assert daemon_flags(argv)[0]["-u"] == ["worker"]
    text = SCRIPT.read_text()
    assert "# colibri_mother_user (str):" in text
    assert "colibri_mother_runas" not in text.split("\n. /etc/rc.subr\n")[0], "one documented name"


@pytest.mark.integration  # runs sh(1) on the script
def test_daemon_restarts_with_a_delay_and_writes_what_colibri_reads(tmp_path: Path) -> None:
    fields, argv = run(tmp_path)
    flags, child = daemon_flags(argv)
    assert int(flags["-R"][0]) >= 5, "a refusing mother must not be restarted every second"
    assert flags["-P"] == [fields["pidfile"]] == ["/var/run/colibri_mother.pid"]
    assert flags["-p"] == ["/" + mother.MOTHER_PIDFILE]
    assert flags["-o"] == ["/" + mother.MOTHER_LOG] and "-H" in flags
    assert fields["procname"] == fields["command"] == "/usr/sbin/daemon"
    assert child[0] == "/usr/local/bin/python3.11" and child[1].endswith("/skills/mother/mother.py")
    assert "/usr/local/bin/python3.11" in fields["required_files"].split()
    assert int(daemon_flags(run(tmp_path, 'colibri_mother_restart_delay="30"\n')[1])[0]["-R"][0]) == 30


def test_newsyslog_rotates_the_mothers_log_and_signals_its_supervisor() -> None:
    lines = [ln.split() for ln in NEWSYSLOG.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(lines) == 1
    path, owner, mode, count, size, when, flags, pidfile, sig = lines[0]
    assert path == "/" + mother.MOTHER_LOG and (owner, mode) == ("root:wheel", "600")
    assert count.isdigit() and size.isdigit() and when == "*" and "C" in flags
    assert pidfile == "/var/run/colibri_mother.pid" and sig == "1", "SIGHUP to daemon(8)'s supervisor (-H)"


def test_the_mother_logs_the_lines_spawn_waits_for() -> None:
    text = (REPO / "skills/mother/mother.py").read_text()
    assert f'READY = "{mother.MOTHER_READY}"' in text
    assert f'REFUSED = "{mother.MOTHER_REFUSED}"' in text
