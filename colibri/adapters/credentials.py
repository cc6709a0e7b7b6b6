"""The operator's Vaultwarden credentials: the only module that imports ``keyring``.

Two sources, tried in this order:

* files in ``vault_credentials_dir`` (the rc.d service on a headless host): ``client_id``,
  ``client_secret`` and ``master_password``, one value each (a final newline is ignored).  The
  directory must be 0700 and each file 0600 (nothing for group or others), all owned by the user
  colibri runs as, and none a symlink; anything looser is refused (PermissionDenied, naming the path);
* otherwise the ``keyring`` service ``colibri`` on an operator's workstation, where
  ``colibri vault login`` stores them.

Values are SecretStr from the moment they are read; they never appear in messages.
"""

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from colibri.errors import PermissionDenied, SecretsError

KEYRING_SERVICE = "colibri"
NAMES = ("client_id", "client_secret", "master_password")
_KEYRING_USER = {name: f"vault_{name}" for name in NAMES}


@dataclass(frozen=True)
class OperatorCredentials:
    """The operator's API key (client id + secret) and master password."""

    client_id: SecretStr
    client_secret: SecretStr
    master_password: SecretStr

    def values(self) -> tuple[str, str, str]:
        """The plain values (for tests and scans that look for them)."""
        return (
            self.client_id.get_secret_value(),
            self.client_secret.get_secret_value(),
            self.master_password.get_secret_value(),
        )


class CredentialStore:
    """Reads and saves operator credentials; see the module docstring for the rules."""

    def __init__(self, directory: Path, keyring_backend: Any = None) -> None:
        self._dir = directory
        self._keyring = keyring_backend  # tests inject a backend; None means keyring's default

    @property
    def directory(self) -> Path:
        return self._dir

    def source(self) -> str:
        """``files`` when the credentials directory exists, else ``keyring``."""
        return "files" if os.path.lexists(self._dir) else "keyring"

    def load(self) -> OperatorCredentials:
        """The credentials.  Raises PermissionDenied (unsafe files) or SecretsError (missing)."""
        found = self._read_files() if self.source() == "files" else self._read_keyring()
        missing = [name for name in NAMES if not found.get(name)]
        if missing:
            where = str(self._dir) if self.source() == "files" else f"keyring service {KEYRING_SERVICE!r}"
            raise SecretsError(
                f"vault credentials incomplete in {where}: missing {', '.join(missing)}; run 'colibri vault login'"
            )
        return OperatorCredentials(*(SecretStr(found[name]) for name in NAMES))

    def present(self) -> dict[str, bool]:
        """Which credentials are set (never their values); unsafe files raise PermissionDenied."""
        try:
            found = self._read_files() if self.source() == "files" else self._read_keyring()
        except SecretsError:
            found = {}
        return {name: bool(found.get(name)) for name in NAMES}

    def save(self, credentials: OperatorCredentials, to: str) -> str:
        """Store ``credentials`` in ``to`` (``keyring`` or ``files``); return where they went."""
        values = dict(zip(NAMES, credentials.values(), strict=True))
        if to == "files":
            self._write_files(values)
            return str(self._dir)
        backend = self._backend()
        try:
            for name, value in values.items():
                backend.set_password(KEYRING_SERVICE, _KEYRING_USER[name], value)
        except Exception as exc:  # keyring raises many types; none may carry the value
            raise SecretsError(f"cannot store credentials in the keyring: {type(exc).__name__}") from None
        return f"keyring service {KEYRING_SERVICE!r}"

    # --- files -------------------------------------------------------------------------------

    def _check_dir(self) -> None:
        try:
            info = os.lstat(self._dir)
        except OSError as exc:
            raise SecretsError(f"cannot read {self._dir}: {exc.strerror}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise PermissionDenied(f"{self._dir} must be a directory (not a symlink), mode 0700")
        _check_owner_mode(self._dir, info, "0700")

    def _read_files(self) -> dict[str, str]:
        self._check_dir()
        found = {}
        for name in NAMES:
            value = _read_secret_file(self._dir / name)
            if value is not None:
                found[name] = value
        return found

    def _write_files(self, values: dict[str, str]) -> None:
        try:
            self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise SecretsError(f"cannot create {self._dir}: {exc.strerror}") from None
        self._check_dir()
        for name, value in values.items():
            path = self._dir / name
            tmp = self._dir / f".{name}.tmp"
            try:
                with _opened(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600) as fd:
                    os.fchmod(fd, 0o600)
                    os.write(fd, value.encode("utf-8") + b"\n")
                    os.fsync(fd)
                tmp.replace(path)
            except OSError as exc:
                raise SecretsError(f"cannot write {path}: {exc.strerror}") from None

    # --- keyring -----------------------------------------------------------------------------

    def _backend(self) -> Any:
        if self._keyring is not None:
            return self._keyring
        import keyring

        return keyring.get_keyring()

    def _read_keyring(self) -> dict[str, str]:
        backend = self._backend()
        found = {}
        try:
            for name in NAMES:
                value = backend.get_password(KEYRING_SERVICE, _KEYRING_USER[name])
                if value:
                    found[name] = value
        except Exception as exc:  # e.g. keyring.errors.NoKeyringError on a headless host
            raise SecretsError(
                f"no usable keyring ({type(exc).__name__}) and no credentials directory {self._dir}; "
                "run 'colibri vault login --files' as root on a headless host"
            ) from None
        return found


def _check_owner_mode(path: Path, info: os.stat_result, wanted: str) -> None:
    if info.st_uid != os.geteuid():
        raise PermissionDenied(f"{path} must be owned by uid {os.geteuid()} (it is owned by {info.st_uid})")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise PermissionDenied(
            f"{path} is mode {stat.S_IMODE(info.st_mode):04o}: refusing it, it must be {wanted} "
            "(nothing for group or others)"
        )


@contextmanager
def _opened(path: Path, flags: int, mode: int = 0) -> Iterator[int]:
    fd = os.open(path, flags | os.O_CLOEXEC, mode)
    try:
        yield fd
    finally:
        os.close(fd)


def _read_secret_file(path: Path) -> str | None:
    """A root-only file's value, or None if absent.  Refuses symlinks and loose modes."""
    try:
        with _opened(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK) as fd:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise PermissionDenied(f"{path} must be a regular file, mode 0600")
            _check_owner_mode(path, info, "0600")
            data = os.read(fd, 64 * 1024)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PermissionDenied(f"{path} is a symlink: refusing it, it must be a regular file") from None
        raise SecretsError(f"cannot read {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretsError(f"{path} is not UTF-8 text") from None
    return text.removesuffix("\n").removesuffix("\r")


def read_staged(staged_dir: Path, tenant_id: str) -> str | None:
    """The text of ``<staged_dir>/<tenant>/provider.env``, or None when nothing is staged.

    The staging directory and the tenant's directory must be 0700 and the file 0600, all owned by
    the user colibri runs as and none a symlink (PermissionDenied otherwise).
    """
    if not os.path.lexists(staged_dir):
        return None
    for folder in (staged_dir, staged_dir / tenant_id):
        try:
            info = os.lstat(folder)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SecretsError(f"cannot read {folder}: {exc.strerror}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise PermissionDenied(f"{folder} must be a directory (not a symlink), mode 0700")
        _check_owner_mode(folder, info, "0700")
    return _read_secret_file(staged_dir / tenant_id / "provider.env")
