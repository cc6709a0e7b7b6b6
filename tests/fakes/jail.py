"""FakeJails: a JailBackend that keeps its jails in memory, their roots in a directory.

What it does is what the contract says (tests/contract runs it beside sandbox and bastille): a
jail's files are real files under ``base/<name>/root``, so jailfs, the mother's install, the
identity and ``.env`` work as on a real backend; ``exec`` runs a tiny shell of its own (``cat``,
``exit N``, ``touch``, ``id -u``, ``ls``, ``;`` and ``&&``) and the mother's rc.d script, whose
mother behaves like skills/mother: it reads its identity and its ``.env``, then logs its ready
line (``mother[PID]: ready: ...``) or a refusal, as rc.subr's ``status``/``start``/``stop``
answer (exit 1 for "already running?" and "not running").  The jail's rc starts the mother at
every boot, as the agent template's rc does.

Faults a test can set: ``fail[op] = error`` (raised by create, start, stop, destroy, mount, ...),
``mother_refuses = "reason"``, ``mother_exits = True`` (it dies at once, saying nothing),
``mother_silent = True`` (it runs and never says it is ready), ``interrupted_creates`` (names
whose create was cut short).

As root (``host_ids=True``) a jail's ids are its tenant's block, as on the sandbox: jail root is
``ids.base`` on the host and files are chowned so.  As a normal user (the unit layer) every id of
every jail is the caller's own, since only root can give a file away.
"""

import json
import os
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from colibri.adapters import jailfs
from colibri.adapters.jail import JailIds, JailInfo, JailState, Mount, read_jail_passwd
from colibri.adapters.runner import CommandResult
from colibri.errors import ColibriError, JailError, JailExists, JailNotFound, TemplateNotFound

RC_SCRIPT = "etc/rc.d/colibri_mother"
IDENTITY = "usr/local/etc/colibri/agent.json"
LOG = "var/log/colibri_mother.log"
PIDFILE = "var/run/colibri_mother_child.pid"
PASSWD = "root:*:0:0::/root:/bin/sh\nagent:*:1001:1001::/home/agent:/bin/sh\n"


@dataclass
class _Jail:
    managed: bool
    base: int | None
    running: bool = False
    mother: int | None = None  # the running mother's pid
    mounts: dict[str, Mount] = field(default_factory=dict)  # configured
    live: dict[str, Mount] = field(default_factory=dict)  # in the running jail
    enabled: set[str] = field(default_factory=set)


