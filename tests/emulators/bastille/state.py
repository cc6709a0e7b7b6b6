"""Shared state of the bastille 1.4.4 emulator: config, layout, jail.conf/fstab, "running" jails.

Used by ``bin/bastille``, ``bin/jls`` and the pytest fixture. Python 3 stdlib only.

There is no kernel jail on Linux. A "running" jail is a long-lived bubblewrap sandbox (its own
mount, PID, IPC and UTS namespaces) whose root is built from ``jails/NAME/root`` plus the jail's
fstab; its bookkeeping lives under ``${bastille_prefix}/.emulator/`` (see README.md):

    .emulator/lastjid          last JID handed out (JIDs only grow, like the kernel's)
    .emulator/jids/NAME        JID of the running jail NAME (one line); absent = stopped
    .emulator/run/NAME.json    pid of the sandbox's init, its start time, jail params, mount table
    .emulator/run/NAME/        per-jail /bin and /sbin "farms" (symlinks to host tools + FreeBSD shims)
    .emulator/log              one JSON line per emulated bastille invocation (argv, rc)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

EMU_DIR = Path(__file__).resolve().parent
JAILBIN_DIR = EMU_DIR / "jailbin"
SHARE_DIR = EMU_DIR / "share"
DEFAULT_CONFIG = "/usr/local/etc/bastille/bastille.conf"

sys.path.insert(0, str(JAILBIN_DIR))
from _freebsd import parse_sh_assignments  # noqa: E402  (shared with the in-jail shims)

sys.path.pop(0)


# ---------------------------------------------------------------------------------------------
# Config (ref §1.3: a sourced sh file; BASTILLE_CONFIG is used verbatim when non-empty)
# ---------------------------------------------------------------------------------------------


def config_path(env: dict[str, str] | os._Environ[str]) -> str:
    return env.get("BASTILLE_CONFIG") or DEFAULT_CONFIG


def load_config(path: str) -> dict[str, str]:
    """Parse ``key="value"`` lines with ``${var}`` expansion, as ``. ${BASTILLE_CONFIG}`` would."""
    text = Path(path).read_text()
    return parse_sh_assignments(text, dict(os.environ))


class Layout:
    """Directories named by bastille.conf, plus the emulator's own state dir under the prefix."""

    def __init__(self, conf: dict[str, str]) -> None:
        self.conf = conf
        self.prefix = conf.get("bastille_prefix", "")
        self.jailsdir = conf.get("bastille_jailsdir", "")
        self.releasesdir = conf.get("bastille_releasesdir", "")
        self.templatesdir = conf.get("bastille_templatesdir", "")
        self.cachedir = conf.get("bastille_cachedir", "")
        self.backupsdir = conf.get("bastille_backupsdir", "")
        self.logsdir = conf.get("bastille_logsdir", "")
        self.sharedir = conf.get("bastille_sharedir", "")
        # Emulator state may be moved (e.g. a read-only prefix in some test) with BASTILLE_EMU_STATE_DIR.
        self.emudir = Path(os.environ.get("BASTILLE_EMU_STATE_DIR") or os.path.join(self.prefix, ".emulator"))

    def jail_dir(self, name: str) -> Path:
        return Path(f"{self.jailsdir}/{name}")

    def jail_root(self, name: str) -> Path:
        return Path(f"{self.jailsdir}/{name}/root")

    @property
    def jids_dir(self) -> Path:
        return self.emudir / "jids"

    @property
    def run_dir(self) -> Path:
        return self.emudir / "run"

    def log(self, record: dict[str, object]) -> None:
        with contextlib.suppress(OSError):
            self.emudir.mkdir(parents=True, exist_ok=True)
            with (self.emudir / "log").open("a") as fh:
                fh.write(json.dumps(record) + "\n")


def layout_from_env(env: dict[str, str] | os._Environ[str] | None = None) -> Layout | None:
    env = os.environ if env is None else env
    path = config_path(env)
    try:
        return Layout(load_config(path))
    except OSError:
        return None


