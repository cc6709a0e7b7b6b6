"""Host-side file operations inside a jail root that never follow a symlink.

Thin jails are full of absolute symlinks, and a compromised jail can plant more, so every path
inside a jail is walked one component at a time from the jail root with directory file
descriptors and O_NOFOLLOW.  Writes are atomic: temp file in the same directory, fsync, rename,
fsync of the directory.
"""

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from colibri.errors import JailError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _parts(rel: str) -> list[str]:
    parts = [p for p in PurePosixPath(rel).parts if p not in ("/", "", ".")]
    if any(p == ".." for p in parts):
        raise JailError(f"path {rel!r} inside the jail may not contain '..'")
    return parts


@contextlib.contextmanager
def open_dir(
    root: Path, rel: str, *, create: bool = False, mode: int = 0o755, owner: tuple[int, int] | None = None
) -> Iterator[int]:
    """Yield a directory fd for ``root/rel``, walked without following symlinks.

    With ``create``, missing directories are made with ``mode`` (and ``owner`` when given).
    Raises JailError when a component is a symlink, not a directory, or cannot be opened.
    """
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError as exc:
        raise JailError(f"cannot open jail root {root}: {exc.strerror}") from None
    try:
        for part in _parts(rel):
            nxt = _step(fd, part, create=create, mode=mode, owner=owner, where=f"{root}/{rel}")
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


def _step(fd: int, part: str, *, create: bool, mode: int, owner: tuple[int, int] | None, where: str) -> int:
    try:
        nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            raise JailError(f"no such directory in the jail: {where}") from None
        try:
            os.mkdir(part, mode, dir_fd=fd)
            if owner is not None:
                os.chown(part, *owner, dir_fd=fd, follow_symlinks=False)
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            raise JailError(f"cannot create {part} in {where}: {exc.strerror}") from None
    except OSError as exc:
        unsafe = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)  # EMLINK: FreeBSD's O_NOFOLLOW answer
        reason = "is a symlink or not a directory (refused)" if exc.errno in unsafe else exc.strerror
        raise JailError(f"unsafe path in the jail {where}: {part} {reason}") from None
    return nxt


def write_file(
    root: Path,
    rel: str,
    data: bytes,
    *,
    mode: int = 0o644,
    owner: tuple[int, int] | None = None,
    dir_owner: tuple[int, int] | None = None,
) -> bool:
    """Atomically write ``data`` to ``root/rel``; returns False (and writes nothing) if unchanged."""
    parent, name = str(PurePosixPath(rel).parent), PurePosixPath(rel).name
    with open_dir(root, parent, create=True, owner=dir_owner) as dirfd:
        if _same_content(dirfd, name, data, mode, owner):
            return False
        tmp = f".{name}.colibri-{secrets.token_hex(6)}"
        where = f"{rel} in jail {root}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dirfd)
        except OSError as exc:
            raise JailError(f"cannot write {where}: {exc.strerror}") from None
        try:
            try:
                with os.fdopen(fd, "wb", closefd=False) as handle:
                    handle.write(data)
                    handle.flush()
                if owner is not None:
                    os.fchown(fd, *owner)
                os.fchmod(fd, mode)
                os.fsync(fd)
            finally:
                os.close(fd)
            # A directory (or anything not a regular file) jail root planted at ``name`` makes
            # the rename fail: a JailError about the jail, never an internal error.
            os.rename(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
            tmp = ""
            os.fsync(dirfd)
        except OSError as exc:
            raise JailError(f"cannot write {where}: {exc.strerror}") from None
        finally:
            if tmp:  # never leave a temp file of ours in the jail
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dirfd)
    return True


def _same_content(dirfd: int, name: str, data: bytes, mode: int, owner: tuple[int, int] | None) -> bool:
    try:
        if not stat.S_ISREG(os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mode):
            return False  # replaced by the rename; a device node planted there is never opened
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=dirfd)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if (
            not stat.S_ISREG(st.st_mode)
            or (st.st_mode & 0o7777) != mode
            or (owner is not None and (st.st_uid, st.st_gid) != owner)
        ):
            return False
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(len(data) + 1) == data
    finally:
        os.close(fd)


def read_tail(root: Path, rel: str, limit: int) -> bytes:
    """The last ``limit`` bytes of ``root/rel`` (a log the jail writes), opened as ``read_regular``
    does: the end of a growing log, where ``read_file`` would give its stale head."""
    return _read(root, rel, limit, cut=True, tail=True)


def read_since(root: Path, rel: str, offset: int, limit: int) -> tuple[int, bytes]:
    """(size, what a growing log gained after ``offset``): from ``offset`` (from 0 when the file
    is shorter, i.e. rotated), at most its last ``limit`` bytes; opened as ``read_regular`` does."""
    found: list[int] = []
    data = _read(root, rel, limit, cut=True, tail=True, since=offset, size=found)
    return found[0], data


def read_file(root: Path, rel: str, limit: int = 1 << 20) -> bytes:
    """The first ``limit`` bytes of ``root/rel``, opened as ``read_regular`` does (JailError if
    absent or unsafe); a longer file is cut, not refused (a log's head, an existence check)."""
    return _read(root, rel, limit, cut=True)


