"""What colibri adds to a jail it adopts, written down before it adds it, and taken out again.

An adopted jail is someone else's: ``spawn-agent --jail-name/--jail-root`` checks everything it
can before it changes anything (``preflight``), then records each change in a host-side file
(``state_dir/adopted/<tenant>.json``, root-only, never in the jail, which could forge it) before
making it.  ``withdraw`` undoes exactly those changes, each one checked, and says what it
removed: a failed adoption, and ``release-agent``, both use it.  What is colibri's by path alone
(the identity, the mother's files, the tenant's ``.env``, the socket mount) always goes; what the
jail may have had before (a directory, ``colibri_mother_enable``) goes only when the record says
colibri made it.
"""

import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from colibri.adapters import jailfs
from colibri.adapters.jail import UID_BLOCK, JailBackend, JailInfo, JailState
from colibri.errors import ColibriError, CommandFailed, CommandTimeout, InvalidInput, JailError
from colibri.poll import poll_until
from colibri.services.lifecycle.layout import (
    HANDLERS_DIR,
    IDENTITY,
    JAIL_SOCKET_DIR,
    MOTHER,
    SKILL_DIR,
    SpawnPaths,
    uid_pool_lock,
)
from colibri.store.audit_hooks import record as audit_record
from colibri.store.db import Store
from colibri.store.models import Tenant
from colibri.store.repos import TenantRepo
from colibri.text import safe

RC_DIRS = ("etc/rc.d", "usr/local/etc/rc.d")  # where service(8) looks for a script
MOTHER_FILES = ("var/log/colibri_mother.log", "var/run/colibri_mother.pid", "var/run/colibri_mother_child.pid")
"""The mother's log and daemon(8)'s pidfiles (its rc.d script); the log's rotations go too."""
WRITTEN_DIRS = (
    PurePosixPath(IDENTITY).parent.as_posix(),
    SKILL_DIR,
    HANDLERS_DIR,
    JAIL_SOCKET_DIR,
    "/var/log",
    "/var/run",
)
"""Every directory colibri writes into in an adopted jail (the mother's install, its socket mount)."""


@dataclass
class Adoption:
    """The record of one adoption: what the jail was like, and each change colibri made."""

    tenant: str
    jail: str
    was_running: bool
    handlers: list[str] = field(default_factory=list)
    created_dirs: list[str] = field(default_factory=list)
    enabled_mother: bool = False
    started_jail: bool = False
    stopped_jail: bool = False
    prior_uid_base: int | None = None
    claimed_ids: bool = False

    @staticmethod
    def path(state_dir: Path, tenant: str) -> Path:
        return state_dir / "adopted" / f"{tenant}.json"

    def save(self, state_dir: Path) -> None:
        folder = state_dir / "adopted"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = self.path(state_dir, self.tenant)
        tmp = target.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
            os.chmod(tmp, 0o600)
            tmp.replace(target)
        except OSError as exc:
            raise JailError(f"cannot record the adoption of jail {self.jail} in {target}: {exc.strerror}") from None

    @classmethod
    def load(cls, state_dir: Path, tenant: str, jail: str) -> "Adoption":
        """The record, or (an adoption by an older colibri) one that claims nothing optional."""
        try:
            data = json.loads(cls.path(state_dir, tenant).read_text())
            record = cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except (OSError, ValueError, TypeError):
            return cls(tenant, jail, was_running=True)
        return record

    def merged(self, earlier: Path) -> "Adoption":
        """This record with what an earlier, unfinished adoption of the same jail recorded (one
        cut short by a kill, or whose undo failed): its changes are colibri's too, and the jail's
        state before it is the one to restore.  Itself when there is none."""
        if not earlier.exists():
            return self
        old = Adoption.load(earlier.parent.parent, self.tenant, self.jail)
        if old.jail != self.jail:
            return self
        return Adoption(
            self.tenant,
            self.jail,
            was_running=old.was_running,
            handlers=sorted(set(old.handlers) | set(self.handlers)),
            created_dirs=old.created_dirs + [d for d in self.created_dirs if d not in old.created_dirs],
            enabled_mother=old.enabled_mother or self.enabled_mother,
            started_jail=old.started_jail or self.started_jail,
            stopped_jail=old.stopped_jail or self.stopped_jail,
            prior_uid_base=old.prior_uid_base if old.claimed_ids else self.prior_uid_base,
            claimed_ids=old.claimed_ids or self.claimed_ids,
        )

    @staticmethod
    def forget(state_dir: Path, tenant: str) -> None:
        Adoption.path(state_dir, tenant).unlink(missing_ok=True)


