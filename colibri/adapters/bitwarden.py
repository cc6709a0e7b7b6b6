"""The Bitwarden CLI (``bw``) as colibri uses it: one locked, private data directory and one
unlocked session per operation.

* bw keeps its state in ``BITWARDENCLI_APPDATA_DIR``: colibri gives it a 0700 directory of its own
  (``<state_dir>/bw``) that nothing else uses.
* Every use holds a lock: a thread lock for this process and ``fcntl.flock`` on ``colibri.lock``
  in that directory for the host.  bw is not safe to run concurrently on one directory: each
  ``unlock`` invalidates every earlier session key (reference: bw.md, "Sessions race").
* Before any login or unlock the server URL bw is configured for must equal ``vault_url``
  (normalised), so a credential is never sent to another server.
* Login uses the operator's API key (``BW_CLIENTID``/``BW_CLIENTSECRET`` in the child's
  environment); unlock uses ``--passwordenv``.  The session key lives in a local variable and in
  the environment of the bw children only, never in argv, a file, a log or the store; the vault
  is locked again when the operation ends, also on error.
* ``BW_NOINTERACTION=true`` always: without it a stale session prompts, and with no TTY exits 0
  with empty stdout (a silent false success).
* bw answers, then idles about 2 s on rxjs cleanup timers before it exits (bw 2026.9.0).  A
  read-only call (``status``, ``list``) is ended as soon as its stdout is one whole JSON
  document: bw prints that only on success (``processResponse`` in apps/cli/src/base-program.ts)
  as the last step of the command, and writes no state after it (traced: only reads of
  ``data.json``, under its ``data.json.lock`` directory, which colibri removes if the kill left
  it; we hold the lock, so no other bw uses the directory).  Calls that change state (login,
  unlock, sync, lock, logout, config) always run to their end.
* After an operation's ``lock`` succeeded, ``colibri.state`` in the data directory records the
  server bw was checked to talk to and the SHA-256 of bw's ``data.json`` (its whole state; no
  value).  The next operation skips ``bw status`` when ``data.json`` still has that digest and
  the server is still ``vault_url``: bw is then, byte for byte, logged in there and locked.  Any
  other change of bw's state (a bw run by hand, a killed operation, a logout) changes the digest,
  and ``status`` runs again.  ``vault login`` and ``vault status`` always ask bw.
* ``bw login`` syncs in full before it answers (login.command.ts), so an operation that logged
  in does not sync again.
* Only stdout is parsed.  stderr is looked at for a few known markers to choose colibri's own
  message; it is never shown, logged or put in an exception (it may hold secrets).  What bw
  prints, and the vault values it is read into, are colibri/adapters/bitwarden_output.py.
"""

import fcntl
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from colibri.adapters.bitwarden_output import (
    BwStatus,
    Selector,
    VaultItem,
    VaultSnapshot,
    json_complete,
    message,
    parse_collections,
    parse_items,
    parse_json,
    parse_status,
)
from colibri.adapters.credentials import OperatorCredentials
from colibri.adapters.runner import CommandResult, CommandRunner
from colibri.errors import PermissionDenied, SecretsError, VaultLocked

ANY_EXIT = tuple(range(256))  # bw's exit status is judged here, not by the runner
LOCK_NAME = "colibri.lock"
STATE_NAME = "colibri.state"  # the server and data.json digest the last lock left (no value)
BW_DATA = "data.json"
BW_LOCK_DIR = "data.json.lock"  # bw's own lock of data.json (proper-lockfile: a directory)
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()

_BACKFILL_MARKERS = ("KeyIdBackfill", "user key id", "user-key-id")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", re.ASCII)


