"""The ``sandbox`` jail backend: Linux bubblewrap namespaces, the default on Linux.

A jail is ``<jails_dir>/<name>/`` holding ``root/`` (its own /etc/passwd with an unprivileged
agent user, /home/<user>, /tmp, /var/run/colibri), ``colibri.json`` (the marker that colibri
created it, and its mounts) and ``run/`` (the pids of a running jail).  A running jail is a
detached bwrap process with its own pid, ipc, uts, network (loopback only) and mount namespaces;
the host's /usr is visible read-only, nothing else of the host unless mounted.  It survives the
CLI and a restart of the colibri daemon: its state is on disk.  ``exec`` enters the running
jail's namespaces with nsenter(1).
"""

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from colibri.adapters import jailfs
from colibri.adapters.jail import JailIds, JailInfo, JailState, Mount, env_list, read_jail_passwd
from colibri.adapters.runner import CommandResult, CommandRunner
from colibri.errors import JailError, JailExists, JailNotFound, TemplateNotFound

MARKER = "colibri.json"
AGENT_UID = 1001
_HOST_RO = ("usr",)
_HOST_MERGED = ("bin", "sbin", "lib", "lib64", "lib32", "libx32")
JAIL_CAPS = ("setuid", "setgid", "kill", "chown", "fowner", "dac_override")
"""What root inside a sandbox jail keeps (like a FreeBSD jail's root: no mount, no modules, no
ptrace of the host, no raw network): enough to drop to the agent user and manage its files."""


