"""The sandbox jail's user namespace: jail ids 0..UID_BLOCK-1 are host ids base..base+UID_BLOCK-1.

Everything colibri writes into a jail root from the host ends up owned by the shifted ids (a file
host root writes belongs to base+0, jail root; the agent's to base+AGENT_ID), so root in the jail
manages its own files and nothing in the jail is owned by a host account.
"""

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from colibri.adapters.jail import UID_BLOCK
from colibri.errors import JailError

MAX_USER_NAMESPACES = Path("/proc/sys/user/max_user_namespaces")
SUBID_FILES = (Path("/etc/subuid"), Path("/etc/subgid"))
"""The host's subordinate id ranges (shadow-utils): ids a host user may map into its own user
namespaces.  A tenant block overlapping one would give that user the tenant's ids."""
_SUBID_LIMIT = 1 << 20


def require_user_namespaces() -> None:
    """JailError unless this kernel lets root create user namespaces."""
    try:
        allowed = int(MAX_USER_NAMESPACES.read_text().strip() or "0")
    except (OSError, ValueError):
        raise JailError(
            "the sandbox backend needs user namespaces, and this kernel has none "
            f"({MAX_USER_NAMESPACES} is missing: CONFIG_USER_NS)"
        ) from None
    if allowed <= 0:
        raise JailError(f"the sandbox backend needs user namespaces: set {MAX_USER_NAMESPACES.name} above 0 (sysctl)")


def to_host(base: int, uid: int, gid: int) -> tuple[int, int]:
    """A jail uid/gid pair as the host sees it (JailError outside the mapped range)."""
    if not (0 <= uid < UID_BLOCK and 0 <= gid < UID_BLOCK):
        raise JailError(f"jail id {uid}:{gid} is outside the jail's user namespace (0..{UID_BLOCK - 1})")
    return base + uid, base + gid


def shift_tree(root: Path, base: int) -> None:
    """Move every entry under ``root`` (itself included) owned by an unshifted id into the block
    (uid -> base+uid); never follows a symlink.  For trees colibri just built itself."""
    _shift(root, base)
    for top, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            _shift(Path(top) / name, base)


def _shift(path: Path, base: int) -> None:
    info = os.lstat(path)
    uid = info.st_uid + base if info.st_uid < UID_BLOCK else info.st_uid
    gid = info.st_gid + base if info.st_gid < UID_BLOCK else info.st_gid
    if (uid, gid) != (info.st_uid, info.st_gid):
        os.lchown(path, uid, gid)
        if not stat.S_ISLNK(info.st_mode) and info.st_mode & 0o6000:
            os.chmod(path, stat.S_IMODE(info.st_mode))  # chown clears setuid/setgid bits: keep them


def require_no_subid_overlap(base: int, files: Sequence[Path] = SUBID_FILES) -> None:
    """JailError when the block ``base``..``base+UID_BLOCK-1`` overlaps a range of the host's
    /etc/subuid or /etc/subgid (naming the entry).  A missing file has no ranges; a file that is
    not a regular file, or is too large, is an error, never a silent pass."""
    last = base + UID_BLOCK
    for path in files:
        for number, line in enumerate(_subid_lines(path), start=1):
            fields = line.strip().split(":")
            if len(fields) != 3 or not fields[1].isdigit() or not fields[2].isdigit():
                continue  # a comment or a malformed line grants nothing (as shadow-utils reads it)
            start, count = int(fields[1]), int(fields[2])
            if start < last and base < start + count:
                entry = "".join(c if c.isprintable() else "?" for c in line.strip())[:120]
                raise JailError(
                    f"the jail's host ids {base}..{last - 1} overlap {path} line {number} ({entry}): "
                    "that host user could map the tenant's ids; move the range or the tenant's block"
                )


def _subid_lines(path: Path) -> list[str]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise JailError(f"cannot read {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise JailError(f"cannot read {path}: not a regular file")
        if info.st_size > _SUBID_LIMIT:
            raise JailError(f"cannot read {path}: {info.st_size} bytes, more than {_SUBID_LIMIT}")
        data = os.read(fd, _SUBID_LIMIT + 1)
    except OSError as exc:
        raise JailError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace").splitlines()