def read_regular(root: Path, rel: str, limit: int) -> bytes:
    """The whole of ``root/rel``, a file a jail (or a tenant) can write, read safely by the host.

    No symlink is followed at any component; only a regular file is opened (checked before the
    open, so a device node is never opened, and again on the descriptor, for a swap in between);
    the open is non-blocking, so a FIFO cannot hang the caller; a file over ``limit`` bytes is
    refused, not cut.  Raises JailError naming the path and the reason.
    """
    return _read(root, rel, limit, cut=False)


def _read(
    root: Path,
    rel: str,
    limit: int,
    *,
    cut: bool,
    tail: bool = False,
    since: int | None = None,
    size: list[int] | None = None,
) -> bytes:
    parent, name = str(PurePosixPath(rel).parent), PurePosixPath(rel).name
    where = f"{rel} in jail {root}"
    with open_dir(root, parent) as dirfd:
        try:
            if not stat.S_ISREG(os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mode):
                raise JailError(f"cannot read {where}: not a regular file (refused)")
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=dirfd)
        except OSError as exc:
            unsafe = exc.errno in (errno.ELOOP, errno.EMLINK)
            raise JailError(f"cannot read {where}: {'a symlink (refused)' if unsafe else exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise JailError(f"cannot read {where}: not a regular file (refused)")
            if info.st_size > limit and not cut:
                raise JailError(f"cannot read {where}: {info.st_size} bytes, more than the {limit} allowed")
            if size is not None:
                size.append(info.st_size)
            start = since if since is not None and since <= info.st_size else 0
            if tail and info.st_size - start > limit:
                start = info.st_size - limit
            if start:
                os.lseek(fd, start, os.SEEK_SET)
            chunks, left = [], limit + (0 if cut else 1)
            while left > 0 and (chunk := os.read(fd, min(left, 1 << 16))):
                chunks.append(chunk)
                left -= len(chunk)
        except OSError as exc:
            raise JailError(f"cannot read {where}: {exc.strerror}") from None
        finally:
            os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:  # it grew after the fstat
        raise JailError(f"cannot read {where}: more than the {limit} bytes allowed")
    return data


def copy_tree(source: Path, root: Path, rel: str, *, owner: tuple[int, int] | None = None) -> None:
    """Copy a trusted host file or tree into ``root/rel``, keeping modes; symlinks in the source are
    skipped, and nothing in the jail is followed."""
    if source.is_symlink():
        return
    if source.is_file():
        write_file(root, rel, source.read_bytes(), mode=source.stat().st_mode & 0o777, owner=owner)
        return
    with open_dir(root, rel, create=True, owner=owner):
        pass
    for child in sorted(source.iterdir()):
        if child.name == "__pycache__":
            continue
        copy_tree(child, root, f"{rel}/{child.name}", owner=owner)


def exists(root: Path, rel: str) -> bool:
    """True when ``root/rel`` exists (any type; a symlink is not followed).  A symlink or a
    non-directory on the way is a JailError, as for every other walk."""
    parent, name = str(PurePosixPath(rel).parent), PurePosixPath(rel).name
    try:
        with open_dir(root, parent) as dirfd:
            os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    except JailError as exc:
        if str(exc).startswith("no such directory in the jail"):
            return False
        raise
    return True


def remove(root: Path, rel: str, *, tree: bool = False) -> bool:
    """Remove ``root/rel`` without following any symlink: a file (or symlink) is unlinked, a
    directory removed when empty, or with ``tree`` with everything in it.  Returns False when it
    was not there; raises JailError when it cannot be removed (a non-empty directory without
    ``tree``, or an unsafe path)."""
    parent, name = str(PurePosixPath(rel).parent), PurePosixPath(rel).name
    where = f"{rel} in jail {root}"
    try:
        with open_dir(root, parent) as dirfd:
            return _remove_at(dirfd, name, tree=tree, where=where)
    except JailError as exc:
        if str(exc).startswith("no such directory in the jail"):
            return False
        raise


MAX_REMOVE_DEPTH = 256
"""The deepest tree ``remove(tree=True)`` descends (one descriptor a level): a deeper one, which a
jail's root can plant, is refused with JailError rather than exhausting the stack or descriptors."""


def _remove_at(dirfd: int, name: str, *, tree: bool, where: str, depth: int = 0) -> bool:
    if depth > MAX_REMOVE_DEPTH:
        raise JailError(f"cannot remove {where}: deeper than {MAX_REMOVE_DEPTH} directories")
    try:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise JailError(f"cannot remove {where}: {exc.strerror}") from None
    try:
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=dirfd)
            return True
        if tree:
            fd = os.open(name, _DIR_FLAGS, dir_fd=dirfd)
            try:
                for child in os.listdir(fd):
                    _remove_at(fd, child, tree=True, where=f"{where}/{child}", depth=depth + 1)
            finally:
                os.close(fd)
        os.rmdir(name, dir_fd=dirfd)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise JailError(f"cannot remove {where}: {exc.strerror}") from None
    return True