class Sandbox:
    """JailBackend on bubblewrap."""

    name = "sandbox"

    def __init__(self, jails_dir: Path, templates_dir: Path, jail_user: str, runner: CommandRunner) -> None:
        self._dir = jails_dir
        self._templates = templates_dir
        self._user = jail_user
        self._run = runner

    # ---- queries -----------------------------------------------------------------------------
    def root(self, name: str) -> Path:
        return self._dir / name / "root"

    def info(self, name: str) -> JailInfo:
        home = self._dir / name
        if home.is_symlink() or not home.is_dir():
            return JailInfo(name, JailState.ABSENT, self.root(name))
        marker = self._marker(name)
        state = JailState.RUNNING if self._init_pid(name) else JailState.STOPPED
        return JailInfo(name, state, self.root(name), None, marker is not None)

    def list_jails(self) -> list[JailInfo]:
        if not self._dir.is_dir():
            return []
        names = sorted(p.name for p in self._dir.iterdir() if not p.name.startswith(".") and p.is_dir())
        return [self.info(n) for n in names]

    def user_ids(self, name: str, user: str) -> tuple[int, int]:
        self._require(name)
        return read_jail_passwd(self.root(name), user)

    # ---- lifecycle ---------------------------------------------------------------------------
    def create(self, name: str, *, ip: str | None, template: str | None, ids: JailIds | None = None) -> JailInfo:
        """Build the jail in a temp dir beside its final place and rename it in: never half-made."""
        source = self._template_dir(template)
        if (self._dir / name).exists() or (self._dir / name).is_symlink():
            raise JailExists(f"a jail named {name} already exists in {self._dir}")
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        building = self._dir / f".building-{name}-{secrets.token_hex(4)}"
        try:
            building.mkdir(mode=0o700)
            self._build_root(building / "root", name, source)
            marker: dict[str, Any] = {"created_by": "colibri", "name": name, "template": template}
            (building / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            (building / "run").mkdir(mode=0o700)
            os.rename(building, self._dir / name)
        except OSError as exc:
            shutil.rmtree(building, ignore_errors=True)
            if (self._dir / name).exists():
                raise JailExists(f"a jail named {name} appeared while it was being created") from None
            raise JailError(f"cannot create sandbox jail {name}: {exc.strerror}") from None
        return self.info(name)

    def _template_dir(self, template: str | None) -> Path:
        wanted = template or "colibri/agent"
        namespace, _, short = wanted.partition("/")
        folder = self._templates / short
        if namespace != "colibri" or not short or not (folder / "sandbox").is_dir():
            raise TemplateNotFound(f"template not found: {wanted} (sandbox templates live in {self._templates})")
        return folder

    def _build_root(self, root: Path, name: str, template: Path) -> None:
        uid = gid = AGENT_UID
        for rel in ("etc/rc.d", "tmp", "var/run/colibri", "var/log", "usr/local/etc/colibri", "home", "root"):
            (root / rel).mkdir(parents=True, exist_ok=True)
        (root / "tmp").chmod(0o1777)
        user = self._user
        (root / "etc/passwd").write_text(
            f"root:x:0:0:root:/root:/bin/sh\n{user}:x:{uid}:{gid}:colibri agent:/home/{user}:/bin/sh\n"
        )
        (root / "etc/group").write_text(f"root:x:0:\n{user}:x:{gid}:\n")
        (root / "etc/hostname").write_text(f"{name}\n")
        (root / "etc/hosts").write_text(f"127.0.0.1 localhost {name}\n")
        for top in _HOST_MERGED:  # a merged-/usr host: the same symlinks in the jail (bin -> usr/bin)
            host = Path("/") / top
            if host.is_symlink():
                (root / top).symlink_to(host.readlink())
        home = root / "home" / user
        home.mkdir(mode=0o750)
        os.chown(home, uid, gid)
        jailfs.copy_tree(template / "sandbox", root, ".")

    def start(self, name: str) -> JailInfo:
        self._require(name)
        if self._init_pid(name):
            return self.info(name)
        run = self._dir / name / "run"
        run.mkdir(mode=0o700, exist_ok=True)
        read_end, write_end = os.pipe()
        log = (run / "console.log").open("ab")
        try:
            # setsid -f: bwrap runs in a session of its own and is not our child, so it outlives
            # this process and leaves no zombie behind.
            proc = subprocess.Popen(
                ["setsid", "-f", *self._bwrap_argv(name, write_end)],
                pass_fds=(write_end,),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            )
        except FileNotFoundError:
            raise JailError("bubblewrap (bwrap) is not installed: apt-get install bubblewrap") from None
        finally:
            os.close(write_end)
            log.close()
        with os.fdopen(read_end, "rb") as info_pipe:
            raw = info_pipe.read(4096)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise JailError(f"sandbox jail {name}: bubblewrap did not detach within 30 s") from None
        if not raw:
            raise JailError(f"sandbox jail {name} did not start (see {run / 'console.log'})")
        ns_init = int(json.loads(raw)["child-pid"])
        (run / "pids.json").write_text(json.dumps({"ns_init": ns_init}))
        init = self._wait_for_init(ns_init)
        if init is None:
            self._kill(name)
            raise JailError(f"sandbox jail {name} started but its /etc/rc did not (see {run / 'console.log'})")
        return self.info(name)

    def _bwrap_argv(self, name: str, info_fd: int) -> list[str]:
        root = self.root(name)
        argv = ["bwrap", "--bind", str(root), "/"]
        for top in _HOST_RO:
            argv += ["--ro-bind", f"/{top}", f"/{top}"]
        for top in _HOST_MERGED:
            host = Path("/") / top
            if host.is_dir() and not host.is_symlink():
                argv += ["--ro-bind", str(host), f"/{top}"]
        argv += ["--bind", str(root / "usr/local"), "/usr/local"]
        for mount in self._mounts(name):
            argv += ["--ro-bind" if mount.read_only else "--bind", str(mount.host_path), mount.jail_path]
        argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm"]  # noqa: S108 (a tmpfs inside the jail)
        argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net", "--unshare-cgroup-try"]
        argv += ["--cap-drop", "ALL", *(f for cap in JAIL_CAPS for f in ("--cap-add", f"CAP_{cap.upper()}"))]
        argv += ["--hostname", name, "--info-fd", str(info_fd), "--chdir", "/"]
        # The path in argv lets us tell our bwrap from a reused pid (see _init_pid).
        argv += ["--setenv", "COLIBRI_JAIL", name, "--", "/bin/sh", "/etc/rc"]
        return argv

    def _wait_for_init(self, ns_init: int, timeout: float = 10.0) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            init = _first_child(ns_init)
            if init is not None:
                return init
            if not Path(f"/proc/{ns_init}").exists():
                return None
            time.sleep(0.02)
        return None

    def stop(self, name: str) -> JailInfo:
        self._require(name)
        pids = self._pids(name)
        if pids is None:
            return self.info(name)
        init = _first_child(pids["ns_init"])
        if init is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(init, signal.SIGTERM)  # /etc/rc stops its services, then exits
            _wait_gone(init, 10.0)
        if not _wait_gone(pids["ns_init"], 1.0):
            self._kill(name)  # whatever is left in the namespace
        (self._dir / name / "run" / "pids.json").unlink(missing_ok=True)
        state = self.info(name)
        if state.state is not JailState.STOPPED:
            raise JailError(f"sandbox jail {name} did not stop")
        return state

    def _kill(self, name: str) -> None:
        pids = self._pids(name)
        if pids is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pids["ns_init"], signal.SIGKILL)  # pid 1 of the namespace: takes all with it
        _wait_gone(pids["ns_init"], 5.0)

    def restart(self, name: str) -> JailInfo:
        self.stop(name)
        return self.start(name)

    def destroy(self, name: str) -> None:
        """Stop and delete a jail colibri created; a jail without colibri's marker is refused."""
        current = self.info(name)
        if current.state is JailState.ABSENT:
            raise JailNotFound(name)
        if not current.managed:
            raise JailError(f"jail {name} was not created by colibri; refusing to destroy it")
        self.stop(name)
        trash = self._dir / f".destroying-{name}-{secrets.token_hex(4)}"
        try:
            os.rename(self._dir / name, trash)
            shutil.rmtree(trash)
        except OSError as exc:
            raise JailError(f"cannot remove sandbox jail {name}: {exc.strerror}") from None
        if self.info(name).state is not JailState.ABSENT:
            raise JailError(f"sandbox jail {name} is still there after destroy")

    # ---- inside the jail -----------------------------------------------------------------------
    def exec(
        self,
        name: str,
        argv: Sequence[str],
        *,
        user: str | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> CommandResult:
        self._require(name)
        pids = self._pids(name)
        init = _first_child(pids["ns_init"]) if pids else None
        if init is None:
            raise JailError(f"sandbox jail {name} is not running")
        home = f"/home/{user}" if user and user != "root" else "/root"
        base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": home, **(env or {})}
        command = ["nsenter", "-t", str(init), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "--"]
        # nsenter keeps the host's full capabilities: give the command only what jail root has.
        command += ["setpriv", "--bounding-set=-all," + ",".join(f"+{c}" for c in JAIL_CAPS), "--"]
        if user and user != "root":
            command += ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--no-new-privs"]
        command += ["/usr/bin/env", "-i", *env_list(base), *argv]
        ok = tuple(range(256))
        return self._run(command, stdin=stdin, timeout=timeout, ok_codes=ok)

    def service_argv(self, service: str, verb: str) -> list[str]:
        return ["/bin/sh", f"/etc/rc.d/{service}", verb]

    def copy_in(self, name: str, source: Path, jail_path: str, *, mode: int = 0o644) -> None:
        self._require(name)
        if source.is_dir():
            jailfs.copy_tree(source, self.root(name), jail_path)
        else:
            jailfs.write_file(self.root(name), jail_path, source.read_bytes(), mode=mode)

    def mount(self, name: str, mount: Mount) -> None:
        """Record a bind mount (in ``mounts.json`` beside the root); bubblewrap applies it at the
        jail's next start."""
        self._require(name)
        entry = {"host_path": str(mount.host_path), "jail_path": mount.jail_path, "read_only": mount.read_only}
        mounts = self._mount_entries(name)
        if entry in mounts:
            return
        if not mount.host_path.is_dir() or mount.host_path.is_symlink():
            raise JailError(f"cannot mount {mount.host_path}: not a directory")
        with jailfs.open_dir(self.root(name), mount.jail_path, create=True):
            pass
        path = self._dir / name / "mounts.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([*mounts, entry], indent=2) + "\n")
        tmp.replace(path)

    # ---- helpers ---------------------------------------------------------------------------------
    def _require(self, name: str) -> None:
        if self.info(name).state is JailState.ABSENT:
            raise JailNotFound(name)

    def _marker(self, name: str) -> dict[str, Any] | None:
        path = self._dir / name / MARKER
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if data.get("created_by") == "colibri" else None

    def _mount_entries(self, name: str) -> list[dict[str, Any]]:
        try:
            entries: list[dict[str, Any]] = json.loads((self._dir / name / "mounts.json").read_text())
        except (OSError, ValueError):
            return []
        return entries

    def _mounts(self, name: str) -> list[Mount]:
        return [Mount(Path(m["host_path"]), m["jail_path"], bool(m["read_only"])) for m in self._mount_entries(name)]

    def _pids(self, name: str) -> dict[str, int] | None:
        try:
            pids: dict[str, int] = json.loads((self._dir / name / "run" / "pids.json").read_text())
        except (OSError, ValueError):
            return None
        return pids if _is_our_bwrap(pids.get("ns_init", 0), self.root(name)) else None

    def _init_pid(self, name: str) -> int | None:
        pids = self._pids(name)
        return _first_child(pids["ns_init"]) if pids else None


def _is_our_bwrap(pid: int, root: Path) -> bool:
    """True when ``pid`` is a live bwrap whose command line binds this jail's root (pid reuse)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"bwrap") and str(root).encode() in argv


def _first_child(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a zombie has released its namespace)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.02)
    return not _alive(pid)
