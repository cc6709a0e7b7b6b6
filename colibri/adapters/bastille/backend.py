"""The ``bastille`` jail backend: drives the bastille 1.4.x command on FreeBSD.

Facts this follows (shared/reference/bastille.md): thin is the default (``-T`` would be thick);
``destroy -afy``; ``NO_COLOR=1`` and no tty; targets are fuzzy (prefix autocomplete, JIDs, tags,
ALL), so the exact name is checked before every call; exit status 0 does not mean success, so
every mutation is verified afterwards (the jail's files, ``jls``); bastille has no locks, so
mutations hold a host-wide lock; template ``--arg`` values are eval'd, so none are passed.
``exec`` uses jexec(8) directly, since ``bastille cmd`` collapses exit codes to 0/1.

Agent jails are hardened (``hardening.py``): jail(8) parameters through the template's ``CONFIG``
hooks (``bastille config``, which colibri runs itself for any a custom template left out), read
back live with jls(8) after every start; rctl(8) limits through ``bastille limits``, read back
with ``rctl jail:NAME`` after every start (bastille stop clears them, start re-adds them from
rctl.conf without checking); the agent user gets the tenant's uid/gid.  Every argv is in ``argv.py``.
"""

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from colibri.adapters import jailfs
from colibri.adapters.bastille import argv as bastille_argv
from colibri.adapters.bastille.enforce import Hardening
from colibri.adapters.bastille.hardening import Limits
from colibri.adapters.bastille.mounts import Mounts
from colibri.adapters.bastille.pkgrepo import FirstPartyRepo
from colibri.adapters.bastille.prepare import Prepare
from colibri.adapters.jail import UID_BLOCK, JailIds, JailInfo, JailState, env_list, read_jail_passwd
from colibri.adapters.locks import host_lock
from colibri.adapters.runner import CommandResult, CommandRunner, stderr_tail
from colibri.domain import JAIL_NAME
from colibri.errors import (
    BastilleError,
    CommandFailed,
    InvalidInput,
    JailExists,
    JailNotFound,
    ToolMissing,
)

MARKER = "colibri.json"
SUPPORTED_MAJOR = 1
_VERSION = re.compile(r"\b(\d+)\.(\d+)\.(\d+)")
_NAME = JAIL_NAME  # bastille validate_name's charset, the tenant id's (colibri.domain)


def _exact_target(name: str) -> str:
    """``name`` if bastille reads it as that one jail (ref §1.7, §2.2): not ALL/all (every jail), not
    all digits (a JID), nothing outside validate_name's charset (a space is a list of targets)."""
    if not _NAME.fullmatch(name) or name.isdigit() or name.lower() == "all":
        raise InvalidInput(f"jail name {name[:40]!r} would not name exactly one jail for bastille; refused")
    return name