@contextlib.contextmanager
def locked(layout: Layout, name: str = "lock") -> Iterator[None]:
    """An flock for the emulator's own bookkeeping (bastille itself has no locking, ref §4)."""
    layout.emudir.mkdir(parents=True, exist_ok=True)
    with (layout.emudir / name).open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------
# jail.conf and fstab (ref §3)
# ---------------------------------------------------------------------------------------------


def parse_jail_conf(path: Path) -> tuple[str | None, list[tuple[str, str, str | None]]]:
    """Return (stanza name, [(param, op, value-or-None)]) of the first stanza of a jail.conf."""
    try:
        text = path.read_text()
    except OSError:
        return None, []
    m = re.search(r"^\s*([^\s{]+)\s*\{", text, re.M)
    if not m:
        return None, []
    body = text[m.end() :]
    params: list[tuple[str, str, str | None]] = []
    stmt = ""
    quote = ""
    for ch in body:
        if quote:
            stmt += ch
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
            stmt += ch
        elif ch == ";":
            params.append(_jail_stmt(stmt))
            stmt = ""
        elif ch == "}":
            break
        else:
            stmt += ch
    return m.group(1), [p for p in params if p[0]]


def _jail_stmt(stmt: str) -> tuple[str, str, str | None]:
    stmt = stmt.strip()
    m = re.match(r"^([^\s=+]+)\s*(\+?=)\s*(.*)$", stmt, re.S)
    if not m:
        return stmt, "", None
    value = m.group(3).strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return m.group(1), m.group(2), value


def jail_params(path: Path) -> dict[str, str | None]:
    """Effective parameters (``+=`` appends with a comma, a bare flag maps to None)."""
    out: dict[str, str | None] = {}
    for key, op, value in parse_jail_conf(path)[1]:
        if op == "+=" and out.get(key):
            out[key] = f"{out[key]},{value}"
        else:
            out[key] = value
    return out


def parse_fstab(path: Path) -> list[list[str]]:
    entries = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.replace("\\040", " ") for f in line.split()]
        while len(fields) < 6:
            fields.append("0")
        entries.append(fields)
    return entries


def userland_version(freebsd_version: Path) -> str:
    try:
        text = freebsd_version.read_text()
    except OSError:
        return ""
    m = re.search(r"^USERLAND_VERSION=[\"']?([^\"'\s]*)", text, re.M)
    return m.group(1) if m else ""


# ---------------------------------------------------------------------------------------------
# Running jails
# ---------------------------------------------------------------------------------------------