def missing_dirs(root: Path, rel: str) -> list[str]:
    """The directories on the way to ``root/rel`` that are not there yet (outermost first).
    JailError when one that is there is a symlink or not a directory: colibri never writes
    through it, so an adoption that would need to is refused before anything is changed."""
    parts = [p for p in PurePosixPath(rel).parts if p not in ("/", "")]
    missing: list[str] = []
    for i in range(1, len(parts) + 1):
        sub = "/".join(parts[:i])
        if missing:
            missing.append("/" + sub)
            continue
        try:
            with jailfs.open_dir(root, sub):
                pass
        except JailError as exc:
            if not str(exc).startswith("no such directory in the jail"):
                raise JailError(f"{exc}: colibri writes {'/' + rel.lstrip('/')} there") from None
            missing.append("/" + sub)
    return missing


def preflight(backend: JailBackend, name: str, jail_user: str) -> tuple[list[str], bool]:
    """Everything an adoption needs that can be checked without changing anything: the agent
    user in the jail's own passwd, its home (a directory, no symlink), the mother's rc.d script,
    and every directory colibri will write to (no symlink on the way).  Returns the directories
    colibri would create, and whether the jail runs."""
    root = backend.root(name)
    backend.user_ids(name, jail_user)  # JailError: missing from the jail's /etc/passwd, or unsafe
    home = f"home/{jail_user}"
    try:
        with jailfs.open_dir(root, home):
            pass
    except JailError as exc:
        raise JailError(f"cannot adopt jail {name}: the agent's home /{home}: {exc}") from None
    if not any(_is_file(root, f"{d}/{MOTHER}") for d in RC_DIRS):
        raise JailError(
            f"cannot adopt jail {name}: it has no rc.d script {MOTHER} (in /etc/rc.d or /usr/local/etc/rc.d); "
            "prepare it with the agent template first (bastille template NAME colibri/agent)"
        )
    created: list[str] = []
    for rel in WRITTEN_DIRS:
        try:
            found = missing_dirs(root, rel)
        except JailError as exc:
            raise JailError(f"cannot adopt jail {name}: {exc}") from None
        created += [d for d in found if d not in created]
    return created, backend.info(name).state is JailState.RUNNING


def _is_file(root: Path, rel: str) -> bool:
    try:
        jailfs.read_file(root, rel, limit=1)
    except JailError:
        return False
    return True


