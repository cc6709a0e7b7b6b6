"""The sandbox jail launcher: a tiny stdlib-only program colibri runs as host root (``python -I -S``).

``start``: join the jail's cgroups, set RLIMIT_NOFILE and RLIMIT_CORE (see ``_join``), stage the directories bwrap binds
in a mount namespace of its own (see ``_stage``), then fork a child that unshares a
user namespace; this process (still host root outside it) writes the child's uid_map and gid_map
(jail ids 0..65535 onto the tenant's host block) and exits, so the jail is nobody's child and
outlives colibri.  The child becomes root of its namespace, forbids nested user namespaces
(user.max_user_namespaces = 0) and execs bubblewrap, which then builds the other namespaces with
the privileges of that user namespace only, and loads the seccomp filter (``--seccomp FD``).

``exec``: enter a running jail the same way: cgroups, RLIMIT_NOFILE, setns into its user,
ipc, uts, net, pid and mount namespaces, chroot to its root, fork (the pid namespace takes effect
for children), drop the capability bounding set to the jail root's, become the jail user if asked,
no_new_privs, the same seccomp filter, exec.  The parent relays the exit status.

CONFIG is one JSON document in the environment variable COLIBRI_LAUNCH (never argv: the command's
environment is in it), not passed on.  Failures print one line to stderr and exit 125.
"""

import ctypes
import json
import os
import resource
import signal
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = (
    0x00020000,
    0x04000000,
    0x08000000,
    0x20000000,
    0x40000000,
)
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP = 1, 24, 38, 22
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
SECCOMP_MODE_FILTER = 2
CAP_LAST = 40
FAIL = 125
CORE_LIMIT = 1

_libc = ctypes.CDLL(None, use_errno=True)


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _die(message: str) -> None:
    sys.stderr.write(f"colibri-launcher: {message}\n")
    sys.stderr.flush()
    os._exit(FAIL)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        _die(f"{what}: {os.strerror(err)}")


def _join(config: dict) -> None:  # type: ignore[type-arg]
    for procs in config["cgroup_procs"]:
        with open(procs, "w") as handle:
            handle.write(f"{os.getpid()}\n")
    n = int(config["nofile"])
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    # No core dumps: 1 byte is below any core file, and the one value at which the kernel also
    # refuses a dump to a pipe core_pattern (a helper it would run as host root); RLIMIT_CORE 0
    # does not stop a pipe.  Hard, and the seccomp filter forbids changing it (even to 0).
    resource.setrlimit(resource.RLIMIT_CORE, (CORE_LIMIT, CORE_LIMIT))


def _seccomp(program: bytes) -> None:
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _Fprog(len(program) // 8, ctypes.addressof(buf))
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "seccomp")


def _drop_caps(keep: list[int]) -> None:
    for cap in range(CAP_LAST + 1):
        if cap not in keep and _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != 22:
            _die(f"cannot drop capability {cap}: {os.strerror(ctypes.get_errno())}")
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)


def _execvpe(argv: list[str], env: dict[str, str]) -> None:
    """execvpe without os.execvpe, which imports modules: after setresuid or chroot the
    interpreter's library may be out of reach."""
    dirs = [""] if "/" in argv[0] else env.get("PATH", "/usr/bin:/bin").split(":")
    error = "not found"
    for folder in dirs:
        try:
            os.execve(f"{folder}/{argv[0]}" if folder else argv[0], argv, env)
        except OSError as exc:
            error = exc.strerror or error
    sys.stderr.write(f"{argv[0]}: {error}\n")
    os._exit(127)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    def enc(value: str | None) -> bytes | None:
        return None if value is None else value.encode()

    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def _stage(config: dict) -> None:  # type: ignore[type-arg]
    """In a mount namespace of our own (host root's), put every directory bwrap binds on a small
    tmpfs at ``stage``: bwrap runs as the jail's root and may not be able to walk to them."""
    stage = config["stage"]
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    _mount("colibri-stage", stage, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
    for key, path in config["sources"].items():
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        os.mkdir(f"{stage}/{key}", 0o755)
        _mount(f"/proc/self/fd/{fd}", f"{stage}/{key}", None, MS_BIND, None)
        os.close(fd)


def start(config: dict) -> None:  # type: ignore[type-arg]
    _join(config)
    _stage(config)
    up_r, up_w = os.pipe()
    go_r, go_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(up_r)
        os.close(go_w)
        os.setsid()
        _check(_libc.unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER) (are user namespaces enabled?)")
        os.write(up_w, b"u")
        os.close(up_w)
        if os.read(go_r, 1) != b"g":
            os._exit(FAIL)
        os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        _libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
        with open("/proc/sys/user/max_user_namespaces", "w") as handle:
            handle.write("0\n")  # no nested user namespace, whatever the filter misses
        argv = config["bwrap"]  # its --seccomp and --bind-fd descriptors were passed to us open
        _execvpe(argv, config["env"])
    os.close(up_w)
    os.close(go_r)
    if os.read(up_r, 1) != b"u":
        os.waitpid(child, 0)
        _die("the jail's user namespace could not be created")
    base = int(config["base"])
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{child}/{name}", "w") as handle:
            handle.write(f"0 {base} 65536\n")
    os.write(go_w, b"g")
    os._exit(0)


def enter(config: dict) -> None:  # type: ignore[type-arg]
    _join(config)
    with open(config["seccomp"], "rb") as handle:
        program = handle.read()
    pid = int(config["pid"])
    fds = [os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY) for ns in ("user", "ipc", "uts", "net", "pid", "mnt")]
    root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY)
    kinds = (CLONE_NEWUSER, CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWNET, CLONE_NEWPID, CLONE_NEWNS)
    for fd, kind in zip(fds, kinds, strict=True):
        _check(_libc.setns(fd, kind), "setns")
        os.close(fd)
    os.fchdir(root)
    os.chroot(".")
    os.close(root)
    os.chdir(config.get("cwd") or "/")
    child = os.fork()
    if child == 0:
        os.setsid()  # no controlling terminal: a jail process never reaches the operator's (review)
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        _drop_caps([int(c) for c in config["caps"]])
        user = config.get("user")
        if user:
            os.setresgid(user[1], user[1], user[1])
            os.setresuid(user[0], user[0], user[0])
        _seccomp(program)
        argv = config["argv"]
        _execvpe(argv, config["env"])
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: os.kill(child, s))
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def main() -> None:
    try:
        mode, raw = sys.argv[1], os.environ["COLIBRI_LAUNCH"]
        config = json.loads(raw)
        (start if mode == "start" else enter)(config)
    except OSError as exc:
        _die(f"{exc.strerror or exc} ({getattr(exc, 'filename', None) or 'no file'})")
    except (IndexError, ValueError, KeyError) as exc:
        _die(f"bad invocation: {exc}")


if __name__ == "__main__":
    main()