def _proc_starttime(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return fields[19]


def run_info(layout: Layout, name: str) -> dict | None:
    """The running jail's record, or None. A record whose sandbox died is cleaned up here."""
    jid_file = layout.jids_dir / name
    if not jid_file.exists():
        return None
    try:
        info = json.loads((layout.run_dir / f"{name}.json").read_text())
    except (OSError, ValueError):
        info = None
    if info is None or _proc_starttime(int(info["pid"])) != info.get("starttime"):
        with contextlib.suppress(OSError):
            jid_file.unlink()
        with contextlib.suppress(OSError):
            (layout.run_dir / f"{name}.json").unlink()
        return None
    return info


def running_jails(layout: Layout) -> dict[str, dict]:
    out = {}
    try:
        names = sorted(os.listdir(layout.jids_dir))
    except OSError:
        return {}
    for name in names:
        info = run_info(layout, name)
        if info is not None:
            out[name] = info
    return out


def alloc_jid(layout: Layout) -> int:
    with locked(layout):
        f = layout.emudir / "lastjid"
        try:
            last = int(f.read_text().strip() or 0)
        except (OSError, ValueError):
            last = 0
        f.write_text(f"{last + 1}\n")
        return last + 1


# ---------------------------------------------------------------------------------------------
# The sandbox: how a jail root becomes a running "jail"
# ---------------------------------------------------------------------------------------------

# Host directories providing Linux binaries and libraries, and where they appear in the jail.
# The jail's /bin and /sbin + /usr/sbin are per-jail "farms" (symlinks to every host tool plus the
# FreeBSD shims in jailbin/), so PATH=/bin:/usr/bin finds sh, cat, python3, pw, sysrc, service...
HOST_SYSTEM_BINDS = [
    ("/usr/bin", "/usr/bin"),
    ("/usr/lib", "/usr/lib"),
    ("/usr/lib", "/lib"),
    ("/usr/libexec", "/usr/libexec"),
    ("/usr/share", "/usr/share"),
    ("/lib64", "/lib64"),
    ("/usr/lib32", "/usr/lib32"),
]
JAIL_FREEBSD_SHIMS = ["pw", "sysrc", "service", "pkg", "daemon", "su"]


class MountTable:
    """What the sandbox's root looks like: a tmpfs with binds; resolves paths like the kernel would."""

    def __init__(self, mounts: list[list[str]] | None = None, links: dict[str, str] | None = None) -> None:
        self.mounts: list[list[str]] = mounts or []  # [jail mountpoint, host source]
        self.links: dict[str, str] = links or {}  # top-level symlinks on the tmpfs root

    def host_of(self, jail_path: str) -> str | None:
        best = None
        for mp, src in self.mounts:
            if (jail_path == mp or jail_path.startswith(mp.rstrip("/") + "/")) and (
                best is None or len(mp) >= len(best[0])
            ):
                best = (mp, src)
        if best is None:
            return None
        rest = jail_path[len(best[0]) :].lstrip("/")
        return os.path.join(best[1], rest) if rest else best[1]

    def resolve(self, jail_path: str, depth: int = 0) -> str:
        """Canonical jail path, following symlinks inside the jail (absolute ones from the jail /)."""
        if depth > 40:
            return jail_path
        parts = [p for p in jail_path.split("/") if p and p != "."]
        cur = "/"
        for i, comp in enumerate(parts):
            if comp == "..":
                cur = os.path.dirname(cur.rstrip("/")) or "/"
                continue
            cand = os.path.join(cur, comp)
            target = self.links.get(cand)
            if target is None:
                host = self.host_of(cand)
                if host is not None and os.path.islink(host):
                    target = os.readlink(host)
            if target is not None:
                base = target if target.startswith("/") else os.path.join(cur, target)
                rest = "/".join(parts[i + 1 :])
                return self.resolve(os.path.join(base, rest) if rest else base, depth + 1)
            cur = cand
        return cur

    def exists(self, jail_path: str) -> bool:
        canon = self.resolve(jail_path)
        if canon in self.links or canon == "/":
            return True
        host = self.host_of(canon)
        if host is not None:
            return os.path.lexists(host)
        # A path on the tmpfs root: only the mountpoints themselves exist.
        return any(mp == canon or mp.startswith(canon.rstrip("/") + "/") for mp, _ in self.mounts)

    def add(self, jail_path: str, host_src: str) -> str:
        canon = self.resolve(jail_path)
        self.mounts.append([canon, host_src])
        return canon

    def to_json(self) -> dict:
        return {"mounts": self.mounts, "links": self.links}

    @classmethod
    def from_json(cls, data: dict) -> MountTable:
        return cls(data.get("mounts", []), data.get("links", {}))


class SandboxError(Exception):
    pass


def sysroot() -> Path:
    """Shared, cached "farms" for the jails' /bin and /sbin + /usr/sbin: a symlink to every host
    tool, the FreeBSD stand-ins from jailbin/, and a placeholder /bin/freebsd-version (each jail
    binds its release's file over it). Built once per machine (symlinks are slow on some disks)."""
    base = Path(os.environ.get("BASTILLE_EMU_SYSROOT") or "/tmp/bastille-emulator-sysroot")
    stamp = [os.stat(p).st_mtime_ns for p in ("/usr/bin", "/usr/sbin") if os.path.isdir(p)]
    stamp += [(f, os.stat(JAILBIN_DIR / f).st_mtime_ns) for f in [*JAIL_FREEBSD_SHIMS, "_freebsd.py", "_pkg.py"]]
    key = hashlib.sha1(repr(stamp).encode()).hexdigest()[:12]
    root = base / key
    if (root / ".complete").exists():
        return root
    tmp = base / f".{key}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for farm, src in (("bin", "/usr/bin"), ("sbin", "/usr/sbin")):
        (tmp / farm).mkdir(parents=True)
        real = os.path.realpath(src)
        for n in os.listdir(real) if os.path.isdir(real) else []:
            os.symlink(f"{src}/{n}", tmp / farm / n)
    (tmp / "bin" / "freebsd-version").write_text("")
    for n in [*JAIL_FREEBSD_SHIMS, "_freebsd.py", "_pkg.py"]:
        dst = tmp / "sbin" / n
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        shutil.copy2(JAILBIN_DIR / n, dst)
    with contextlib.suppress(Exception):  # the shims start faster with a cached _freebsd
        import py_compile

        py_compile.compile(str(tmp / "sbin" / "_freebsd.py"), doraise=True)
        py_compile.compile(str(tmp / "sbin" / "_pkg.py"), doraise=True)
    (tmp / ".complete").touch()
    try:
        os.rename(tmp, root)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def build_sandbox(layout: Layout, name: str, jail_conf: dict[str, str | None]) -> tuple[list[str], MountTable]:
    """bwrap options that turn jails/NAME/root (+ fstab + host tools) into the jail's /."""
    root = layout.jail_root(name)
    table = MountTable()
    ops: list[str] = []
    # 1. The jail root's top-level entries (the root itself stays a tmpfs, so nothing the
    #    sandbox needs, such as /lib64, is ever created inside jails/NAME/root on disk).
    for entry in sorted(os.listdir(root)):
        path = root / entry
        jp = "/" + entry
        if entry in ("dev", "proc"):
            continue
        if path.is_symlink():
            target = os.readlink(path)
            ops += ["--symlink", target, jp]
            table.links[jp] = target
        else:
            ops += ["--bind", str(path), jp]
            table.mounts.append([jp, str(path)])
    # 2. mount.fstab: nullfs lines become binds (ref §2.8, §3). jail(8) fails when a mount fails.
    fstab = Path(str(jail_conf.get("mount.fstab") or layout.jail_dir(name) / "fstab"))
    root_prefix = str(root).rstrip("/")
    for src, dst, fstype, opts, *_ in parse_fstab(fstab):
        if not (dst == root_prefix or dst.startswith(root_prefix + "/")):
            raise SandboxError(f"jail: {name}: mount.fstab: {dst}: not under {root_prefix}")
        jp = dst[len(root_prefix) :] or "/"
        canon = table.resolve(jp)
        if fstype == "nullfs":
            if not os.path.exists(src):
                raise SandboxError(f"mount_nullfs: {src}: No such file or directory")
            if not table.exists(canon):
                raise SandboxError(f"mount_nullfs: {dst}: No such file or directory")
            ops += ["--ro-bind" if "ro" in opts.split(",") else "--bind", src, canon]
            table.add(canon, src)
        elif fstype == "tmpfs":
            ops += ["--tmpfs", canon]
        elif fstype in ("procfs", "linprocfs"):
            ops += ["--proc", canon]
        # devfs/fdescfs/linsysfs/zfs: nothing to do (or not emulated)
    # 3. devfs (mount.devfs) and, for Linux binaries, /proc.
    ops += ["--dev", "/dev", "--proc", "/proc"]
    # 4. Host Linux tools, mounted over the jail's (FreeBSD, never executable here) base system.
    old_fv = table.host_of(table.resolve("/bin/freebsd-version"))
    farms = sysroot()
    binds = [(str(farms / "bin"), "/bin"), (str(farms / "sbin"), "/sbin"), (str(farms / "sbin"), "/usr/sbin")]
    binds += [(os.path.realpath(h), j) for h, j in HOST_SYSTEM_BINDS if os.path.isdir(h)]
    for host, jp in binds:
        canon = table.resolve(jp)
        if table.host_of(canon) is None or table.exists(canon):
            ops += ["--ro-bind", host, canon]
            table.add(canon, host)
    if old_fv and os.path.isfile(old_fv):
        canon = table.resolve("/bin/freebsd-version")
        ops += ["--ro-bind", old_fv, canon]
        table.add(canon, old_fv)
    # BASTILLE_EMU_CMD_BINDS="host[:jailpath],...": extra read-only binds (e.g. a host Python).
    for item in filter(None, re.split(r"[,\n]", os.environ.get("BASTILLE_EMU_CMD_BINDS", ""))):
        host, _, jp = item.partition(":")
        canon = table.resolve(jp or host)
        ops += ["--ro-bind", host, canon]
        table.add(canon, host)
    return ops, table


def start_sandbox(
    layout: Layout, name: str, jail_conf: dict[str, str | None], jid: int, live: dict | None = None
) -> dict:
    """Start the jail's sandbox and record it. Raises SandboxError with jail(8)-like text."""
    ops, table = build_sandbox(layout, name, jail_conf)
    hostname = jail_conf.get("host.hostname") or name
    ttl = os.environ.get("BASTILLE_EMU_JAIL_TTL", "3600")
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    err_path = layout.run_dir / f"{name}.err"
    ready_r, ready_w = os.pipe()
    info_r, info_w = os.pipe()
    argv = [
        "bwrap",
        *ops,
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        # VNET jails get their own (empty but for lo) network stack; others share the host's.
        *(["--unshare-net"] if "vnet" in jail_conf else []),
        "--hostname",
        str(hostname),
        "--info-fd",
        str(info_w),
        "--",
        "/bin/sh",
        "-c",
        'echo ready; exec /usr/bin/sleep "$0" >/dev/null 2>&1',
        ttl,
    ]
    try:
        with err_path.open("wb") as err:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=ready_w,
                stderr=err,
                pass_fds=(info_w,),
                start_new_session=True,
            )
    except OSError as exc:
        raise SandboxError(f"jail: {name}: bwrap: {exc}") from exc
    finally:
        os.close(ready_w)
        os.close(info_w)
    ready = _read_until(ready_r, b"\n", 15.0)
    info_raw = _read_until(info_r, None, 0.5)
    if b"ready" not in ready:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        err_text = err_path.read_text(errors="replace").strip()
        raise SandboxError(err_text or f"jail: {name}: failed to start")
    pid = int(json.loads(info_raw.decode())["child-pid"])
    record = {
        "name": name,
        "jid": jid,
        "pid": pid,
        "bwrap_pid": proc.pid,
        "starttime": _proc_starttime(pid),
        "params": dict(jail_conf),
        "live": dict(live or {}),
        "path": str(layout.jail_root(name)),
        "hostname": hostname,
        "table": table.to_json(),
        # What FreeBSD's own mount table would hold for this jail (mount -p on the host): its
        # fstab's nullfs lines as jail(8) mounted them, [from, on (host path), options].
        "nullfs": [
            [src, dst, opts]
            for src, dst, fstype, opts, *_ in parse_fstab(
                Path(str(jail_conf.get("mount.fstab") or layout.jail_dir(name) / "fstab"))
            )
            if fstype == "nullfs"
        ],
    }
    write_record(layout, name, record)
    layout.jids_dir.mkdir(parents=True, exist_ok=True)
    (layout.jids_dir / name).write_text(f"{jid}\n")
    return record


