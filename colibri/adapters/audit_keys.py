"""This host's audit signing key and the signer's memory, in a directory only its owner reads.

``<state_dir>/audit/`` (0700, owned by the user colibri runs as: root on a host, whose
``state_dir`` is /var/db/colibri; an operator trying colibri without root has their own under
XDG paths): ``signing.key`` (the Ed25519 private key, PKCS#8 PEM, 0400), ``memory.json``
(0600: the compact range of the newest tree this host signed, and
per other host the newest tree it cosigned, with the key it pinned; what makes a truncated or
rewritten store visible even when the store's own rows were edited), ``audit.lock`` (signers of
one host take turns), ``signing.key.next`` (a rotation's new key, from before the store records it
until it replaces ``signing.key``), ``entry.key`` (0400: 32 random bytes, the HMAC key every entry this host
writes carries a MAC under; its signer signs no entry without it, so another host's database
credentials cannot write into this host's signed history).  The memory is written without
fsync (it is on every checkpoint's path): a crash may leave an older one, or a cut one that
reads as none; either way the signer folds again from it (or from entry 1) and checks the last
checkpoint it signed on the way.  Every file is
opened without following symlinks and refused unless it is that user's and not readable by others; a
new key is written to a temporary file and linked into place, so a crash never leaves half a key.
"""

import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from colibri.audit.note import PublicKey, key_name
from colibri.errors import PermissionDenied

KEY = "signing.key"
NEXT = "signing.key.next"
ENTRY_KEY = "entry.key"
MEMORY = "memory.json"
MAX_MEMORY = 1 << 20


def _check(st: os.stat_result, path: Path, modes: tuple[int, ...]) -> None:
    if st.st_uid != os.geteuid():
        raise PermissionDenied(f"{path} is not owned by uid {os.geteuid()} (it is uid {st.st_uid}): refusing it")
    if stat.S_IMODE(st.st_mode) not in modes:
        raise PermissionDenied(
            f"{path} has mode {stat.S_IMODE(st.st_mode):o}: it must be one of " + ", ".join(f"{m:o}" for m in modes)
        )


