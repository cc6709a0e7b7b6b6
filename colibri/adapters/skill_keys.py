"""The operator's skills key files and bundle files (issue 13), on the signing machine.

A private key file (PKCS#8 PEM, as the audit signing key) is written 0600 with O_EXCL (never over
an existing file) and read only when it is a regular file, not a symlink, and not readable by
group or others (ssh's rule for a private key).  Files an operator hands a command (a bundle, a
signature, a public key) are read bounded in size.
"""

import contextlib
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from colibri.errors import Conflict, NotFound, PermissionDenied, SupplyError
from colibri.supply import keys


def read_file(path: Path, limit: int, what: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"{what} not found: {path}") from None
    except OSError as exc:
        raise SupplyError(f"cannot read {what} {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise SupplyError(f"{what} {path} is not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise SupplyError(f"{what} {path} is larger than {limit} bytes: refused")
    return data


def read_private(path: Path) -> Ed25519PrivateKey:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"key file not found: {path}") from None
    except OSError as exc:
        if exc.errno == 40:
            raise PermissionDenied(f"{path} is a symlink: refusing it as a key file") from None
        raise SupplyError(f"cannot read the key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise PermissionDenied(f"{path} is not a regular file")
        if st.st_mode & 0o077:
            raise PermissionDenied(
                f"{path} has mode {stat.S_IMODE(st.st_mode):04o}: a private key must be 0600 or 0400"
            )
        data = handle.read(keys.MAX_KEY_FILE + 1)
    return keys.load_private(data, str(path))


def write_new(path: Path, data: bytes, mode: int) -> None:
    """``data`` into a NEW file ``path`` (Conflict if it exists)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except FileExistsError:
        raise Conflict(f"{path} exists: refusing to overwrite it") from None
    try:
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


def write_replace(path: Path, data: bytes, mode: int = 0o644) -> None:
    """``data`` at ``path``, atomically (a bundle's .sig signed again replaces the old one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    write_new(tmp, data, mode)
    os.replace(tmp, path)