def _read_until(fd: int, stop: bytes | None, timeout: float) -> bytes:
    """Read from a pipe until `stop` is seen, EOF, or `timeout` seconds without data; close it."""
    data = b""
    try:
        while stop is None or stop not in data:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    return data


def stop_sandbox(layout: Layout, name: str, info: dict | None) -> None:
    if info is not None:
        pid = int(info["pid"])
        # Killing the PID namespace's init kills every process of the jail (like jail -r).
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while _proc_starttime(pid) == info.get("starttime") and time.monotonic() < deadline:
            time.sleep(0.01)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(info.get("bwrap_pid", 0)) or -1, signal.SIGKILL)
    for p in (layout.jids_dir / name, layout.run_dir / f"{name}.json"):
        with contextlib.suppress(OSError):
            p.unlink()
    with contextlib.suppress(OSError):
        (layout.run_dir / f"{name}.err").unlink()


def kill_all(layout: Layout) -> None:
    """Stop every recorded sandbox of this prefix (the fixture's teardown)."""
    for name in list(running_jails(layout)):
        stop_sandbox(layout, name, run_info(layout, name))


# ---------------------------------------------------------------------------------------------
# jexec(8)
# ---------------------------------------------------------------------------------------------


def passwd_entry(table: MountTable, user: str) -> list[str] | None:
    host = table.host_of(table.resolve("/etc/passwd"))
    if host is None:
        return None
    try:
        lines = Path(host).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        f = line.split(":")
        if len(f) >= 7 and (f[0] == user or f[2] == user):
            return f
    return None