def withdraw(backend: JailBackend, record: Adoption, jail_user: str, *, restore_state: bool) -> list[str]:
    """Take colibri out of the adopted jail, each step checked: stop the mother, unmount the
    socket, remove colibri's files and the tenant's ``.env``, disable the mother if colibri
    enabled it, remove the directories colibri made (when empty).  With ``restore_state`` (a
    failed adoption), a jail colibri started is stopped again.  Returns what was removed; raises
    JailError naming the step that failed (what was removed before it stays removed, and a
    second run goes on from there)."""
    name = record.jail
    removed: list[str] = []
    info = backend.info(name)
    if info.state is JailState.ABSENT:
        return removed
    if info.state is JailState.RUNNING and _mothers(backend, name):
        try:  # the rc.d script is the jail's: it may flood or hang, the kill below still comes
            result = backend.exec(name, backend.service_argv(MOTHER, "stop"), timeout=60)
            said, how = safe((result.out + result.err).strip()[-200:]), f"exit {result.exit_code}"
        except (CommandFailed, CommandTimeout) as exc:
            said, how = safe(str(exc)[:200]), "failed"
        left = _mothers(backend, name)
        if left:  # its pidfile gone or moved (root in the jail may rename /var/run): by its pids
            backend.exec(name, ["/bin/kill", "-TERM", *map(str, left)], timeout=30)
        if poll_until(lambda: None if _mothers(backend, name) else True, timeout=10.0) is None:
            raise JailError(
                f"cannot release jail {name}: the mother is still running after "
                f"'service {MOTHER} stop' and a kill ({how}{': ' + said if said else ''})"
            )
        removed.append("the mother (stopped)")
    if backend.umount(name, JAIL_SOCKET_DIR):
        removed.append(f"the socket mount on {JAIL_SOCKET_DIR}")
    root = backend.root(name)
    paths: list[tuple[str, bool]] = [(IDENTITY, False), (SKILL_DIR, True), (f"home/{jail_user}/.env", False)]
    paths += [(f"{HANDLERS_DIR}/{h}", False) for h in record.handlers]
    paths += [(f, False) for f in MOTHER_FILES]
    paths += [(f"var/log/{n}", False) for n in _rotated_logs(root)]
    for rel, tree in paths:
        if jailfs.remove(root, rel, tree=tree):
            removed.append("/" + rel.lstrip("/"))
    if record.enabled_mother and backend.enable_service(name, MOTHER, False):
        removed.append(f"{MOTHER}_enable from /etc/rc.conf")
    for rel in sorted(record.created_dirs, key=lambda d: d.count("/"), reverse=True):
        if _remove_empty(root, rel):
            removed.append(rel + "/")
    if restore_state and record.started_jail and backend.info(name).state is JailState.RUNNING:
        backend.stop(name)
        removed.append("the jail's start (stopped again)")
    if restore_state and record.stopped_jail and backend.info(name).state is not JailState.RUNNING:
        backend.start(name)
        removed.append("the jail's stop for its socket mount (started again)")
    return removed


MOTHER_COMMAND = f"{SKILL_DIR}/mother.py"


def _mothers(backend: JailBackend, name: str) -> list[int]:
    """The mother's processes in the jail (and daemon(8)'s, its supervisor), from the host's
    process table: never the jail's pidfiles, which the tenant can move."""
    return [pid for pid, cmd in backend.processes(name) if MOTHER_COMMAND in cmd or f"daemon: {MOTHER}" in cmd]


_ROTATED = re.compile(r"colibri_mother\.log\.\d{1,3}(\.(bz2|gz|xz|zst))?", re.ASCII)
"""The mother log's old generations, as newsyslog(8) names them (the template's newsyslog.conf.d)."""


def _rotated_logs(root: Path) -> list[str]:
    try:
        with jailfs.open_dir(root, "var/log") as fd:
            return sorted(n for n in os.listdir(fd) if _ROTATED.fullmatch(n))
    except JailError:
        return []


def _remove_empty(root: Path, rel: str) -> bool:
    try:
        return jailfs.remove(root, rel)
    except JailError:
        return False  # not empty: something other than colibri put files there; left alone


def describe(removed: Iterable[str]) -> str:
    items = list(removed)
    return ", ".join(items) if items else "nothing (colibri had nothing left in it)"