class Bastille(Mounts, Hardening, Prepare):
    """JailBackend on bastille(8)."""

    name = "bastille"
    needs_ip = True
    live_mount_safe = False  # mount.sh: host root's mount -F follows a symlink in the jail

    def __init__(
        self,
        runner: CommandRunner,
        *,
        bastille: str,
        prefix: Path,
        release: str,
        config: Path | None,
        locks_dir: Path,
        intents_dir: Path,
        templates_source: Path,
        limits: Limits | None = None,
        jail_user: str = "agent",
        pkg_repo: FirstPartyRepo | None = None,
    ) -> None:
        self._run = runner
        self._limits = limits or Limits()
        self._jail_user = jail_user
        self._bastille = bastille
        self._prefix = prefix
        self._release = release
        self._config = config
        self._locks = locks_dir
        self._intents = intents_dir
        self._templates_source = templates_source
        self._pkg_repo = pkg_repo or FirstPartyRepo(None, None)
        self._checked = False

    @classmethod
    def from_settings(cls, settings: Any, runner: CommandRunner, templates_source: Path) -> "Bastille":
        return cls(
            runner,
            bastille=settings.bastille_path,
            prefix=settings.bastille_prefix,
            release=settings.bastille_release,
            config=settings.bastille_config,
            locks_dir=settings.run_dir / "locks",
            intents_dir=settings.state_dir / "bastille-intents",
            templates_source=templates_source,
            limits=Limits(
                memory_mib=settings.jail_memory_mib,
                max_processes=settings.jail_max_processes,
                open_files=settings.jail_open_files,
                cpu_percent=settings.jail_cpu_percent,
            ),
            jail_user=settings.jail_user,
            pkg_repo=FirstPartyRepo(settings.pkg_repository_url, settings.pkg_fingerprints_dir),
        )

    # ---- running bastille ------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = {"NO_COLOR": "1"}
        if self._config is not None:
            env["BASTILLE_CONFIG"] = str(self._config)
        return env

    def _bastille_run(self, *args: str, timeout: float = 600.0) -> CommandResult:
        self.check_version()
        try:
            return self._run([self._bastille, *args], env=self._env(), timeout=timeout, ok_codes=(0, 1))
        except ToolMissing:
            raise BastilleError(f"bastille not found ({self._bastille}); install sysutils/bastille") from None

    def check_version(self) -> str:
        """Read ``bastille --version`` (stderr in 1.4.x, stdout elsewhere); refuse unknown majors."""
        if self._checked:
            return ""
        try:
            result = self._run([self._bastille, *bastille_argv.version()], env=self._env(), timeout=30, ok_codes=(0, 1))
        except ToolMissing:
            raise BastilleError(f"bastille not found ({self._bastille}); install sysutils/bastille") from None
        match = _VERSION.search(result.out + result.err)
        if match is None:
            raise BastilleError(f"cannot read the bastille version from '{self._bastille} --version'")
        if int(match.group(1)) != SUPPORTED_MAJOR:
            raise BastilleError(
                f"bastille {match.group(0)} is not supported: colibri drives bastille {SUPPORTED_MAJOR}.x (1.4 tested)"
            )
        self._checked = True
        return match.group(0)

    def _fail(self, what: str, result: CommandResult) -> BastilleError:
        detail = stderr_tail(result.stderr) or stderr_tail(result.stdout)
        return BastilleError(f"bastille {what} failed{': ' + detail if detail else ''}")

    # ---- queries -------------------------------------------------------------------------------------
    @property
    def jails_dir(self) -> Path:
        return self._prefix / "jails"

    def root(self, name: str) -> Path:
        return self.jails_dir / name / "root"

    def _names(self) -> list[str]:
        result = self._bastille_run(*bastille_argv.list_jails(), timeout=60)
        if result.exit_code != 0:
            if "No jails found" in result.err:
                return []
            raise self._fail("list jails", result)
        return [line.strip() for line in result.out.splitlines() if line.strip()]

    def _running(self, name: str) -> bool:
        try:
            result = self._run(bastille_argv.jls_name(name), env=self._env(), timeout=30, ok_codes=(0, 1))
        except CommandFailed:
            return False
        return result.exit_code == 0 and result.out.strip() == name

    def info(self, name: str) -> JailInfo:
        home = self.jails_dir / name
        if home.is_symlink() or not (home / "jail.conf").is_file():
            return JailInfo(name, JailState.ABSENT, self.root(name))
        state = JailState.RUNNING if self._running(name) else JailState.STOPPED
        marker = self._marker(name)
        return JailInfo(name, state, self.root(name), marker.get("ip") if marker else None, marker is not None)

    def list_jails(self) -> list[JailInfo]:
        return [self.info(n) for n in self._names()]

    def user_ids(self, name: str, user: str) -> tuple[int, int]:
        self._require(name)
        return read_jail_passwd(self.root(name), user)

    def _require(self, name: str) -> None:
        if _exact_target(name) not in self._names():
            raise JailNotFound(name)

    def _marker(self, name: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self.jails_dir / name / MARKER).read_text())
        except (OSError, ValueError):
            return None
        return data if data.get("created_by") == "colibri" else None

    # ---- lifecycle --------------------------------------------------------------------------------------
    def create(
        self, name: str, *, ip: str | None, template: str | None, ids: JailIds | None = None, tier: str = "paid"
    ) -> JailInfo:
        """``bastille create NAME RELEASE IP`` (thin), then the agent template; verified, and a
        partial jail left by a failed create is destroyed again (it was ours: we hold the lock and
        checked the exact name was free).  ``tier``: the jail's pkg configuration (prepare.py)."""
        _exact_target(name)
        if ip is None:
            raise BastilleError(f"bastille jail {name} needs an IP address")
        if ids is not None and not ids.unprivileged:
            # A jailed process of uid N is reachable by the host's account N (signals, ptrace).
            limits = f"{UID_BLOCK}..{2**32 - UID_BLOCK}"
            raise BastilleError(f"bastille jail {name}: {ids.base} is not a block of unprivileged host ids ({limits})")
        wanted = template or "colibri/agent"
        with host_lock(self._locks, "bastille"):
            self.check_version()  # bastille itself first: a missing bastille is the first thing to say
            self._require_bootstrap()
            self._require_racct()  # before anything is made: a host without RACCT cannot hold agents
            self._check_pkg(tier)  # and without its first-party pkg repository, no jail
            self._install_template(wanted)
            intent = self._intents / name
            home = self.jails_dir / name
            if (home.exists() or home.is_symlink()) and not (home / "jail.conf").is_file():
                raise BastilleError(
                    f"{home} exists but is no jail (no jail.conf): a create was cut short; "
                    "check what is in it, remove it by hand, then spawn again"
                )
            existing = self.info(name)
            if existing.state is not JailState.ABSENT or name in self._names():
                if not intent.exists():
                    raise JailExists(f"a jail named {name} already exists and colibri did not create it")
                self._destroy_locked(name)  # our own half-made jail from an interrupted create
            try:
                self._intents.mkdir(parents=True, exist_ok=True, mode=0o700)
                intent.write_text(json.dumps({"ip": ip, "template": wanted}))
            except OSError as exc:
                raise BastilleError(f"cannot record the intent to create {name}: {exc.strerror}") from None
            try:
                self._create_locked(name, ip, wanted, ids, tier)
            except BaseException:
                if self.info(name).state is not JailState.ABSENT:
                    self._destroy_locked(name)
                intent.unlink(missing_ok=True)
                raise
            intent.unlink(missing_ok=True)
        return self.info(name)

    def interrupted(self, name: str) -> bool:
        """True when colibri's own create of ``name`` was cut short (kill -9 between ``bastille create``
        and the marker): the intent file is there and the marker is not.  ``create`` then replaces it."""
        return (self._intents / name).is_file() and self._marker(name) is None

    def _create_locked(self, name: str, ip: str, template: str, ids: JailIds | None, tier: str) -> None:
        result = self._bastille_run(*bastille_argv.create(name, self._release, ip))
        if result.exit_code != 0 or not (self.jails_dir / name / "jail.conf").is_file():
            raise self._fail(f"create {name}", result)
        if not self._running(name):
            started = self._bastille_run(*bastille_argv.start(name))
            if not self._running(name):
                raise self._fail(f"start {name} after create", started)
        self._stage_ids(name, ids)
        self._stage_pkg(name, tier)
        applied = self._bastille_run(*bastille_argv.template(name, template))
        if applied.exit_code != 0 or "Template applied" not in applied.err + applied.out:
            # bastille's own line only says which hook failed; the hook's last words say why
            # (e.g. agent-jail-bootstrap.sh refusing a cold package cache, on stdout).
            said = [ln.strip()[:300] for ln in applied.out.splitlines() if ln.strip()][-2:]
            error = self._fail(f"template {name} {template}", applied)
            raise BastilleError(f"{error}{' (' + ' '.join(said) + ')' if said else ''}")
        # colibri/agent sets the agent-jail parameters and restarts; a template that did not is made
        # good here (bastille config, then a restart), and either way they are checked live.
        if self._configure(name):
            self._bastille_run(*bastille_argv.stop(name))
            started = self._bastille_run(*bastille_argv.start(name))
            if not self._running(name):
                raise self._fail(f"start {name} after setting its parameters", started)
        self._verify_params(name)
        self._verify_agent(name, ids)
        self._apply_limits(name)
        marker = {"created_by": "colibri", "name": name, "ip": ip, "template": template}
        try:
            (self.jails_dir / name / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        except OSError as exc:
            raise BastilleError(f"cannot mark jail {name} as colibri's: {exc.strerror}") from None

    def start(self, name: str) -> JailInfo:
        with host_lock(self._locks, "bastille"):
            self._require(name)
            result = self._bastille_run(*bastille_argv.start(name))
            if not self._running(name):  # "already running" and jail -c failures both exit 0
                raise self._fail(f"start {name}", result)
            if self._marker(name) is not None:  # colibri's agent jail: its hardening, or no jail
                try:
                    self._verify_params(name)
                    self._apply_limits(name)
                except BastilleError:
                    self._bastille_run(*bastille_argv.stop(name))
                    raise
        return self.info(name)

    def stop(self, name: str) -> JailInfo:
        with host_lock(self._locks, "bastille"):
            self._require(name)
            result = self._bastille_run(*bastille_argv.stop(name))
            if self._running(name):
                raise self._fail(f"stop {name}", result)
        return self.info(name)

    def restart(self, name: str) -> JailInfo:
        self.stop(name)
        return self.start(name)

    def destroy(self, name: str) -> None:
        """``bastille destroy -afy NAME`` of a jail colibri created; verified gone."""
        with host_lock(self._locks, "bastille"):
            if self.info(name).state is JailState.ABSENT:
                raise JailNotFound(name)
            if self._marker(name) is None:
                raise BastilleError(f"jail {name} was not created by colibri; refusing to destroy it")
            self._destroy_locked(name)

    def _destroy_locked(self, name: str) -> None:
        self._require(name)
        result = self._bastille_run(*bastille_argv.destroy(name))
        if (self.jails_dir / name).exists() or self._running(name):  # busy datasets exit 0 (#1666)
            raise self._fail(f"destroy {name} (the jail is still there)", result)

    # ---- inside the jail -----------------------------------------------------------------------------
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
        if not self._running(name):
            raise BastilleError(f"jail {name} is not running")
        command = bastille_argv.jexec(name, user or "root", env_list(env) if env else [], argv)
        return self._run(command, stdin=stdin, env=self._env(), timeout=timeout, ok_codes=tuple(range(256)))

    def service_argv(self, service: str, verb: str) -> list[str]:
        return bastille_argv.service(service, verb)

    def copy_in(self, name: str, source: Path, jail_path: str, *, mode: int = 0o644) -> None:
        self._require(name)
        if source.is_dir():
            jailfs.copy_tree(source, self.root(name), jail_path)
        else:
            jailfs.write_file(self.root(name), jail_path, source.read_bytes(), mode=mode)

    def enable_service(self, name: str, service: str, enabled: bool) -> bool:
        """rc.conf(5) in the jail, edited from the host as ``sysrc [-x] SERVICE_enable=YES``
        would: the last assignment replaced or one appended; every assignment removed."""
        self._require(name)
        rc_conf = "etc/rc.conf"
        var = f"{service}_enable"
        present = jailfs.exists(self.root(name), rc_conf)  # a symlinked /etc is a JailError here
        # Edited as bytes, split on \n only: every other line stays byte for byte (a foreign jail's).
        lines = jailfs.read_regular(self.root(name), rc_conf, 1 << 20).split(b"\n") if present else []
        if lines and lines[-1] == b"":
            lines.pop()
        key = f"{var}=".encode()
        mine = [i for i, ln in enumerate(lines) if ln.strip().startswith(key)]
        values = [lines[i].split(b"=", 1)[1].strip().strip(b"\"'").upper() for i in mine]
        if enabled:
            if values and values[-1] in (b"YES", b"TRUE", b"ON", b"1"):
                return False
            if mine:
                lines[mine[-1]] = f'{var}="YES"'.encode()
            else:
                lines.append(f'{var}="YES"'.encode())
        else:
            if not mine:
                return False
            lines = [ln for i, ln in enumerate(lines) if i not in mine]
        jailfs.write_file(self.root(name), rc_conf, b"\n".join(lines) + b"\n" if lines else b"", mode=0o644)
        return True