def login_class_path(table: MountTable, home: str) -> str:
    """PATH as jexec -l sets it: "/bin:/usr/bin", then replaced by the login class's `path`
    capability from the jail's /etc/login.conf (setusercontext(3) LOGIN_SETPATH)."""
    host = table.host_of(table.resolve("/etc/login.conf"))
    try:
        text = Path(host).read_text() if host else ""
    except OSError:
        text = ""
    m = re.search(r"^default:(?:[^\n]*\\\n)*?[^\n]*?:path=([^:]*):", text, re.M)
    if not m:
        return "/bin:/usr/bin"
    return ":".join(p.replace("~", home.rstrip("/") or "") for p in m.group(1).split())


def find_in_jail(table: MountTable, prog: str, path: str) -> str | None:
    cands = [prog] if "/" in prog else [os.path.join(d or ".", prog) for d in path.split(":")]
    for c in cands:
        canon = table.resolve(c)
        host = table.host_of(canon)
        if host is None:
            continue
        real = os.path.realpath(host)
        # A symlink farm entry points at /usr/bin/...: resolve it through the table once more.
        if os.path.islink(host):
            real = table.host_of(table.resolve(os.readlink(host))) or real
        if os.path.isfile(real) and os.access(real, os.X_OK):
            return c
    return None