class Adopter:
    """spawn-agent ``--jail-name/--jail-root``: the checks before anything changes, the ids the
    jail keeps, and the undo of a failed adoption (the pipeline calls these; ``withdraw`` does
    the jail's part)."""

    def __init__(self, store: Store, backend: JailBackend, paths: SpawnPaths) -> None:
        self._store, self._backend, self._paths = store, backend, paths

    def rerun(self, tenant: Tenant, info: JailInfo, name: str, root: Path) -> JailInfo:
        """A re-run of a spawn whose adoption went through: the same checks, nothing claimed again."""
        self._target(tenant, info, name, root)
        self.claim_ids(tenant, name, None)
        tenant.adopted = True
        return info

    def _target(self, tenant: Tenant, info: JailInfo, name: str, root: Path) -> None:
        if name != tenant.jail_name:
            raise InvalidInput(f"--jail-name {name} must be the tenant's jail name {tenant.jail_name} (1:1:1)")
        if info.state is JailState.ABSENT:
            raise JailError(f"cannot adopt jail {name}: the {self._backend.name} backend has no such jail")
        if root.is_symlink():
            raise JailError(f"cannot adopt jail {name}: --jail-root {root} is a symlink")
        if root.resolve() != info.root.resolve() or info.root.is_symlink():
            raise JailError(f"cannot adopt jail {name}: its root is {info.root}, not {root}")
        if info.managed:
            raise JailError(f"cannot adopt jail {name}: colibri created it; run 'colibri spawn-agent {name}' instead")

    def check(self, tenant: Tenant, name: str, root: Path) -> Adoption:
        """Check everything an adoption needs before anything changes (the jail, its root, its
        ids against the other tenants', the agent user, its home, every directory colibri writes
        to), then start the record of what it is about to change."""
        info = self._backend.info(name)
        self._target(tenant, info, name, root)
        self._ids_of(tenant, name)
        created, running = preflight(self._backend, name, self._paths.jail_user)
        handlers = self._paths.skills_dir / "mother" / "handlers"
        record = Adoption(
            tenant.tenant_id,
            name,
            was_running=running,
            handlers=sorted(p.name for p in handlers.iterdir() if p.is_file()) if handlers.is_dir() else [],
            created_dirs=created,
        )
        record = record.merged(Adoption.path(self._paths.records, tenant.tenant_id))
        record.save(self._paths.records)
        tenant.adopted = True
        return record

    def undo(self, tenant: Tenant, record: Adoption | None, exc: BaseException) -> None:
        """A new adoption failed (or was interrupted): take out what it added and forget the jail
        (the tenant is then ``failed`` with the reason, and not adopted).  An undo that fails too
        is said with it; its record stays, and the next adoption of the jail takes it over."""
        try:
            if record is not None:
                withdraw(self._backend, record, self._paths.jail_user, restore_state=True)
        except ColibriError as undo:
            tenant.adopted = False
            if not isinstance(exc, ColibriError):
                return  # the interrupt goes on; the record stays for the next run (merged)
            where = Adoption.path(self._paths.records, tenant.tenant_id)
            raise JailError(f"{exc}; undoing the adoption failed too ({undo}): see {where}") from None
        fields: dict[str, Any] = {"adopted": False, "spawn_step": None, "jail_root": None, "backend": None}
        if record is not None and record.claimed_ids:
            fields["uid_base"] = record.prior_uid_base
        with self._store.session() as session:
            TenantRepo(session).change(tenant.tenant_id, audit="adopt.undo", **fields)
        Adoption.forget(self._paths.records, tenant.tenant_id)
        tenant.adopted = False

    def _ids_of(self, tenant: Tenant, name: str) -> int | None:
        """The block of host ids the adopted jail's root is on, checked against every other
        tenant's (no change); None for a jail on host ids (bastille), which claims no block."""
        base = self._backend.user_ids(name, "root")[0]
        if base < UID_BLOCK:
            return None
        with self._store.session() as session:
            for other in TenantRepo(session).find(include_removed=True):
                held = other.uid_base
                if other.tenant_id != tenant.tenant_id and held is not None and abs(held - base) < UID_BLOCK:
                    raise JailError(
                        f"cannot adopt jail {name}: its ids ({base}..) overlap tenant {other.tenant_id}'s block"
                    )
                if other.tenant_id == tenant.tenant_id and held not in (None, base):
                    raise JailError(f"cannot adopt jail {name}: tenant {tenant.tenant_id} already has the block {held}")
        return base

    def claim_ids(self, tenant: Tenant, name: str, record: Adoption | None) -> None:
        """An adopted jail keeps its own ids.  When they are a block of host ids (a sandbox jail
        in a user namespace), it must be no other tenant's, and is recorded as this tenant's so
        that it is never given out; a jail on host ids (bastille) records nothing."""
        with uid_pool_lock(self._paths.locks):
            base = self._ids_of(tenant, name)  # again, under the pool's lock
            if base is None:
                return
            with self._store.session() as session:
                row = TenantRepo(session).get_for_update(tenant.tenant_id)
                assert row is not None
                if row.uid_base == base:
                    return
                if record is not None:
                    record.prior_uid_base, record.claimed_ids = row.uid_base, True
                    record.save(self._paths.records)
                row.uid_base = base
                audit_record(session, "adopt.claim_ids", f"tenant:{row.tenant_id}", tenant=row.tenant_id, uid_base=base)
