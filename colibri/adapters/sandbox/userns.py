"""The sandbox jail's user namespace: jail ids 0..UID_BLOCK-1 are host ids base..base+UID_BLOCK-1.

Everything colibri writes into a jail root from the host ends up owned by the shifted ids (a file
host root writes belongs to base+0, jail root; the agent's to base+AGENT_ID), so root in the jail
manages its own files and nothing in the jail is owned by a host account.
"""

import os
import stat
from pathlib import Path

from colibri.adapters.jail import UID_BLOCK
from colibri.errors import JailError

MAX_USER_NAMESPACES = Path("/proc/sys/user/max_user_namespaces")


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
