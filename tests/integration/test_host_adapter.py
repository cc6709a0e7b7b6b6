"""colibri.adapters.host against real processes of this host (sleep, python; no root needed)."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from colibri.adapters import host
from colibri.poll import poll_true

pytestmark = pytest.mark.integration


def _stat_ticks(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[19])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux /proc")
def test_start_time_is_the_kernels_ticks_since_boot() -> None:
    """The number earlier colibri recorded for running jails (/proc/PID/stat field 22), exactly."""
    assert host.start_time(os.getpid()) == _stat_ticks(os.getpid())
    assert host.start_time(1) == _stat_ticks(1)


def test_a_process_is_known_by_its_uids_children_and_command_line() -> None:
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                               "a = subprocess.Popen(['sleep', '30']); time.sleep(0.05); "
                               "b = subprocess.Popen(['sleep', '31']); time.sleep(30)"])  # fmt: skip
    try:
        assert poll_true(lambda: len(host.children(parent.pid)) == 2, timeout=10)
        first, second = host.children(parent.pid)
        assert host.first_child(parent.pid) == first
        assert host.cmdline(first) == ["sleep", "30"] and host.cmdline(second) == ["sleep", "31"]
        assert host.real_uid(parent.pid) == os.getuid() and host.effective_uid(parent.pid) == os.geteuid()
        assert host.alive(parent.pid) and host.exists(parent.pid)
        assert host.children(first) == [] and host.first_child(first) is None
    finally:
        parent.kill()
        parent.wait()


def test_a_zombie_is_not_alive_and_a_reaped_process_is_nothing() -> None:
    child = subprocess.Popen(["sleep", "30"])
    started = host.start_time(child.pid)
    assert started is not None and host.alive(child.pid)
    os.kill(child.pid, signal.SIGKILL)
    assert poll_true(lambda: not host.alive(child.pid), timeout=10)
    assert host.exists(child.pid), "a zombie is still in the kernel's table"
    assert host.cmdline(child.pid) is None
    child.wait()
    for ask in (host.start_time, host.real_uid, host.effective_uid, host.cmdline, host.first_child):
        assert ask(child.pid) is None, ask
    assert not host.exists(child.pid) and not host.alive(child.pid) and host.children(child.pid) == []
    assert host.start_time(0) is None and host.start_time(-1) is None


def test_usage_counts_this_process_memory_descriptors_and_sockets() -> None:
    before = host.usage()
    assert before.rss_bytes is not None and before.rss_bytes > 1 << 20
    assert before.open_fds is not None and before.connections is not None
    left, right = socket.socketpair()
    extra = os.open(os.devnull, os.O_RDONLY)
    try:
        after = host.usage()
        assert after.open_fds is not None and after.open_fds >= before.open_fds + 3
        assert after.connections is not None and after.connections >= before.connections + 2
    finally:
        left.close()
        right.close()
        os.close(extra)
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert host.usage(gone.pid) == host.Usage(None, None, None)
