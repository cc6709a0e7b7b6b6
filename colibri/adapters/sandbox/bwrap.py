"""bubblewrap for sandbox jails: its command line, the launcher that starts it, and the process
helpers that find a running jail's init (see ``launcher.py`` for what runs on the host)."""

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from colibri.adapters import host
from colibri.adapters.jail import UID_BLOCK, Mount
from colibri.errors import JailError
from colibri.poll import poll_true, poll_until

LAUNCHER = Path(__file__).with_name("launcher.py")
STAGE = Path("/run/colibri-sandbox")
"""An empty host directory the launcher covers, in a mount namespace of its own, with the jail's
directories for bwrap to bind (they may lie below directories the jail's ids cannot walk)."""
CACHE = Path("/run/colibri-sandbox.cache")
"""Root's cache of the seccomp program (see seccomp.write_bpf); on tmpfs, gone at boot."""
JAIL_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
"""PATH of the sandbox launcher and of every command colibri runs in a sandbox jail."""
CAP_NUMBERS = {"chown": 0, "dac_override": 1, "fowner": 3, "kill": 5, "setgid": 6, "setuid": 7}
_HOST_RO = ("usr",)
HOST_MERGED = ("bin", "sbin", "lib", "lib64", "lib32", "libx32")
JAIL_CAPS = ("setuid", "setgid", "kill", "chown", "fowner", "dac_override")
"""What root inside a sandbox jail keeps (like a FreeBSD jail's root: no mount, no modules, no
ptrace, no raw network): enough to drop to the agent user and manage its files.  These are
capabilities of the jail's user namespace only: they act on the jail's own ids, never a host's."""


def argv(name: str, root: Path, mounts: list[Mount], fds: dict[str, int]) -> list[str]:
    """bwrap's command line for a jail whose directories the launcher stages at STAGE."""
    command = ["bwrap", "--seccomp", str(fds["seccomp"]), "--bind", f"{STAGE}/root", "/"]
    for top in _HOST_RO:
        command += ["--ro-bind", f"/{top}", f"/{top}"]
    for top in HOST_MERGED:
        host = Path("/") / top
        if host.is_dir() and not host.is_symlink():
            command += ["--ro-bind", str(host), f"/{top}"]
    command += ["--bind", f"{STAGE}/usr_local", "/usr/local"]
    for i, mount in enumerate(mounts):
        command += ["--ro-bind" if mount.read_only else "--bind", f"{STAGE}/mount{i}", mount.jail_path]
    command += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm"]  # noqa: S108 (a tmpfs inside the jail)
    # The kernel's knobs: /proc/sys read-only, no /sys at all.  The rest of /proc's writable
    # files (sysrq-trigger, ...) belong to host root, an id the jail does not have.
    command += ["--ro-bind", "/proc/sys", "/proc/sys"]
    command += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net", "--unshare-cgroup-try"]
    command += ["--cap-drop", "ALL", *(f for cap in JAIL_CAPS for f in ("--cap-add", f"CAP_{cap.upper()}"))]
    command += ["--hostname", name, "--info-fd", str(fds["info"]), "--chdir", "/"]
    command += ["--setenv", "COLIBRI_JAIL", name, "--setenv", "COLIBRI_JAIL_ROOT", str(root)]
    command += ["--", *confine_argv(), "/bin/sh", "/etc/rc"]
    return command


def confine_argv() -> list[str]:
    """setpriv before /etc/rc: bwrap leaves the bounding set and ambient set full as root of
    the user namespace; cut them to the jail root's capabilities."""
    keep = ",".join(f"+{cap}" for cap in JAIL_CAPS)
    return ["/usr/bin/setpriv", f"--bounding-set=-all,{keep}", "--ambient-caps=-all", "--inh-caps=-all", "--"]


def wait_for_init(ns_init: int, timeout: float = 10.0) -> int | None:
    """The jail's init (bwrap's first child) once bwrap has forked it; None when bwrap died first
    or ``timeout`` passed."""

    def check() -> int | None:
        init = host.first_child(ns_init)
        if init is None and not host.exists(ns_init):
            raise _Gone
        return init

    try:
        return poll_until(check, timeout=timeout, interval=0.01)
    except _Gone:
        return None


class _Gone(Exception):
    """bwrap is gone: no init will come."""


def launch(config: dict[str, Any], fds: dict[str, int], log_path: Path, info_read: int) -> bytes:
    """Run the launcher with ``config``; return what bwrap wrote on its info fd (empty: it failed).
    The launcher forks the jail's user namespace and exits: bwrap is nobody's child, so it
    outlives this process and leaves no zombie behind.  ``fds`` are closed here."""
    try:
        log = log_path.open("ab")
    except OSError as exc:
        close_all([*fds.values(), info_read])
        raise JailError(f"cannot open {log_path}: {exc.strerror}") from None
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(LAUNCHER), "start"],
            pass_fds=tuple(fds.values()),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env={"PATH": JAIL_PATH, "COLIBRI_LAUNCH": json.dumps(config)},
        )
    except OSError as exc:
        close_all([info_read])
        raise JailError(f"cannot run the sandbox launcher: {exc.strerror}") from None
    finally:
        close_all(fds.values())
        log.close()
    with os.fdopen(info_read, "rb") as info_pipe:
        raw = info_pipe.read(4096)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        raise JailError("bubblewrap did not detach within 30 s") from None
    if not raw and shutil.which("bwrap") is None:
        raise JailError("bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
    return raw


start_time = host.start_time
"""``pid``'s start time in clock ticks since boot: with the pid, it names one process for the life
of the host, whatever the process writes to its own argv."""
first_child = host.first_child


def is_ours(pid: int, started: int | None, base: int) -> bool:
    """True when ``pid`` is still the jail's bwrap recorded at start: the same start time (no pid
    reuse) and a host uid of the jail's own block.  Never the command line: jail root can rewrite
    its pid 1's argv through /proc/1/mem, and another tenant can forge one (review)."""
    if pid <= 0 or started is None or start_time(pid) != started:
        return False
    uid = host.real_uid(pid)
    return uid is not None and base <= uid < base + UID_BLOCK


def close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return f"see {path}"
    return f"{lines[-1][:300]} (see {path})" if lines else f"see {path}"


def wait_gone(pid: int, timeout: float) -> bool:
    """True once ``pid`` is gone or a zombie (reaped here when it is our child), within ``timeout``."""

    def gone() -> bool:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return not host.alive(pid)

    return poll_true(gone, timeout=timeout, interval=0.02)