class FakeJails:
    """JailBackend in memory (see the module docstring)."""

    name = "fake"
    needs_ip = False
    live_mount_safe = True

    def __init__(self, base: Path, *, host_ids: bool | None = None) -> None:
        self._dir = base
        self._host_ids = os.geteuid() == 0 if host_ids is None else host_ids
        self._jails: dict[str, _Jail] = {}
        self._pids = 4000
        self.fail: dict[str, ColibriError] = {}
        self.mother_refuses: str | None = None
        self.mother_exits = False
        self.mother_silent = False
        self.interrupted_creates: set[str] = set()
        self.calls: list[tuple[str, str]] = []

    # ---- queries -----------------------------------------------------------------------------
    def root(self, name: str) -> Path:
        return self._dir / name / "root"

    def info(self, name: str) -> JailInfo:
        jail = self._jails.get(name)
        if jail is None:
            return JailInfo(name, JailState.ABSENT, self.root(name))
        state = JailState.RUNNING if jail.running else JailState.STOPPED
        return JailInfo(name, state, self.root(name), None, jail.managed)

    def list_jails(self) -> list[JailInfo]:
        return [self.info(n) for n in sorted(self._jails)]

    def interrupted(self, name: str) -> bool:
        return name in self.interrupted_creates and not self._get(name).managed

    def user_ids(self, name: str, user: str) -> tuple[int, int]:
        jail = self._get(name)
        uid, gid = read_jail_passwd(self.root(name), user)
        if not self._host_ids:
            return os.getuid(), os.getgid()
        return (uid, gid) if jail.base is None else (jail.base + uid, jail.base + gid)

    # ---- lifecycle ---------------------------------------------------------------------------
    def create(self, name: str, *, ip: str | None, template: str | None, ids: JailIds, tier: str = "paid") -> JailInfo:
        self._call("create", name)
        if not ids.unprivileged:
            raise JailError(f"fake jail {name}: {ids.base} is not a block of unprivileged host ids")
        if template not in (None, "colibri/agent"):
            raise TemplateNotFound(f"template not found: {template}")
        if name in self._jails and not self.interrupted(name):
            raise JailExists(f"a jail named {name} already exists")
        shutil.rmtree(self._dir / name, ignore_errors=True)  # a half-made one is replaced
        self.interrupted_creates.discard(name)
        self._jails[name] = _Jail(managed=True, base=ids.base)
        self._build(name)
        return self.info(name)

    def add_foreign(self, name: str, *, rc_script: bool = True) -> Path:
        """A jail made without colibri (by hand, or by the operator's own tools)."""
        self._jails[name] = _Jail(managed=False, base=None)
        self._build(name, rc_script=rc_script)
        return self.root(name)

    def _build(self, name: str, *, rc_script: bool = True) -> None:
        root = self.root(name)
        for rel in ("etc/rc.d", "home/agent", "var/log", "var/run", "usr/local/etc"):
            (root / rel).mkdir(parents=True, exist_ok=True)
        (root / "etc/passwd").write_text(PASSWD)
        if rc_script:
            (root / RC_SCRIPT).write_text("#!/bin/sh\n# the fake's mother: see tests/fakes/jail.py\n")
        if self._host_ids:
            os.chown(root / "home/agent", *self.user_ids(name, "agent"))

    def start(self, name: str) -> JailInfo:
        self._call("start", name)
        jail = self._get(name)
        if not jail.running:
            jail.running = True
            jail.live = dict(jail.mounts)
            if (self.root(name) / RC_SCRIPT).is_file() and (self.root(name) / IDENTITY).is_file():
                self._boot_mother(name, jail)  # the jail's rc starts it at boot
        return self.info(name)

    def stop(self, name: str) -> JailInfo:
        self._call("stop", name)
        jail = self._get(name)
        jail.running, jail.mother, jail.live = False, None, {}
        return self.info(name)

    def restart(self, name: str) -> JailInfo:
        self.stop(name)
        return self.start(name)

    def destroy(self, name: str) -> None:
        self._call("destroy", name)
        jail = self._jails.get(name)
        if jail is None:
            raise JailNotFound(name)
        if not jail.managed:
            raise JailError(f"jail {name} was not created by colibri; refusing to destroy it")
        self.stop(name)
        shutil.rmtree(self._dir / name)
        del self._jails[name]

    # ---- inside the jail ---------------------------------------------------------------------------
    def service_argv(self, service: str, verb: str) -> list[str]:
        return ["/bin/sh", f"/etc/rc.d/{service}", verb]

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
        self._call("exec", name)
        jail = self._get(name)
        if not jail.running:
            raise JailError(f"jail {name} is not running")
        if list(argv[:2]) == ["/bin/sh", f"/{RC_SCRIPT}"] and len(argv) == 3:
            code, out = self._rc(name, jail, argv[2])
            return CommandResult(tuple(argv), code, out.encode(), b"")
        script = argv[2] if list(argv[:2]) == ["/bin/sh", "-c"] and len(argv) == 3 else shlex.join(argv)
        return self._shell(name, tuple(argv), script, user or "root", stdin or b"")

    def copy_in(self, name: str, source: Path, jail_path: str, *, mode: int = 0o644) -> None:
        self._get(name)
        owner = self.user_ids(name, "root")
        if source.is_dir():
            jailfs.copy_tree(source, self.root(name), jail_path, owner=owner)
        else:
            data = source.read_bytes()
            jailfs.write_file(self.root(name), jail_path, data, mode=mode, owner=owner, dir_owner=owner)

    def mount(self, name: str, mount: Mount) -> None:
        self._call("mount", name)
        jail = self._get(name)
        point = self.root(name) / mount.jail_path.lstrip("/")
        point.mkdir(parents=True, exist_ok=True)  # the mount point, as both real backends make it
        jail.mounts[mount.jail_path] = mount
        if jail.running:
            jail.live[mount.jail_path] = mount

    def umount(self, name: str, jail_path: str) -> bool:
        jail = self._get(name)
        had = jail.mounts.pop(jail_path, None) is not None
        was_live = jail.live.pop(jail_path, None) is not None
        return had or was_live

    def is_mounted(self, name: str, mount: Mount) -> bool:
        jail = self._jails.get(name)
        live = jail.live.get(mount.jail_path) if jail is not None and jail.running else None
        return live is not None and live.host_path == mount.host_path

    def processes(self, name: str) -> list[tuple[int, str]]:
        jail = self._jails.get(name)
        if jail is None or not jail.running:
            return []
        mother = [(jail.mother, "python3 /usr/local/share/colibri/skills/mother/mother.py")] if jail.mother else []
        return [(1, "/sbin/init"), *mother]

    def enable_service(self, name: str, service: str, enabled: bool) -> bool:
        jail = self._get(name)
        changed = (service in jail.enabled) != enabled
        (jail.enabled.add if enabled else jail.enabled.discard)(service)
        return changed

    # ---- the mother's rc.d script, and its mother -------------------------------------------------
    def _rc(self, name: str, jail: _Jail, verb: str) -> tuple[int, str]:
        if verb == "status":
            return (0, f"colibri_mother is running as pid {jail.mother}.\n") if jail.mother else (1, "")
        if verb == "start":
            if jail.mother:
                return 1, f"colibri_mother already running?  (pid={jail.mother}).\n"
            self._boot_mother(name, jail)
            return 0, "Starting colibri_mother.\n"
        if verb == "stop":
            if not jail.mother:
                return 1, "colibri_mother not running? (check /var/run/colibri_mother.pid).\n"
            jail.mother = None
            return 0, "Stopping colibri_mother.\n"
        return 1, f"/etc/rc.d/colibri_mother: unknown directive '{verb}'.\n"

    def _boot_mother(self, name: str, jail: _Jail) -> None:
        """What skills/mother does before it serves: its identity, then its .env, then ready."""
        root = self.root(name)
        self._pids += 1
        pid = self._pids
        (root / PIDFILE).write_text(f"{pid}\n")
        if self.mother_exits:
            return
        reason = self.mother_refuses
        try:
            identity = json.loads((root / IDENTITY).read_text())
        except (OSError, ValueError):
            identity, reason = {}, reason or f"cannot read the identity /{IDENTITY}"
        env = str(identity.get("env_file", "/home/agent/.env")).lstrip("/")
        if reason is None and identity.get("secrets_expected", True) and not (root / env).is_file():
            reason = f"no .env at /{env}"
        if reason is not None:
            self._log(root, f"mother[{pid}]: refusing to start: {reason}")
            return
        jail.mother = pid
        if not self.mother_silent:
            self._log(root, f"mother[{pid}]: ready: identity read and .env checked")

    @staticmethod
    def _log(root: Path, line: str) -> None:
        with (root / LOG).open("a") as log:
            log.write(line + "\n")

    # ---- the tiny shell ----------------------------------------------------------------------------
    def _shell(self, name: str, argv: tuple[str, ...], script: str, user: str, stdin: bytes) -> CommandResult:
        out, err, code = b"", b"", 0
        for sequence in script.split(";"):
            for command in sequence.split("&&"):
                words = shlex.split(command)
                if not words:
                    continue
                try:
                    code, said, complaint = self._command(name, words, user, stdin)
                except OSError as exc:  # what a real shell would say, and its status
                    code, said, complaint = 1, b"", f"{words[0]}: {exc.strerror}\n".encode()
                out, err = out + said, err + complaint
                if words[0] == "exit" or code != 0:
                    break
            if words and words[0] == "exit":
                break
        return CommandResult(argv, code, out, err)

    def _command(self, name: str, words: list[str], user: str, stdin: bytes) -> tuple[int, bytes, bytes]:
        program, args = os.path.basename(words[0]), words[1:]
        if program == "exit":
            return int(args[0]) if args else 0, b"", b""
        if program == "cat":
            return (0, stdin, b"") if not args else (0, b"".join(self._path(name, a).read_bytes() for a in args), b"")
        if program == "id" and args == ["-u"]:
            return 0, f"{read_jail_passwd(self.root(name), user)[0]}\n".encode(), b""
        if program == "touch":
            for arg in args:
                path = self._path(name, arg)
                path.touch()
                if self._host_ids:
                    os.chown(path, *self.user_ids(name, user))
            return 0, b"", b""
        if program == "ls":
            return 0, "".join(f"{n}\n" for n in sorted(os.listdir(self._path(name, args[0])))).encode(), b""
        return 127, b"", f"fake: {program}: not found\n".encode()

    def _path(self, name: str, path: str) -> Path:
        """A jail path on the host: through a live mount, else under the jail's root."""
        jail = self._get(name)
        for point, mount in jail.live.items():
            if path == point or path.startswith(point.rstrip("/") + "/"):
                return mount.host_path / path[len(point) :].lstrip("/")
        return self.root(name) / path.lstrip("/")

    # ---- helpers -----------------------------------------------------------------------------------
    def _get(self, name: str) -> _Jail:
        jail = self._jails.get(name)
        if jail is None:
            raise JailNotFound(name)
        return jail

    def _call(self, op: str, name: str) -> None:
        self.calls.append((op, name))
        error = self.fail.get(op)
        if error is not None:
            raise error
