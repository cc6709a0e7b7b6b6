"""The ``sandbox`` jail backend: Linux bubblewrap namespaces, the default on Linux.

A jail is ``<jails_dir>/<name>/`` holding ``root/`` (its own /etc/passwd with an unprivileged
agent user, /home/<user>, /tmp, /var/run/colibri), ``colibri.json`` (the marker that colibri
created it, its block of host ids) and ``run/`` (the pids of a running jail, its seccomp filter).

A running jail is a detached bwrap in a user namespace of its own that maps the jail's ids
0..65535 (root included) onto the tenant's block of host ids (``launcher.py`` sets it up), with
its own pid, ipc, uts, network (loopback only) and mount namespaces, a seccomp filter
(``seccomp.py``), cgroup limits on memory, processes and CPU (``cgroups.py``) and RLIMIT_NOFILE.
The host's /usr is visible read-only, /proc/sys read-only, no /sys, a minimal /dev, nothing else
of the host unless mounted.  It survives the CLI and a restart of the colibri daemon: its state is
on disk.  ``exec`` enters the running jail the same way (namespaces, cgroups, caps, filter).
"""

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from colibri.adapters import jailfs
from colibri.adapters.jail import AGENT_ID, UID_BLOCK, JailIds, JailInfo, JailState, read_jail_passwd
from colibri.adapters.runner import CommandResult, CommandRunner
from colibri.adapters.sandbox import bwrap, cgroups, procs, seccomp, userns
from colibri.adapters.sandbox.cgroups import Limits
from colibri.adapters.sandbox.mounts import SandboxMounts
from colibri.errors import JailError, JailExists, JailNotFound, TemplateNotFound

MARKER = "colibri.json"
AGENT_UID = AGENT_ID
JAIL_CAPS = bwrap.JAIL_CAPS
DEFAULT_LIMITS = Limits(memory_mib=1024, max_processes=256, cpu_percent=100)