def jexec(info: dict, argv: list[str], user: str = "root", login: bool = True, stdin: int | None = None) -> int:
    """``jexec -l -U user NAME argv``: clean env, PATH=/bin:/usr/bin, cwd = home, no shell."""
    table = MountTable.from_json(info["table"])
    pw = passwd_entry(table, user)
    if pw is None:
        sys.stderr.write(f"jexec: {user}: no such user\n")
        return 1
    home, shell = pw[5] or "/", pw[6] or "/bin/sh"
    path = os.environ.get("BASTILLE_EMU_JEXEC_PATH") or login_class_path(table, home)
    if not argv:
        argv = [shell]
    if find_in_jail(table, argv[0], path) is None:
        sys.stderr.write(f"jexec: execvp: {argv[0]}: No such file or directory\n")
        return 1
    env = ["HOME=" + home, "SHELL=" + shell, "USER=" + pw[0], "PATH=" + path]
    if "TERM" in os.environ:
        env.append("TERM=" + os.environ["TERM"])
    if not table.exists(home):
        home = "/"
    cmd = [
        "nsenter",
        "-t",
        str(info["pid"]),
        "-m",
        "-u",
        "-i",
        "-n",
        "-p",
        "-r",
        "--",
        "/usr/bin/env",
        "-i",
        "-C",
        home,
        *env,
        *argv,
    ]
    if pw[2] != "0":
        cmd[cmd.index("--") : cmd.index("--")] = ["-S", pw[2], "-G", pw[3]]
    sys.stdout.flush()
    sys.stderr.flush()
    return subprocess.call(cmd, stdin=stdin)