def normalise_url(url: str) -> str:
    """``HTTPS://Vault.Example.org:443/`` → ``https://vault.example.org``: scheme and host
    lower-cased, the default port and trailing slashes dropped."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"https": 443, "http": 80}.get(scheme)
    netloc = host if parts.port in (None, default) else f"{host}:{parts.port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


@dataclass(frozen=True)
class BwConfig:
    bw_path: str
    appdata_dir: Path
    server_url: str
    organization_id: str
    ca_file: Path | None = None
    timeout: float = 60.0


@dataclass
class _Session:
    key: str
    synced: bool = False  # bw login synced in full within this operation
    calls: list[str] = field(default_factory=list)


class Bitwarden:
    """The bw CLI with colibri's rules (see the module docstring).  No work at construction."""

    def __init__(self, runner: CommandRunner, config: BwConfig) -> None:
        self._run = runner
        self._config = config
        self.calls = 0  # bw processes started by this object (benchmarks count them)

    @property
    def config(self) -> BwConfig:
        return self._config

    # --- argv and environment (pure; unit tests assert them) -----------------------------------

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {
            "BITWARDENCLI_APPDATA_DIR": str(self._config.appdata_dir),
            "HOME": str(self._config.appdata_dir),
            "BW_NOINTERACTION": "true",
            "NO_COLOR": "1",
        }
        if self._config.ca_file is not None:
            env["NODE_EXTRA_CA_CERTS"] = str(self._config.ca_file)
        env.update(extra or {})
        return env

    def argv(self, *args: str) -> list[str]:
        return [self._config.bw_path, *args]

    def _bw(
        self, args: Sequence[str], extra_env: Mapping[str, str] | None = None, *, read_only: bool = False
    ) -> CommandResult:
        """One bw call; a ``read_only`` one (status, list) ends once its JSON answer is whole."""
        self.calls += 1
        result = self._run(
            self.argv(*args),
            env=self.env(extra_env),
            timeout=self._config.timeout,
            ok_codes=ANY_EXIT,
            secret_output=True,
            complete=json_complete if read_only else None,
        )
        if result.stopped:
            # Killed after its answer, maybe between taking and dropping bw's lock of data.json
            # (it reads state then): drop it, or the next bw waits for it to go stale.
            with suppress(OSError):
                os.rmdir(self._config.appdata_dir / BW_LOCK_DIR)
        return result

    # --- the lock and the data directory -------------------------------------------------------

    def _prepare_dir(self) -> None:
        path = self._config.appdata_dir
        try:
            path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)  # state_dir: not world-readable
            path.mkdir(mode=0o700, exist_ok=True)
            info = os.lstat(path)
        except OSError as exc:
            raise SecretsError(f"cannot create the bw data directory {path}: {exc.strerror}") from None
        if not os.path.isdir(path) or os.path.islink(path) or info.st_uid != os.geteuid():
            raise PermissionDenied(f"the bw data directory {path} must be a directory owned by uid {os.geteuid()}")
        if info.st_mode & 0o077:
            os.chmod(path, 0o700)  # ours: tighten rather than refuse

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the process-wide and host-wide lock of the data directory."""
        self._prepare_dir()
        key = str(self._config.appdata_dir)
        with _THREAD_LOCKS_GUARD:
            thread_lock = _THREAD_LOCKS.setdefault(key, threading.Lock())
        deadline_s = max(600.0, 10 * self._config.timeout)
        if not thread_lock.acquire(timeout=deadline_s):
            raise SecretsError(f"another provisioning in this process holds the bw lock for over {deadline_s:g} s")
        try:
            fd = os.open(self._config.appdata_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                _flock(fd, deadline_s, self._config.appdata_dir)
                yield
            finally:
                os.close(fd)  # closing releases the flock
        finally:
            thread_lock.release()

    # --- operations ----------------------------------------------------------------------------

    def status(self) -> BwStatus:
        """``bw status`` (takes the lock).  Never shows a value."""
        with self.locked():
            return self._status()

    def _status(self) -> BwStatus:
        result = self._bw(["status"], read_only=True)
        if result.exit_code != 0:
            raise SecretsError(message(result, "status"))
        return parse_status(parse_json(result, "status"))

    def _ensure_server(self, allow_configure: bool) -> BwStatus:
        """Make sure bw talks to ``server_url``; configure it only while logged out."""
        wanted = normalise_url(self._config.server_url)
        if not wanted.startswith("https://"):
            raise SecretsError(f"vault_url must be an https:// URL (bw refuses anything else): {wanted}")
        if not allow_configure:
            known = self._left_locked(wanted)
            if known is not None:
                return known
        current = self._status()
        if current.server_url is not None and normalise_url(current.server_url) == wanted:
            return current
        if current.status != "unauthenticated" and not allow_configure:
            raise SecretsError(
                f"bw in {self._config.appdata_dir} is logged in to "
                f"{current.server_url or 'the default server'}, not to vault_url {wanted}: "
                "refusing to send credentials; run 'colibri vault login'"
            )
        if current.status != "unauthenticated":
            self._bw(["logout"])
        result = self._bw(["config", "server", wanted])
        if result.exit_code != 0:
            raise SecretsError(message(result, "config server"))
        current = self._status()
        if current.server_url is None or normalise_url(current.server_url) != wanted:
            raise SecretsError(f"bw did not accept the server URL {wanted}")
        return current

    def _login(self, credentials: OperatorCredentials) -> None:
        """``bw login --apikey``; it syncs in full before it answers (login.command.ts)."""
        client_id, client_secret, _ = credentials.values()
        result = self._bw(["login", "--apikey"], {"BW_CLIENTID": client_id, "BW_CLIENTSECRET": client_secret})
        if result.exit_code != 0:
            raise SecretsError(message(result, "login --apikey"))

    def _unlock(self, credentials: OperatorCredentials) -> str:
        password = credentials.master_password.get_secret_value()
        for attempt in (1, 2):
            result = self._bw(["unlock", "--passwordenv", "BW_PASSWORD", "--raw"], {"BW_PASSWORD": password})
            key = result.out.strip()
            if result.exit_code == 0 and key:
                return key
            # Vaultwarden without the user-key-id route: bw 2026.9.0 fails its first unlock,
            # stores a cooldown, and succeeds on a retry (reference: bw.md).
            if attempt == 1 and any(m in result.err for m in _BACKFILL_MARKERS):
                continue
            if result.exit_code == 0:
                raise VaultLocked("bw unlock printed no session key")
            raise VaultLocked(message(result, "unlock"))
        raise VaultLocked("bw unlock failed twice")  # pragma: no cover - the loop returns or raises

    def _lock(self, server: str) -> None:
        # best effort: a failure here must not hide the operation's result
        if self._bw(["lock"]).exit_code == 0:
            self._remember_locked(server)
        else:
            self._forget_state()

    # --- what the last lock left: bw's status without running it ---------------------------------

    def _digest(self) -> str:
        with open(self._config.appdata_dir / BW_DATA, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()

    def _left_locked(self, wanted: str) -> BwStatus | None:
        """bw's status as the last successful lock left it, if data.json is still that one."""
        try:
            recorded = json.loads((self._config.appdata_dir / STATE_NAME).read_text(encoding="utf-8"))
            if recorded != {"server": wanted, "data_sha256": self._digest()}:
                return None
        except (OSError, ValueError):
            return None
        return BwStatus(wanted, "locked")

    def _remember_locked(self, server: str) -> None:
        where = self._config.appdata_dir / STATE_NAME
        part = where.with_name(STATE_NAME + ".part")
        try:
            text = json.dumps({"server": server, "data_sha256": self._digest()})
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(part, where)
        except OSError:
            self._forget_state()  # then the next operation asks bw

    def _forget_state(self) -> None:
        with suppress(OSError):
            os.unlink(self._config.appdata_dir / STATE_NAME)

    @contextmanager
    def _unlocked(self, credentials: OperatorCredentials, allow_configure: bool) -> Iterator[_Session]:
        status = self._ensure_server(allow_configure)
        logged_in = status.status == "unauthenticated"
        if logged_in:
            self._login(credentials)
        try:
            session = _Session(self._unlock(credentials), synced=logged_in)
            yield session
        finally:
            self._lock(normalise_url(self._config.server_url))

    def _session_json(self, session: _Session, args: Sequence[str], what: str) -> Any:
        result = self._bw(args, {"BW_SESSION": session.key}, read_only=True)
        if result.exit_code != 0:
            raise SecretsError(message(result, what))
        return parse_json(result, what)

    def snapshot(self, credentials: OperatorCredentials, select: Selector | None = None) -> VaultSnapshot:
        """Unlock once, sync once (not when it logged in: that synced), list the organization's
        collections, then its items, lock.

        ``select``, given the collections, names the ids whose items are wanted: one id is
        listed with ``bw list items --collectionid`` (bw filters; colibri receives that
        collection's items only), several with one listing of the organization, of which only
        their items are kept; none lists nothing.  Without ``select``: every item of the
        organization (``vault check``).  Raises SecretsError (server mismatch or unreachable, bad
        API key, bad output, or what ``select`` raises), VaultLocked (wrong master password),
        CommandTimeout, ToolMissing.
        """
        return self._fetch(credentials, fresh_login=False, items=True, select=select)

    def login(self, credentials: OperatorCredentials) -> VaultSnapshot:
        """Point bw at ``vault_url`` and log in again with ``credentials`` (logging out first),
        then unlock and list the organization's collections: what ``colibri vault login``
        proves before it stores the credentials.  Raises as :meth:`snapshot`."""
        return self._fetch(credentials, fresh_login=True, items=False)

    def _fetch(
        self, credentials: OperatorCredentials, *, fresh_login: bool, items: bool, select: Selector | None = None
    ) -> VaultSnapshot:
        org = self._config.organization_id
        start = self.calls
        with self.locked():
            if fresh_login:
                self._reset_login()
            with self._unlocked(credentials, allow_configure=fresh_login) as session:
                if not session.synced:
                    result = self._bw(["sync"], {"BW_SESSION": session.key})
                    if result.exit_code != 0:
                        raise SecretsError(message(result, "sync"))
                listed = parse_collections(
                    self._session_json(session, ["list", "collections", "--organizationid", org], "list collections")
                )
                wanted = None if select is None else frozenset(select(listed))
                found: tuple[VaultItem, ...] = ()
                if items and (wanted is None or wanted):
                    found = self._items(session, org, wanted)
        return VaultSnapshot(listed, found, self.calls - start)

    def _items(self, session: _Session, org: str, wanted: frozenset[str] | None) -> tuple[VaultItem, ...]:
        # bw ORs its filters (list.command.ts, listCiphers: an item matching --organizationid OR
        # --collectionid is listed), so one collection is asked for alone; its id is checked to
        # be a GUID first (bw reads "null" and "notnull" as "in no collection" and "in any").
        if wanted is not None and len(wanted) == 1:
            (collection_id,) = wanted
            if not _GUID.fullmatch(collection_id):
                raise SecretsError(f"the collection id {collection_id[:40]!r} is not a GUID")
            args = ["list", "items", "--collectionid", collection_id]
        else:
            args = ["list", "items", "--organizationid", org]
        found = parse_items(self._session_json(session, args, "list items"))
        if wanted is None:
            return found
        return tuple(i for i in found if wanted.intersection(i.collection_ids))

    def _reset_login(self) -> None:
        if self._status().status != "unauthenticated":
            self._bw(["logout"])


def _flock(fd: int, deadline_s: float, where: Path) -> None:
    end = time.monotonic() + deadline_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > end:
                raise SecretsError(f"another colibri process holds the bw lock in {where}") from None
            time.sleep(0.05)
