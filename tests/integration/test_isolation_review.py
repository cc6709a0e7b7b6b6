"""Reviewer's failing proofs (issue 8 review): holes found by attacking the merged work as a hostile
tenant would.  Each failed on the code the review attacked (then marked xfail(strict=True)) and
passes since its fix; the markers are gone."""

import json
import os
import pty
import random
import shutil
import time
from collections.abc import Iterator

import pytest

from colibri.adapters.jail import UID_BLOCK, JailIds, JailState
from colibri.adapters.runner import ShRunner
from colibri.adapters.sandbox import cgroups
from colibri.adapters.sandbox.backend import Sandbox
from colibri.adapters.sandbox.cgroups import Limits
from colibri.resources import shipped
from tests.conftest import require

pytestmark = pytest.mark.integration


@pytest.fixture(name="jails", scope="module")
def jails_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    require(shutil.which("bwrap") is not None, "bubblewrap")
    require(os.geteuid() == 0, "root")
    runner = ShRunner({"PATH": os.environ["PATH"]})
    limits = Limits(memory_mib=64, max_processes=40, cpu_percent=50)
    sandbox = Sandbox(tmp_path_factory.mktemp("review") / "jails", shipped("jails"), "agent", runner, limits=limits)
    base = 1_000_000_000 + random.randrange(9000, 12000) * UID_BLOCK
    sandbox.create("rev", ip=None, template="colibri/agent", ids=JailIds(base))
    sandbox.start("rev")
    try:
        yield sandbox
    finally:
        sandbox.destroy("rev")


def _exec_on_a_terminal(jails: Sandbox, script: str, user: str | None) -> tuple[int, str]:
    """Run ``script`` in the jail from a process whose controlling terminal is a pty, as an operator
    running the CLI in a terminal would; return its exit status and output."""
    read_end, write_end = os.pipe()
    pid, master = pty.fork()
    if pid == 0:  # the child: a session leader on the pty, like an operator's shell
        os.close(read_end)
        try:
            result = jails.exec("rev", ["/bin/sh", "-c", script + " 2>&1"], user=user, timeout=20)
            os.write(write_end, json.dumps([result.exit_code, result.out]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.waitpid(pid, 0)
    os.close(master)
    code, out = json.loads(b"".join(chunks) or b'[255, "no answer"]')
    return int(code), str(out)


@pytest.mark.parametrize("user", ["root", "agent"])
def test_a_jail_command_cannot_reach_the_operators_terminal(jails: Sandbox, user: str) -> None:
    """Review: Sandbox.exec left the jail's command in the operator's session, so a jail process
    opened /dev/tty, wrote escape sequences to it and, with tcsetpgrp, took its foreground and read
    keystrokes after colibri returned.  Fixed by setsid() in launcher.enter's child."""
    code, out = _exec_on_a_terminal(jails, ": > /dev/tty", None if user == "root" else user)
    assert code != 0, f"the jail opened the operator's terminal for writing: {out}"


def test_jail_root_cannot_make_stop_leave_the_jail_running(jails: Sandbox) -> None:
    """Review: jail root rewrote bwrap pid 1's argv through /proc/1/mem; is_ours() (which trusted
    the command line) no longer recognised it, the jail read as stopped and stop() killed nothing.
    Now the jail is known by its start time and host uid, and stop empties its cgroups."""
    rewrite = (
        "import os\n"
        "f = open('/proc/1/stat').read().rsplit(')', 1)[1].split()\n"
        "a, b = int(f[45]), int(f[46])\n"
        "fd = os.open('/proc/1/mem', os.O_RDWR)\n"
        "os.lseek(fd, a, 0)\n"
        "os.write(fd, b'sleep' + bytes(b - a - 5))\n"
    )
    result = jails.exec("rev", ["python3", "-c", rewrite])
    assert result.exit_code == 0, result.err
    try:
        assert jails.info("rev").state is JailState.RUNNING, "a rewritten argv made the running jail look stopped"
        jails.stop("rev")
        time.sleep(0.2)
        left = cgroups.pids(jails._cgroups("rev"))
        assert not left, f"stop() returned but the jail's processes {left} still run"
        assert jails.info("rev").state is JailState.STOPPED
    finally:
        cgroups.remove(jails._cgroups("rev"))  # kill what stop left, so the fixture can go on
        jails.start("rev")


MEASURE = """
import os, resource, sys
from pathlib import Path
from colibri.adapters.runner import ShRunner
from colibri.adapters.sandbox.backend import Sandbox
from colibri.errors import CommandFailed
from colibri.resources import shipped
sandbox = Sandbox(Path(sys.argv[1]), shipped("jails"), "agent", ShRunner({"PATH": os.environ["PATH"]}))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    done = sandbox.exec("rev", ["/bin/sh", "-c", "head -c 200000000 /dev/zero"], timeout=60)
except CommandFailed as exc:
    assert "output too large" in str(exc), exc
else:
    raise AssertionError(f"exit {done.exit_code}, {len(done.stdout)} bytes: {done.err[-300:]}")
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_a_jail_commands_output_cannot_grow_the_hosts_memory(jails: Sandbox) -> None:
    """Review: Sandbox.exec (ShRunner) kept all of a jail command's output in host memory (jail root
    owns /etc/rc.d/colibri_mother, whose start/status/stop colibri runs), 300 MB of output took
    650 MB RSS.  Now ShRunner kills a command past max_output and fails the call."""
    import subprocess
    import sys

    jails_dir = str(jails.root("rev").parent.parent)
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, jails_dir], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-500:]
    grown_mib = int(result.stdout.split()[-1])
    assert grown_mib < 50, f"the host process grew by {grown_mib} MiB holding one jail command's output"


def test_a_directory_planted_where_colibri_writes_is_a_jail_error(jails: Sandbox) -> None:
    """Review: jailfs.write_file let the rename's OSError out (IsADirectoryError when jail root put
    a directory where colibri writes, e.g. the mother's identity): the CLI said 'internal error',
    spawn did not mark the tenant failed, and the temp file was left in the jail."""
    from colibri.adapters import jailfs
    from colibri.errors import JailError

    planted = "/usr/local/etc/colibri/review-planted.json"
    assert jails.exec("rev", ["/bin/mkdir", "-p", f"{planted}/x"]).exit_code == 0
    with pytest.raises(JailError):
        jailfs.write_file(jails.root("rev"), planted, b"{}\n", mode=0o644)
    left = [p.name for p in (jails.root("rev") / "usr/local/etc/colibri").iterdir() if ".colibri-" in p.name]
    assert not left, f"temporary files left in the jail: {left}"