class Sandbox(SandboxMounts):
    """JailBackend on bubblewrap."""

    name = "sandbox"
    needs_ip = False  # loopback only: no address from the pool
    live_mount_safe = True  # bound in the jail's own mount namespace

    def __init__(
        self,
        jails_dir: Path,
        templates_dir: Path,
        jail_user: str,
        runner: CommandRunner,
        *,
        limits: Limits = DEFAULT_LIMITS,
        open_files: int = 1024,
        subid_files: Sequence[Path] = userns.SUBID_FILES,
    ) -> None:
        self._dir = jails_dir
        self._templates = templates_dir
        self._user = jail_user
        self._run = runner
        self._limits = limits
        self._open_files = open_files
        self._subid_files = tuple(subid_files)

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
        uid, gid = read_jail_passwd(self.root(name), user)
        base = self._base(name)
        return (uid, gid) if base is None else userns.to_host(base, uid, gid)

    def interrupted(self, name: str) -> bool:
        """Never: a sandbox jail is built beside its place and renamed in, so a create cut short
        leaves only a ``.building-*`` directory, not a jail."""
        return False

    # ---- lifecycle ---------------------------------------------------------------------------
    def create(self, name: str, *, ip: str | None, template: str | None, ids: JailIds, tier: str = "paid") -> JailInfo:
        """Build the jail in a temp dir beside its final place and rename it in: never half-made.
        Its files are owned by ``ids``' block (jail root = ``ids.base``)."""
        if not ids.unprivileged:
            limits = f"{UID_BLOCK}..{2**32 - UID_BLOCK}"
            raise JailError(f"sandbox jail {name}: {ids.base} is not a block of unprivileged host ids ({limits})")
        userns.require_no_subid_overlap(ids.base, self._subid_files)
        source = self._template_dir(template)
        if (self._dir / name).exists() or (self._dir / name).is_symlink():
            raise JailExists(f"a jail named {name} already exists in {self._dir}")
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        building = self._dir / f".building-{name}-{secrets.token_hex(4)}"
        try:
            building.mkdir(mode=0o700)
            self._build_root(building / "root", name, source)
            userns.shift_tree(building / "root", ids.base)
            marker: dict[str, Any] = {"created_by": "colibri", "name": name, "template": template, "uid_base": ids.base}
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
        for top in bwrap.HOST_MERGED:  # a merged-/usr host: the same symlinks in the jail (bin -> usr/bin)
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
        base = self._require_base(name)
        userns.require_no_subid_overlap(base, self._subid_files)
        userns.require_user_namespaces()
        run = self._dir / name / "run"
        run.mkdir(mode=0o700, exist_ok=True)
        groups = self._cgroups(name)
        cgroups.kill(groups)  # not running: anything left in its groups is a jail's leftover
        cgroups.create(groups, self._limits)
        # bwrap runs as the jail's root, not the host's: the launcher stages every directory it
        # binds (checked here, then opened there without following a symlink), since the jail's
        # ids may not be able to walk to them.
        bwrap.STAGE.mkdir(mode=0o755, exist_ok=True)
        bwrap.CACHE.mkdir(mode=0o700, exist_ok=True)
        seccomp.write_bpf(run / "seccomp.bpf", cache_dir=bwrap.CACHE)
        sources = self._sources(name)
        fds = {}
        fds["seccomp"] = os.open(run / "seccomp.bpf", os.O_RDONLY | os.O_CLOEXEC)
        read_end, write_end = os.pipe()
        fds["info"] = write_end
        config = {
            "base": base,
            "stage": str(bwrap.STAGE),
            "sources": sources,
            "cgroup_procs": groups.procs(),
            "nofile": self._open_files,
            "bwrap": bwrap.argv(name, self.root(name), self._mounts(name), fds),
            "env": {"PATH": bwrap.JAIL_PATH},
        }
        try:
            raw = bwrap.launch(config, fds, run / "console.log", read_end)
        except JailError:
            with contextlib.suppress(JailError):
                cgroups.remove(groups, timeout=1.0)
            raise
        if not raw:
            with contextlib.suppress(JailError):
                cgroups.remove(groups, timeout=1.0)
            raise JailError(f"sandbox jail {name} did not start: {bwrap.last_line(run / 'console.log')}")
        ns_init = int(json.loads(raw)["child-pid"])
        started = bwrap.start_time(ns_init)
        (run / "pids.json").write_text(json.dumps({"ns_init": ns_init, "start": started}))
        init = bwrap.wait_for_init(ns_init)
        if init is None:
            self._kill(name)
            with contextlib.suppress(JailError):
                cgroups.remove(groups, timeout=1.0)
            raise JailError(f"sandbox jail {name} started but its /etc/rc did not (see {run / 'console.log'})")
        return self.info(name)

    def _sources(self, name: str) -> dict[str, str]:
        """The directories bwrap binds, by stage name.  The jail is not running, so nothing in it
        can swap a checked path for a symlink before the launcher opens it (O_NOFOLLOW too)."""
        root = self.root(name)
        with jailfs.open_dir(root, "usr/local", create=True, owner=self._root_owner(name)):
            pass  # no symlink on the way (JailError)
        sources = {"root": str(root), "usr_local": str(root / "usr/local")}
        for i, mount in enumerate(self._mounts(name)):
            if mount.host_path.is_symlink() or not mount.host_path.is_dir():
                raise JailError(f"cannot mount {mount.host_path} into jail {name}: not a directory")
            sources[f"mount{i}"] = str(mount.host_path)
        return sources

    def stop(self, name: str) -> JailInfo:
        """Stop /etc/rc gently, then kill whatever is left in the jail's cgroups: a jail whose
        recorded bwrap no longer looks like one (or died) cannot leave processes running."""
        self._require(name)
        pids = self._pids(name)
        if pids is not None:
            init = bwrap.first_child(pids["ns_init"])
            if init is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(init, signal.SIGTERM)  # /etc/rc stops its services, then exits
                bwrap.wait_gone(init, 10.0)
            if not bwrap.wait_gone(pids["ns_init"], 1.0):
                self._kill(name)  # whatever is left in the namespace
        self._remove_cgroups(name)  # kills every process still in them first
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
        bwrap.wait_gone(pids["ns_init"], 5.0)

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
        self._remove_cgroups(name)
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
        init = bwrap.first_child(pids["ns_init"]) if pids else None
        if init is None:
            raise JailError(f"sandbox jail {name} is not running")
        self._require_base(name)
        home = f"/home/{user}" if user and user != "root" else "/root"
        ids = read_jail_passwd(self.root(name), user) if user and user != "root" else None
        config = {
            "pid": init,
            "cgroup_procs": self._cgroups(name).procs(),
            "nofile": self._open_files,
            "seccomp": str(self._dir / name / "run" / "seccomp.bpf"),
            "caps": sorted(bwrap.CAP_NUMBERS[c] for c in bwrap.JAIL_CAPS),
            "user": list(ids) if ids else None,
            "argv": list(argv),
            "env": {"PATH": bwrap.JAIL_PATH, "HOME": home, **(env or {})},
        }
        # The launcher enters the jail's namespaces and cgroups and runs the command with jail
        # root's capabilities (or as the user) under the jail's seccomp filter.
        command = [sys.executable, "-I", "-S", str(bwrap.LAUNCHER), "exec"]
        ok = tuple(range(256))
        launch = {"COLIBRI_LAUNCH": json.dumps(config)}  # the environment, not argv: it holds ``env``
        return self._run(command, stdin=stdin, timeout=timeout, ok_codes=ok, env=launch)

    def processes(self, name: str) -> list[tuple[int, str]]:
        return procs.in_jail(cgroups.pids(self._cgroups(name))) if self._init_pid(name) else []

    def service_argv(self, service: str, verb: str) -> list[str]:
        return ["/bin/sh", f"/etc/rc.d/{service}", verb]

    def copy_in(self, name: str, source: Path, jail_path: str, *, mode: int = 0o644) -> None:
        self._require(name)
        owner = self._root_owner(name)
        if source.is_dir():
            jailfs.copy_tree(source, self.root(name), jail_path, owner=owner)
        else:
            data = source.read_bytes()
            jailfs.write_file(self.root(name), jail_path, data, mode=mode, owner=owner, dir_owner=owner)

    def enable_service(self, name: str, service: str, enabled: bool) -> bool:
        """A sandbox jail's /etc/rc starts every executable /etc/rc.d script: no rc variables."""
        self._require(name)
        return False

    # ---- helpers ---------------------------------------------------------------------------------
    def _require(self, name: str) -> None:
        if self.info(name).state is JailState.ABSENT:
            raise JailNotFound(name)

    def _base(self, name: str) -> int | None:
        """The first host id of the jail's user namespace: recorded in colibri's marker; for a
        jail colibri did not create, the owner of its root directory when that is a block's
        (its own ids, kept when adopted); None when the jail's root would be a host account."""
        marker = self._marker(name)
        if marker is not None:
            base = marker.get("uid_base")
            ok = isinstance(base, int) and not isinstance(base, bool) and base >= UID_BLOCK
            return base if ok else None
        try:
            st = os.lstat(self.root(name))
        except OSError:
            return None
        return st.st_uid if st.st_uid == st.st_gid and st.st_uid >= UID_BLOCK else None

    def _require_base(self, name: str) -> int:
        base = self._base(name)
        if base is None:
            raise JailError(
                f"sandbox jail {name} has no block of host ids (its root directory is owned by a host "
                "account, and colibri did not create it): the sandbox backend never runs a jail whose "
                f"root would be a host account; chown its tree to a free block of {UID_BLOCK} ids first"
            )
        return base

    def _root_owner(self, name: str) -> tuple[int, int] | None:
        base = self._base(name)
        return None if base is None else (base, base)

    def _cgroups(self, name: str) -> cgroups.Hierarchy:
        # The jails directory's hash keeps two colibri instances' jails of one name apart.
        tag = hashlib.sha256(str(self._dir.resolve()).encode()).hexdigest()[:8]
        return cgroups.hierarchy(f"{name}-{tag}")

    def _remove_cgroups(self, name: str) -> None:
        try:
            groups = self._cgroups(name)
        except JailError:
            return  # a host without the controllers never had the jail's groups
        cgroups.kill(groups)
        cgroups.remove(groups)

    def _marker(self, name: str) -> dict[str, Any] | None:
        path = self._dir / name / MARKER
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if data.get("created_by") == "colibri" else None

    def _pids(self, name: str) -> dict[str, int] | None:
        """The running jail's recorded pids, when its bwrap is still the process recorded at
        start (start time and host uid: see bwrap.is_ours); else None."""
        try:
            pids = json.loads((self._dir / name / "run" / "pids.json").read_text())
        except (OSError, ValueError):
            return None
        base = self._base(name)
        if not isinstance(pids, dict) or base is None:
            return None
        ns_init, started = pids.get("ns_init"), pids.get("start")
        if not isinstance(ns_init, int) or not isinstance(started, int):
            return None  # no start time recorded: nothing to tell our bwrap from a reused pid
        return {"ns_init": ns_init} if bwrap.is_ours(ns_init, started, base) else None

    def _init_pid(self, name: str) -> int | None:
        pids = self._pids(name)
        return bwrap.first_child(pids["ns_init"]) if pids else None
