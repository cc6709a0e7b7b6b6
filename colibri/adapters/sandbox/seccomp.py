"""The seccomp filter of every sandbox jail process (the only module that imports libseccomp).

Default allow, and a deny list of what an agent jail never needs, each answered EPERM (ENOSYS for
clone3, so that the C library falls back to clone, whose flags the filter can see):

- mounts and the root: mount, umount2, pivot_root, chroot, the new mount API (fsopen, fsconfig,
  fsmount, fspick, move_mount, open_tree, mount_setattr);
- namespaces: setns; unshare and clone with any CLONE_NEW* flag (no nested user namespace);
- the kernel itself: init/finit/delete_module, kexec_load, kexec_file_load, reboot, swapon,
  swapoff, acct, quotactl, syslog, iopl, ioperm, settimeofday, clock_settime, clock_adjtime,
  adjtimex, lookup_dcookie, personality changes are left (harmless), uselib, vhangup, nfsservctl;
- kernel attack surface agents do not use: bpf, perf_event_open, userfaultfd, keyctl, add_key,
  request_key, io_uring_setup/enter/register, fanotify_init, open_by_handle_at,
  name_to_handle_at, kcmp;
- other processes: ptrace, process_vm_readv/writev, pidfd_getfd, process_madvise (a jail never
  debugs; the pid namespace already hides every other jail and the host);
- terminal injection: ioctl TIOCSTI and TIOCLINUX;
- core dumps: setrlimit and prlimit64 setting RLIMIT_CORE (the launcher sets it to 1 byte, the
  value at which the kernel dumps neither to a file nor to a pipe core_pattern's host helper;
  lowering it to 0 would re-enable the pipe).

Syscalls of another architecture (32-bit x86 on x86_64) are not in the filter: libseccomp's
default for a foreign architecture (ACT_BADARCH) kills the calling thread.
"""

import errno
import functools
import hashlib
import os
import platform
import secrets
import stat
import tempfile
from pathlib import Path

from colibri.errors import JailError

DENY = (
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "setns",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "syslog",
    "iopl",
    "ioperm",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "lookup_dcookie",
    "uselib",
    "vhangup",
    "nfsservctl",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "fanotify_init",
    "open_by_handle_at",
    "name_to_handle_at",
    "kcmp",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "process_madvise",
)
NEW_NAMESPACES = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x00000080)
"""CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME."""
TIOCSTI, TIOCLINUX = 0x5412, 0x541C
RLIMIT_CORE = 4


@functools.cache
def build_bpf() -> bytes:
    """The filter as a classic BPF program (what bwrap's --seccomp and prctl load)."""
    try:
        import pyseccomp as sc  # type: ignore[import-untyped]
    except (ImportError, OSError, RuntimeError) as exc:  # no libseccomp2 on the host
        raise JailError(f"seccomp is unavailable (libseccomp2 and pyseccomp are needed): {exc}") from None
    filt = sc.SyscallFilter(sc.ALLOW)
    deny = sc.ERRNO(errno.EPERM)
    for name in DENY:
        try:
            filt.add_rule(deny, name)
        except (RuntimeError, ValueError, OSError):
            continue  # a syscall this architecture does not have
    for flag in NEW_NAMESPACES:
        filt.add_rule(deny, "unshare", sc.Arg(0, sc.MASKED_EQ, flag, flag))
        filt.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    filt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    filt.add_rule(deny, "setrlimit", sc.Arg(0, sc.EQ, RLIMIT_CORE))
    filt.add_rule(deny, "prlimit64", sc.Arg(1, sc.EQ, RLIMIT_CORE), sc.Arg(2, sc.NE, 0))
    for request in (TIOCSTI, TIOCLINUX):
        filt.add_rule(deny, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, request))
    with tempfile.TemporaryFile() as handle:
        filt.export_bpf(handle)
        handle.seek(0)
        return handle.read()


def write_bpf(path: Path, cache_dir: Path) -> None:
    """Write the filter to ``path`` (0600, host-only: the launcher reads it at each start and exec).

    Building it loads libseccomp (40 ms, mostly its library lookup); the program is kept in
    ``cache_dir`` (root's, on tmpfs) under the hash of this module and the machine, so a jail start
    usually copies it instead."""
    key = hashlib.sha256(Path(__file__).read_bytes() + platform.machine().encode()).hexdigest()[:16]
    cached = cache_dir / f"seccomp-{key}.bpf"
    program = _read_root_file(cached)
    if not program or len(program) % 8:
        program = build_bpf()
        _write(cached, program)
    _write(path, program)


def _read_root_file(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return b""
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
            return b""
        return handle.read(1 << 16)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")  # concurrent starts: each its own
    tmp.write_bytes(data)
    tmp.chmod(0o600)
    tmp.replace(path)