class KeyDir:
    """The audit directory of one host (``host`` names the key)."""

    def __init__(self, directory: Path, host: str) -> None:
        self.directory = directory
        self.host = host
        self.name = key_name(host)
        self._entry_key: bytes | None = None

    def owned(self) -> bool:
        """Whether this process may use this host's key: the directory is its user's, or not made yet
        where this user may make it.  Another user's (root's /var/db/colibri read by an operator
        without root, say) is read, never signed over."""
        try:
            return os.lstat(self.directory).st_uid == os.geteuid()
        except FileNotFoundError:
            return os.geteuid() == 0 or os.access(self.directory.parent, os.W_OK)

    def _ensure_dir(self) -> None:
        with contextlib.suppress(FileExistsError):
            self.directory.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            self.directory.mkdir(mode=0o700)
        st = os.lstat(self.directory)
        if not stat.S_ISDIR(st.st_mode):
            raise PermissionDenied(f"{self.directory} is not a directory (a symlink?): refusing it")
        _check(st, self.directory, (0o700,))

    def _open(self, name: str, flags: int = os.O_RDONLY) -> int:
        try:
            return os.open(self.directory / name, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == 40:  # ELOOP: a symlink
                raise PermissionDenied(f"{self.directory / name} is a symlink: refusing it") from None
            raise

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this host's signing lock (the daemon and a CLI command never sign at once)."""
        self._ensure_dir()
        fd = self._open("audit.lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read_key(self, name: str = KEY) -> Ed25519PrivateKey | None:
        try:
            fd = self._open(name)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(handle.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise PermissionDenied(f"{self.directory / name} is not a regular file")
            _check(st, self.directory / name, (0o400, 0o600))
            data = handle.read(4096)
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise PermissionDenied(f"{self.directory / name} is not an Ed25519 private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise PermissionDenied(f"{self.directory / name} is not an Ed25519 private key")
        return key

    def _write_key(self, key: Ed25519PrivateKey, replace: bool, name: str = KEY) -> None:
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = self.directory / f".{KEY}.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o400)
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            if replace:
                os.replace(tmp, self.directory / name)
            else:
                os.link(tmp, self.directory / name)  # fails if another signer made one first
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._sync_dir()

    def _sync_dir(self) -> None:
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def entry_key(self) -> bytes:
        """This host's entry MAC key (made on first use; read once per KeyDir)."""
        if self._entry_key is not None:
            return self._entry_key
        self._ensure_dir()
        try:
            fd = self._open(ENTRY_KEY)
        except FileNotFoundError:
            tmp = self.directory / f".{ENTRY_KEY}.{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            made = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o400)
            try:
                os.write(made, os.urandom(32))
                os.fsync(made)
            finally:
                os.close(made)
            with contextlib.suppress(FileExistsError):  # another process made one first: that one
                os.link(tmp, self.directory / ENTRY_KEY)
            os.unlink(tmp)
            fd = self._open(ENTRY_KEY)
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(handle.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise PermissionDenied(f"{self.directory / ENTRY_KEY} is not a regular file")
            _check(st, self.directory / ENTRY_KEY, (0o400, 0o600))
            data = handle.read(64)
        if len(data) != 32:
            raise PermissionDenied(f"{self.directory / ENTRY_KEY} is not a 32-byte key")
        self._entry_key = data
        return data

    def public(self, key: Ed25519PrivateKey) -> PublicKey:
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return PublicKey(self.name, raw)

    def load(self, create: bool = True) -> tuple[Ed25519PrivateKey, bool] | None:
        """The current key and whether it was made now (call with the lock held)."""
        self._ensure_dir()
        key = self._read_key()
        if key is not None:
            return key, False
        if not create:
            return None
        key = Ed25519PrivateKey.generate()
        try:
            self._write_key(key, replace=False)
        except FileExistsError:
            found = self._read_key()
            assert found is not None
            return found, False
        return key, True

    # ---- a rotation in two steps (the key file and the store's rows cannot change at once) ----
    def stage(self, key: Ed25519PrivateKey) -> None:
        """Write ``key`` as the next key (``signing.key.next``, fsync'ed) beside the current one,
        which stays in force until ``promote``: a rotation stages, commits the store's rows, then
        promotes; the signer settles a staged key left by a crash (services/audit/signer.py)."""
        self._ensure_dir()
        self._write_key(key, replace=True, name=NEXT)

    def staged(self) -> Ed25519PrivateKey | None:
        """The next key a rotation staged and did not promote or discard (None: no rotation under way)."""
        self._ensure_dir()
        return self._read_key(NEXT)

    def promote(self) -> None:
        """The staged key in place of the current one (the old private key is gone once this returns)."""
        os.replace(self.directory / NEXT, self.directory / KEY)
        self._sync_dir()

    def discard_staged(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.directory / NEXT)
            self._sync_dir()

    # ---- the signer's memory -------------------------------------------------------------------
    def memory(self) -> dict[str, Any]:
        self._ensure_dir()
        try:
            fd = self._open(MEMORY)
        except FileNotFoundError:
            return {}
        with os.fdopen(fd, "rb") as handle:
            _check(os.fstat(handle.fileno()), self.directory / MEMORY, (0o600, 0o400))
            data = handle.read(MAX_MEMORY + 1)
        if len(data) > MAX_MEMORY:
            raise PermissionDenied(f"{self.directory / MEMORY} is too large")
        try:
            found = json.loads(data)
        except ValueError:  # cut short by a crash (it is written without fsync): as if there were none
            return {}
        return found if isinstance(found, dict) else {}

    def remember(self, memory: dict[str, Any]) -> None:
        self._ensure_dir()
        tmp = self.directory / f".{MEMORY}.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, json.dumps(memory, sort_keys=True).encode())
        finally:
            os.close(fd)
        os.replace(tmp, self.directory / MEMORY)