# ---------------------------------------------------------------------------------------------
# Live (u)mounts in a running jail: mount -F fstab -a / umount (ref §2.8)
# ---------------------------------------------------------------------------------------------

_SYS_OPEN_TREE, _SYS_MOVE_MOUNT, _SYS_MOUNT_SETATTR = 428, 429, 442
_OPEN_TREE_CLONE, _OPEN_TREE_CLOEXEC, _AT_RECURSIVE, _AT_EMPTY_PATH = 1, 0o2000000, 0x8000, 0x1000
_MOVE_MOUNT_F_EMPTY_PATH, _MOUNT_ATTR_RDONLY, _MNT_DETACH = 4, 1, 2


def _mount_attr(attr_set: int):  # type: ignore[no-untyped-def]
    """struct mount_attr for mount_setattr(2).  ctypes is imported here, not with the module: only
    a live (u)mount needs it, and every emulated bastille/jls/mount process imports this module."""
    import ctypes

    class MountAttr(ctypes.Structure):
        _fields_ = [
            ("attr_set", ctypes.c_uint64),
            ("attr_clr", ctypes.c_uint64),
            ("propagation", ctypes.c_uint64),
            ("userns_fd", ctypes.c_uint64),
        ]

    return MountAttr(attr_set, 0, 0, 0)


def _in_jail_mntns(pid: int, fn) -> bool:  # type: ignore[no-untyped-def]
    import ctypes

    child = os.fork()
    if child == 0:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
            if libc.setns(fd, 0) != 0:
                os._exit(2)
            os._exit(0 if fn(libc) else 1)
        except BaseException:
            os._exit(3)
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status) == 0


def live_mount(info: dict, host_src: str, jail_path: str, readonly: bool) -> bool:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(_SYS_OPEN_TREE, -100, host_src.encode(), _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC | _AT_RECURSIVE)
    if fd < 0:
        return False
    try:
        if readonly:
            attr = _mount_attr(_MOUNT_ATTR_RDONLY)
            libc.syscall(
                _SYS_MOUNT_SETATTR, fd, b"", _AT_EMPTY_PATH | _AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr)
            )

        def attach(lib) -> bool:  # type: ignore[no-untyped-def]
            lib.syscall.restype = ctypes.c_long
            return lib.syscall(_SYS_MOVE_MOUNT, fd, b"", -100, jail_path.encode(), _MOVE_MOUNT_F_EMPTY_PATH) == 0

        return _in_jail_mntns(int(info["pid"]), attach)
    finally:
        os.close(fd)


def live_umount(info: dict, jail_path: str) -> bool:
    def detach(lib) -> bool:  # type: ignore[no-untyped-def]
        return lib.umount2(jail_path.encode(), _MNT_DETACH) == 0

    return _in_jail_mntns(int(info["pid"]), detach)


def update_table(layout: Layout, name: str, info: dict) -> None:
    write_record(layout, name, info)


def write_record(layout: Layout, name: str, info: dict) -> None:
    """Replace the running jail's record whole: every jls/mount/bastille process reads it, and
    run_info takes a record it cannot parse for a dead jail's and deletes it."""
    path = layout.run_dir / f"{name}.json"
    tmp = path.with_name(f".{name}.json.{os.getpid()}")
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, path)
